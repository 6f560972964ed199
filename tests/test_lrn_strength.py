"""How strongly LRN normalizes beyond its constant gain (repro.lrn_strength, `repro eval --lrn`)."""

from __future__ import annotations

import json
import sys

import pytest
import torch
from torch import nn
from typer.testing import CliRunner

import repro.train as train
from repro import cli, lrn_strength
from repro.cli import app
from repro.evaluation import load_run
from repro.layers import LocalResponseNorm
from repro.models import make_config
from tests.test_cli_eval import TINY

pytestmark = pytest.mark.usefixtures("one_thread")


def _one_map(values: list[float]) -> torch.Tensor:
    """A batch of one-map images: with a single map the window holds only the map itself."""
    return torch.tensor(values, dtype=torch.float64).view(-1, 1, 1, 1)


@pytest.mark.parametrize("a", [0.1, 30.0, 200.0])
def test_the_factor_is_k_over_d_to_the_beta(a):
    """One map: d = k + alpha a^2, so f = (k / d)^beta exactly; tiny inputs are only the gain."""
    norm = LocalResponseNorm(5, alpha=1e-4, beta=0.75, k=2.0)
    s = lrn_strength.measure(nn.Sequential(norm), [_one_map([a, -a, 0.0])])["0"]
    f = (2.0 / (2.0 + 1e-4 * a * a)) ** 0.75
    assert s["median"] == pytest.approx(f, rel=1e-5) and s["output_over_gain"] == pytest.approx(f, rel=1e-5)
    assert s["inputs"] == 2  # the zero is left out: it carries nothing to scale
    assert s["share_below_0.9"] == (1.0 if f < 0.9 else 0.0)


def test_the_output_share_weights_each_input_by_its_size():
    """A small input (f ~ 1) and a large one (f small): the |a|-weighted mean leans to the large one."""
    norm = LocalResponseNorm(5, alpha=1e-4, beta=0.75, k=2.0)
    small, large = 1.0, 300.0
    s = lrn_strength.measure(nn.Sequential(norm), [_one_map([small]), _one_map([large])])["0"]
    f = [(2.0 / (2.0 + 1e-4 * a * a)) ** 0.75 for a in (small, large)]
    assert s["output_over_gain"] == pytest.approx((small * f[0] + large * f[1]) / (small + large), rel=1e-5)
    assert s["median"] == pytest.approx(sum(f) / 2, rel=1e-5)  # quantiles interpolate: the mean of two


def test_a_zero_alpha_lrn_is_its_gain():
    s = lrn_strength.measure(nn.Sequential(LocalResponseNorm(5, alpha=0.0, k=2.0)), [torch.randn(2, 8, 3, 3) * 100])
    assert s["0"]["output_over_gain"] == pytest.approx(1.0) and s["0"]["share_below_0.9"] == 0.0


def test_a_stored_run_is_measured_with_its_trained_and_its_initial_weights(tmp_path):
    """The initial weights are the very ones `repro train` drew for the run, and the CLI prints both."""
    cfg = make_config("alexnet-cifar", TINY)
    first = train._setup(cfg, tmp_path / "setup").model.state_dict()
    train.run(cfg, tmp_path / "run", quiet=True)
    _, _, _, model, ckpt = load_run(str(tmp_path / "run"))
    assert all(torch.equal(v, first[k]) for k, v in model.state_dict().items())
    assert not all(torch.equal(v, ckpt["model"][k]) for k, v in model.state_dict().items())  # one epoch moved them
    res = CliRunner().invoke(app, ["eval", str(tmp_path / "run"), "--lrn", "--images", "30", "--json"])
    assert res.exit_code == 0, res.output
    got = json.loads(res.output)
    assert got["images"] == 30 and got["hash"] == cfg.hash() and got["epoch"] == 1
    assert set(got["layers"]) == {"initial", "trained"}
    assert set(got["layers"]["trained"]) == {"norm1.lrn", "norm2.lrn"}
    res = CliRunner().invoke(app, ["eval", str(tmp_path / "run"), "--lrn", "--images", "30"])
    assert res.exit_code == 0 and "norm1.lrn" in res.output and "initial" in res.output


def test_a_net_without_lrn_is_one_line_refused(tmp_path, monkeypatch, capsys):
    train.run(make_config("cifar-80sec", TINY | {"data.image_size": None, "data.crop": None}), tmp_path, quiet=True)
    monkeypatch.setattr(sys, "argv", ["repro", "eval", str(tmp_path), "--lrn"])
    with pytest.raises(SystemExit) as e:
        cli.main()
    err = capsys.readouterr().err
    assert e.value.code == 2 and "has no LRN layer" in err and "Traceback" not in err
