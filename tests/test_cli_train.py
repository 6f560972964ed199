"""Tests for `repro train` and `repro bench --help`: what a user sees.

A few go through a real `python -m repro` subprocess (exit status, stderr, no traceback,
lines not wrapped at 80 columns when stdout is not a terminal). Each such process costs
seconds of imports on a shared machine, so the other cases call `repro.cli.main()` in
process with `sys.argv` set: the same code path, including the one-line ReproError
handling that typer's CliRunner would skip. Every case sees an empty $HOME,
$XDG_CACHE_HOME and $REPRO_DATA, so no real data or cache on this machine is found.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from repro import cli

REPO = Path(__file__).resolve().parents[1]
TINY = ["--dataset", "synthetic", "--device", "cpu", "--threads", "1", "--epochs", "2",
        "--set", "data.synthetic_train=160", "--set", "data.holdout=32", "--set", "data.synthetic_test=32",
        "--set", "optim.batch_size=64"]


@pytest.fixture
def home(tmp_path, monkeypatch) -> dict:
    """An empty home and cache, for this process and as the environment of subprocesses."""
    h = tmp_path / "home"
    h.mkdir()
    env = {"HOME": str(h), "XDG_CACHE_HOME": str(h / ".cache"), "REPRO_DATA": ""}
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    before = torch.get_num_threads()
    yield os.environ | env | {"OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    torch.set_num_threads(before)


def repro(env: dict, *args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in env.items() if k != "COLUMNS"}  # as in a pipe or a log file
    return subprocess.run([sys.executable, "-m", "repro", *args], env=env, cwd=cwd, capture_output=True, text=True,
                          timeout=180)


def main(monkeypatch, capsys, *args: str) -> tuple[int, str, str]:
    """`repro ARGS` in this process: (exit code, stdout, stderr)."""
    monkeypatch.setattr(sys, "argv", ["repro", *args])
    with pytest.raises(SystemExit) as e:
        cli.main()
    out = capsys.readouterr()
    code = e.value.code
    return (0 if code is None else code), out.out, out.err


def one_line_error(code: int, out: str, err: str, expect: int = 2) -> str:
    """The failure a user should see: exit `expect`, one line on stderr, no traceback."""
    assert code == expect, (code, out, err)
    assert "Traceback" not in err + out, err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    errors = [ln for ln in lines if ln.startswith("error:")]
    assert len(errors) == 1 and errors[0] == lines[-1], err
    return errors[0]


# ---------------------------------------------------------------- real processes


def test_train_in_a_process(home, tmp_path):
    """A quiet run prints one line per epoch and a one-line summary; the rerun trains
    nothing and prints the same summary; another config in the same --out is refused."""
    p = repro(home, "train", *TINY, "--quiet", cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    assert "Traceback" not in p.stderr
    (run_dir,) = (tmp_path / "runs").iterdir()  # default: runs/<model>-<dataset>-s<seed>-<hash>
    h = json.loads((run_dir / "config.json").read_text())["hash"]
    assert run_dir.name == f"cifar-80sec-synthetic-s0-{h}"
    epochs = [ln for ln in p.stderr.splitlines() if ln.startswith("epoch ")]
    assert [ln.split(":")[0] for ln in epochs] == ["epoch 1", "epoch 2"]  # not the epoch-0 evaluation
    assert "train err" in epochs[0] and "running" in epochs[0] and "holdout err" in epochs[0]
    assert f"run directory: runs/{run_dir.name}" in p.stderr.splitlines()
    (final,) = p.stdout.strip().splitlines()  # one line, even with a long run directory
    # epochs_run is a float now (evaluations may fall within an epoch)
    assert final.startswith("finished: 2 epochs, final train error ") and "test error" in final
    assert "val" not in final.replace("(eval mode)", "")  # the test split is never called "val"; "eval mode" is fine
    assert final.endswith(f"->  runs/{run_dir.name}")
    assert json.loads((run_dir / "summary.json").read_text())["status"] == "finished"

    again = repro(home, "train", *TINY, "--quiet", cwd=tmp_path)
    assert again.returncode == 0 and "epoch 1" not in again.stderr, again.stderr
    assert again.stdout.strip() == final

    other = repro(home, "train", *TINY, "--seed", "1", "--quiet", "--out", str(run_dir))
    line = one_line_error(other.returncode, other.stdout, other.stderr)
    assert "different run" in line and "--out" in line


def test_error_in_a_process(home):
    p = repro(home, "train", "--model", "nope")
    line = one_line_error(p.returncode, p.stdout, p.stderr)
    assert "unknown model 'nope'" in line and "cifar-80sec" in line


# ---------------------------------------------------------------- main() in this process


def test_unknown_key(home, monkeypatch, capsys):
    line = one_line_error(*main(monkeypatch, capsys, "train", *TINY, "--set", "bogus=1"))
    assert "bogus" in line and "valid keys" in line


def test_bad_value(home, monkeypatch, capsys):
    line = one_line_error(*main(monkeypatch, capsys, "train", *TINY, "--set", "lr=fast"))
    assert "optim.lr" in line


def test_missing_cifar10_names_data_dir(home, monkeypatch, capsys, tmp_path):
    args = ["train", "--dataset", "cifar10", "--data-dir", str(tmp_path / "nonexistent")]
    line = one_line_error(*main(monkeypatch, capsys, *args))
    assert "CIFAR-10 not found" in line and "--data-dir" in line


def test_no_cifar10_anywhere_names_data_dir(home, monkeypatch, capsys):
    line = one_line_error(*main(monkeypatch, capsys, "train", "--model", "cifar-80sec"))
    assert "CIFAR-10 not found" in line and "--data-dir" in line


def test_diverged_run_exits_3(home, monkeypatch, capsys, tmp_path):
    out = tmp_path / "run"
    args = ["train", *TINY, "--set", "lr=1e6", "--quiet", "--out", str(out)]
    line = one_line_error(*main(monkeypatch, capsys, *args), expect=3)
    assert "diverged" in line and "lr" in line
    assert json.loads((out / "summary.json").read_text())["status"] == "diverged"
    again = one_line_error(*main(monkeypatch, capsys, *args), expect=3)  # rerun: same answer, no training
    assert "diverged" in again


@pytest.mark.parametrize("epochs", ["0", "-1"])
def test_epochs_below_one_is_a_one_line_error(home, monkeypatch, capsys, tmp_path, epochs):
    """Issue 9: `--epochs 0` (or negative) used to exit 0 and record a finished run."""
    out = tmp_path / "r"
    line = one_line_error(*main(monkeypatch, capsys, "train", *TINY, "--epochs", epochs, "--quiet", "--out", str(out)))
    assert f"epochs={epochs}" in line and "at least 1" in line
    assert not out.exists()  # no run directory written


def test_train_help():
    result = CliRunner().invoke(cli.app, ["train", "--help"])
    assert result.exit_code == 0, result.output
    for opt in ("--model", "--dataset", "--data-dir", "--epochs", "--set", "--out", "--deterministic", "--threads",
                "--nproc", "--quiet", "--device"):
        assert opt in result.output, opt


def test_bench_help():
    result = CliRunner().invoke(cli.app, ["bench", "--help"])
    assert result.exit_code == 0, result.output
    for opt in ("--json", "--seconds", "--device", "--data-dir", "--save", "--threads", "--profile", "--steps"):
        assert opt in result.output, opt


def test_bench_profile_on_a_gpu_is_refused_in_one_line(monkeypatch, capsys):
    line = one_line_error(*main(monkeypatch, capsys, "bench", "--profile", "--device", "cuda"))
    assert "--profile" in line and "CPU" in line
