"""Tests for `repro spec` (repro.layer_table and repro.cli).

Most go through typer's CliRunner, which calls `repro.cli.app` directly. The CLI's one-line
error handling lives in `repro.cli.main()`, which wraps `app()`; CliRunner does not see it (it
reports the ReproError as `result.exception`), so the user-facing error path is also tested
through `main()` itself and once through a real `python -m repro` subprocess.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from repro import cli
from repro.errors import ConfigError, ReproError
from repro.models import names

pytestmark = pytest.mark.usefixtures("one_thread_module")

MODELS = ["alexnet", "alexnet-cifar", "cifar-80sec", "cifar-18pct", "cifar-19pct", "cifar-11pct", "cifar-13pct"]
# Exact parameter counts; see tests/test_models.py (PARAM_COUNTS) for the arithmetic.
PARAMS = {"alexnet": 60_965_224, "alexnet-cifar": 708_970, "cifar-80sec": 145_578, "cifar-18pct": 89_578,
          "cifar-19pct": 89_578, "cifar-11pct": 2_112_970, "cifar-13pct": 1_116_490}

runner = CliRunner()


def spec_json(*args: str) -> dict:
    result = runner.invoke(cli.app, ["spec", *args, "--json"])
    assert result.exit_code == 0, (result.output, result.exception)
    return json.loads(result.stdout)


@pytest.fixture(scope="module")
def alexnet_json() -> dict:
    return spec_json("--model", "alexnet")


def test_alexnet_json(alexnet_json):
    out = alexnet_json
    assert out["model"] == "alexnet" and out["total_params"] == 60_965_224
    assert out["config"]["columns"] == 2 and out["config"]["input_size"] == 224
    rows = {r["layer"]: r for r in out["layers"]}
    assert rows["conv1"]["output_shape"] == [96, 55, 55] and rows["conv1"]["neurons"] == 290_400
    assert rows["conv1"]["paper_neurons"] == 253_440  # Figure 2's printed (inconsistent) figure
    assert rows["conv2"]["columns"] == "per column" and rows["conv3"]["columns"] == "both"
    assert rows["pool5"]["output_shape"] == [256, 6, 6] and rows["fc8"]["output_shape"] == [1000]
    # Figure 2's caption counts, conv2 onwards, agree with ours
    for layer, n in {"conv2": 186_624, "conv3": 64_896, "conv4": 64_896, "conv5": 43_264,
                     "fc6": 4096, "fc7": 4096, "fc8": 1000}.items():
        assert rows[layer]["neurons"] == rows[layer]["paper_neurons"] == n, layer
    # 290,400 + 186,624 + 2 * 64,896 + 43,264 + 4096 + 4096 + 1000 = 659,272 (facts §3)
    assert out["total_neurons"] == 659_272 and out["input_neurons"] == 150_528
    assert out["paper"]["params_exact_calc"] == 60_965_224 and out["paper"]["input_neurons"] == 150_528
    assert "253,440" in out["paper"]["note"]


def test_one_column_json():
    out = spec_json("--model", "alexnet", "--set", "columns=1")
    assert out["total_params"] == 59_798_312
    assert out["paper"]["params_exact_calc"] == 59_798_312
    assert "note" not in out["paper"]  # Figure 2's neuron counts describe the two-column net
    assert all(r["paper_neurons"] is None for r in out["layers"])
    assert {r["layer"]: r["output_shape"] for r in out["layers"]}["conv2"] == [128, 27, 27]


@pytest.mark.parametrize("model", [m for m in MODELS if m != "alexnet"])
def test_every_model_spec_runs(model):
    out = spec_json("--model", model)
    assert out["model"] == model and out["total_params"] == PARAMS[model]
    assert out["layers"][-1]["output_shape"] == [10]
    assert sum(r["params"] for r in out["layers"]) == PARAMS[model]
    assert "paper" not in out


def test_registry_and_cli_agree_on_the_model_list():
    assert names() == MODELS


def test_human_table():
    result = runner.invoke(cli.app, ["spec", "--model", "alexnet"])
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert "290,400" in out and "253,440" in out
    assert "note:" in out and "2,640" in out  # the note: 253,440 / 96 = 2,640 is not a square
    assert "60,965,224" in out and "96x55x55" in out and "256x6x6" in out


def test_list_models():
    result = runner.invoke(cli.app, ["spec", "--list"])
    assert result.exit_code == 0
    # one line per model, name first (long summaries may wrap onto further lines)
    listed = [line.split()[0] for line in result.stdout.splitlines() if line.strip() and not line[0].isspace()]
    assert [w for w in listed if w in MODELS] == MODELS
    assert "Figure 1" in result.stdout  # the summaries come along


@pytest.mark.parametrize("args,fragment", [
    (["--model", "resnet50"], "unknown model"),
    (["--set", "no_such_key=1"], "unknown key"),
    (["--set", "columns=two"], "model.columns"),
    (["--set", "lr"], "key=value"),
    (["--model", "cifar-80sec", "--set", "columns=2"], "columns"),
])
def test_cli_runner_sees_the_repro_error(args, fragment):
    # CliRunner calls app() directly, so main()'s handler is bypassed: the error is the result's exception
    result = runner.invoke(cli.app, ["spec", *args])
    assert result.exit_code != 0
    assert isinstance(result.exception, ReproError) and isinstance(result.exception, ConfigError)
    assert fragment in str(result.exception) and "\n" not in str(result.exception)


def test_main_prints_one_line_for_unknown_key(monkeypatch, capsys):
    monkeypatch.setattr(sys, "argv", ["repro", "spec", "--set", "no_such_key=1"])
    with pytest.raises(SystemExit) as e:
        cli.main()
    assert e.value.code == 2
    captured = capsys.readouterr()
    err = captured.err.strip()
    assert "\n" not in err and err.startswith("error:") and "unknown key 'no_such_key'" in err
    assert "optim.lr" in err and "model.columns" in err  # it lists the valid keys
    assert "Traceback" not in captured.err + captured.out


def test_unknown_model_subprocess():
    proc = subprocess.run([sys.executable, "-m", "repro", "spec", "--model", "resnet50"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr + proc.stdout
    err = proc.stderr.strip()
    assert "\n" not in err, err
    assert err.startswith("error:") and "unknown model 'resnet50'" in err
    for m in MODELS:
        assert m in err
