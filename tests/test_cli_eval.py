"""`repro eval RUN_DIR`: a stored checkpoint evaluated again, the same as the trainer's own test figures."""

import json
import sys

import pytest
from typer.testing import CliRunner

import repro.train as train
from repro import cli
from repro.cli import app
from repro.models import make_config

pytestmark = pytest.mark.usefixtures("one_thread")

TINY = {"data.dataset": "synthetic", "data.synthetic_train": 96, "data.synthetic_test": 40, "data.image_size": 28,
        "data.crop": 24, "optim.batch_size": 32, "epochs": 1, "runtime.device": "cpu", "runtime.threads": 1,
        "optim.schedule": "constant", "data.holdout": 0}


def test_eval_repeats_the_trainers_test_figures(tmp_path):
    cfg = make_config("alexnet-cifar", TINY)
    summary = train.run(cfg, tmp_path / "run", quiet=True)
    runner = CliRunner()
    for views in (1, 10):
        res = runner.invoke(app, ["eval", str(tmp_path / "run"), "--views", str(views), "--json"])
        assert res.exit_code == 0, res.output
        got = json.loads(res.output)
        assert got["views"] == views and got["images"] == 40 and got["epoch"] == 1
        # same function, other memory layout: at most one of 40 argmaxes may flip
        assert got["error"] == pytest.approx(summary[f"test_error_{views}view"], abs=1 / 40 + 1e-9)
        assert got["loss"] == pytest.approx(summary[f"test_loss_{views}view"], rel=1e-3)


@pytest.mark.parametrize("args, needle", [
    (["eval", "/nonexistent/run"], "not a run directory"),
    (["eval", "RUN", "--split", "train"], "--split"),
    (["eval", "RUN", "--views", "5"], "views"),
])
def test_eval_refuses_bad_input_in_one_line(tmp_path, monkeypatch, capsys, args, needle):
    """Through `repro.cli.main` (its one-line ReproError handling): exit 2, one line, no traceback."""
    if "RUN" in args:
        train.run(make_config("cifar-80sec", TINY | {"data.image_size": None, "data.crop": None}), tmp_path, quiet=True)
        args = [str(tmp_path) if a == "RUN" else a for a in args]
    monkeypatch.setattr(sys, "argv", ["repro", *args])
    with pytest.raises(SystemExit) as e:
        cli.main()
    out = capsys.readouterr()
    assert e.value.code == 2 and out.out == ""
    lines = [ln for ln in out.err.splitlines() if ln.strip()]
    assert len(lines) == 1 and needle in lines[0] and "Traceback" not in out.err, out.err
