"""The README's first command, end to end through the CLI: `repro ablate lrn --scale smoke`.

Made cheaper with `--set` (1 epoch, 128 synthetic images, one thread), it still goes through
every step a user's run does: spec -> runs -> run directories -> report, plots, CSV and the
scorecard; then a rerun that trains nothing.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SMALL = ["--set", "epochs=1", "--set", "data.synthetic_train=128", "--set", "data.synthetic_test=64",
         "--set", "runtime.threads=1"]


def repro(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = os.environ | {"PYTHONPATH": str(REPO), "COLUMNS": "200"}
    return subprocess.run([sys.executable, "-m", "repro", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=300)


@pytest.mark.slow
def test_readme_smoke_ablation_writes_a_report_and_reruns_cached(tmp_path):
    first = repro("ablate", "lrn", "--scale", "smoke", "--quiet", *SMALL, cwd=tmp_path)
    assert first.returncode == 0, first.stderr[-2000:]
    report = tmp_path / "results" / "smoke-reports" / "lrn.md"  # smoke never writes into reports/
    text = report.read_text(encoding="utf-8")
    assert text.splitlines()[0].startswith("> **Smoke scale")  # not comparable to the paper, said first
    for needle in ("synthetic", "torch", "git", "| lrn ", "| none ", "| lrn-gain "):  # provenance and every arm
        assert needle in text, needle
    assert any(v in text for v in ("reproduced", "inconclusive", "contradicted", "no effect"))  # a verdict
    assert "lower (sign only)" in text  # the paper's direction stands beside ours
    for extra in ("lrn.csv", "lrn-train.png"):
        assert (report.parent / extra).exists(), extra
    assert not (tmp_path / "reports").exists()
    runs = list((tmp_path / "results" / "lrn").glob("*/*-*/summary.json"))
    assert len(runs) == 6  # 3 arms x 2 seeds

    again = repro("ablate", "lrn", "--scale", "smoke", "--quiet", *SMALL, cwd=tmp_path)
    assert again.returncode == 0, again.stderr[-2000:]
    assert "0 trained" in again.stdout + again.stderr
    assert sorted(p.stat().st_mtime for p in runs) == sorted(
        p.stat().st_mtime for p in (tmp_path / "results" / "lrn").glob("*/*-*/summary.json"))


def test_readme_first_command_leaves_reports_untouched(tmp_path, monkeypatch):
    """`repro ablate lrn --scale smoke` (the README's first command) through the Typer CLI, from
    the repository root: every file under the real reports/ is unchanged afterwards (smoke
    reports go to <results>/smoke-reports/, smoke records are never committed, no scorecard)."""
    import hashlib

    from typer.testing import CliRunner

    from repro.cli import app
    from tests.fixtures import fake_trainer

    def snapshot() -> dict[str, tuple[str, int]]:  # content and mtime: not even rewritten identically
        return {p.relative_to(REPO).as_posix(): (hashlib.sha256(p.read_bytes()).hexdigest(), p.stat().st_mtime_ns)
                for p in sorted((REPO / "reports").rglob("*")) if p.is_file()}

    before = snapshot()
    monkeypatch.setattr("repro.train.run", fake_trainer.run)
    monkeypatch.chdir(REPO)  # the default --reports is ./reports: the real one
    result = CliRunner().invoke(app, ["ablate", "lrn", "--scale", "smoke", "--quiet", "--results",
                                      str(tmp_path / "results")])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "results" / "smoke-reports" / "lrn.md").exists()
    assert snapshot() == before


def test_unknown_ablation_is_one_line(tmp_path):
    r = repro("ablate", "nope", "--scale", "smoke", cwd=tmp_path)
    assert r.returncode != 0
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and "nope" in lines[0] and "Traceback" not in r.stderr


def test_a_dry_run_into_a_pipe_keeps_its_run_directories_whole(tmp_path):
    """No terminal and no COLUMNS (a pipe, a log file): the table is not squeezed into rich's 80
    columns, where every run directory was cut to a few letters."""
    from repro import spec_file
    from repro.ablation import plan

    env = {k: v for k, v in os.environ.items() if k != "COLUMNS"} | {"PYTHONPATH": str(REPO)}
    out = subprocess.run([sys.executable, "-m", "repro", "ablate", "pooling", "--scale", "smoke", "--dry-run"],
                         cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    runs = plan.main_runs(spec_file.load("pooling"), "smoke", [0, 1], {})
    for r in runs:
        assert f"results/{r.rel.as_posix()}" in out.stdout, r.rel
