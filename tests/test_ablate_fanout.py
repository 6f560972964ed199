"""Tests for `repro ablate --jobs N / --plan / --only` (repro.ablation.pool, repro.ablation.plan).
Training is the fake trainer (tests/fixtures/fake_trainer.py) in spawned workers, except one plan command that a
real shell runs with the real trainer on tiny synthetic data (one thread)."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
from filelock import FileLock
from typer.testing import CliRunner

from repro import config, spec_file
from repro.ablation import plan, pool
from repro.cli import app
from repro.errors import ConfigError, ReproError
from repro.models import make_config
from tests.fixtures import fake_trainer, fanout_trainers
from tests.fixtures.ablating import run_ablation

REPO = Path(__file__).resolve().parents[1]


def _log(path: Path) -> list[tuple[int, str, int]]:
    if not path.exists():
        return []
    return [(int(p), h, int(e)) for p, h, e in (line.split() for line in path.read_text().splitlines() if line)]


def _dirs(tmp_path: Path) -> dict[str, str]:
    return {"results_dir": str(tmp_path / "results"), "reports_dir": str(tmp_path / "reports")}


# ----------------------------------------------------------------------------- --jobs


def test_jobs_trains_every_run_once_in_parallel_and_selection_first(tmp_path, monkeypatch, one_thread):
    log = tmp_path / "train.log"
    monkeypatch.setenv("FAKE_TRAIN_LOG", str(log))  # the spawned workers inherit the environment
    monkeypatch.setenv("FAKE_EPOCH_SECONDS", "0.1")
    monkeypatch.setattr(pool, "cpu_count", lambda: 8)  # 8 CPUs over 2 workers: 4 threads each
    [out] = run_ablation("activation", scale="smoke", quiet=True, trainer=fake_trainer.run, jobs=2,
                         **_dirs(tmp_path))
    spec = spec_file.load("activation")
    sel = plan.selection_runs(spec, "smoke", [0, 1], {})
    main = plan.main_runs(spec, "smoke", [0, 1], {}, {"relu": 0.004, "tanh": 0.004})
    n = len(sel) + len(main)  # 4 selection runs on seed 1000, then 2 arms x seeds 0-1
    assert (out.total, out.trained, out.skipped, out.diverged, out.failed) == (n, n, 0, 0, 0) == (8, 8, 0, 0, 0)
    entries = _log(log)
    assert Counter((h, e) for _, h, e in entries) == Counter(set((h, e) for _, h, e in entries))  # each epoch once
    assert {h for _, h, _ in entries} == {r.hash for r in [*sel, *main]}
    pids = {p for p, _, _ in entries}
    assert len(pids) == 2 and os.getpid() not in pids  # both workers trained, the parent did not
    span = {}  # hash -> (pid, first line, last line)
    for i, (p, h, _) in enumerate(entries):
        span[h] = (p, span.get(h, (p, i, i))[1], i)
    assert any(a[0] != b[0] and a[1] < b[2] and b[1] < a[2] for a in span.values() for b in span.values()), \
        "no two runs by different workers overlapped in time"
    for arm in ("relu", "tanh"):  # an arm's main seed starts only after its whole grid is done
        last_sel = max(span[r.hash][2] for r in sel if r.arm == arm)
        assert all(span[r.hash][1] > last_sel for r in main if r.arm == arm)
    m = json.loads((tmp_path / "results" / "activation" / "manifest-smoke.json").read_text())
    assert m["selection"]["chosen"] == {"relu": 0.004, "tanh": 0.004}
    assert {r["dir"] for r in m["runs"]} == {r.rel.as_posix() for r in [*sel, *main]}
    for r in [*sel, *main]:  # same directories (hashes) as a serial run; each worker on 8 // 2 threads
        stored = json.loads((tmp_path / "results" / r.rel / "config.json").read_text())
        assert stored["hash"] == r.hash and stored["config"]["runtime"]["threads"] == 4
    assert out.report.exists()


def test_jobs_records_divergence_and_survives_crashing_workers(tmp_path, one_thread):
    """DivergedError in a worker is a diverged run, as in a serial run; a crash (an exception,
    or a worker process dying) is recorded, the other runs finish, and the ablation ends with
    a one-line ReproError."""
    d = {"title": "t", "section": "s", "question": "q", "baseline": "relu", "metrics": ["epochs_to_target"],
         "base": {"target_train_error": 0.25}, "selection": {"key": "optim.lr"},
         "arms": {"relu": {"set": {"model.activation": "relu"}, "grid": [0.002, 0.1]},
                  "tanh": {"set": {"model.activation": "tanh"}, "grid": [0.004, 0.2]}},
         "scales": {s: {"model": "cifar-80sec", "seeds": 2,
                        "set": {"data.dataset": "synthetic", "data.holdout": 64, "epochs": 8}}
                   for s in spec_file.SCALES}}
    from tests.fixtures.toml_writer import dumps

    path = tmp_path / "divergy.toml"
    path.write_text(dumps(d), encoding="utf-8")
    [out] = run_ablation(str(path), scale="smoke", quiet=True, trainer=fake_trainer.run, jobs=2,
                         **_dirs(tmp_path / "a"))
    assert (out.diverged, out.trained, out.failed) == (2, 4, 0)
    m = json.loads((tmp_path / "a" / "results" / "divergy" / "manifest-smoke.json").read_text())
    assert m["selection"]["chosen"] == {"relu": 0.002, "tanh": 0.004}

    with pytest.raises(ReproError) as e:
        run_ablation("lrn", scale="smoke", quiet=True, trainer=fanout_trainers.crashing, jobs=2,
                     **_dirs(tmp_path / "b"))
    msg = str(e.value)
    assert "\n" not in msg and "2 run(s) failed" in msg and "lrn/none" in msg
    for r in plan.main_runs(spec_file.load("lrn"), "smoke", [0, 1], {}):
        assert plan.state(tmp_path / "b" / "results" / r.rel) == ("pending" if r.arm == "none" else "done")


def test_placement():
    cfg = make_config("cifar-80sec")
    assert pool.worker_runtime(cfg, 3, n_cuda=2, threads=4) == {"runtime.device": "cuda:1", "runtime.threads": 4}
    assert pool.worker_runtime(cfg, 3, n_cuda=1, threads=1) == {"runtime.threads": 1}  # one device: all share it
    pinned = config.apply(cfg, {"runtime.device": "cpu", "runtime.threads": 2})
    assert pool.worker_runtime(pinned, 1, n_cuda=4, threads=8) == {}  # what the user set wins


# ----------------------------------------------------------------------------- --plan and --only


def _cli(args: list[str]) -> str:
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, (args, result.output, result.exception)
    return result.output


def test_plan_commands_create_exactly_the_pending_runs(tmp_path, monkeypatch, one_thread):
    """--plan lists the selection runs first, then (after they are done) the main seeds; each
    command makes the run directory it names; at the end only comments are left."""
    monkeypatch.setattr("repro.train.run", fake_trainer.run)  # what `repro ablate` trains with
    where = ["--results", str(tmp_path / "results"), "--reports", str(tmp_path / "reports")]
    spec = spec_file.load("activation")
    sel = plan.selection_runs(spec, "smoke", [0, 1], {})

    held = FileLock(str(tmp_path / "results" / sel[1].rel) + ".lock")  # "another process" is training it
    (tmp_path / "results" / sel[1].rel).parent.mkdir(parents=True)
    held.acquire()
    text = _cli(["ablate", "activation", "--scale", "smoke", *where, "--plan"])
    held.release()
    lines = text.splitlines()
    commands = [x for x in lines if not x.startswith("#")]
    assert lines[:len(commands)] == commands  # commands first: lines 1..K for an array job
    # each arm's grid largest lr first (plan.execution_order), so that runs that cannot win can stop
    assert [shlex.split(c)[-1] for c in commands] == [plan.selector(r) for r in (sel[0], sel[3], sel[2])]
    assert any("running in another process" in x and sel[1].label in x for x in lines)
    assert any("main-seed commands (seeds 0-1) appear after the selection runs" in x for x in lines)
    assert lines[-1] == f"# after all runs: repro report activation --scale smoke {' '.join(where)}"
    assert not (tmp_path / "results" / sel[0].rel).parent.exists()  # --plan trains nothing

    def execute(cmds: list[str]) -> None:
        for c in cmds:
            args = shlex.split(c)
            assert args[:2] == ["repro", "ablate"]
            _cli(args[1:])
            *_, sel_arg = args
            d = tmp_path / "results" / "activation" / sel_arg
            stored = json.loads((d / "config.json").read_text())["hash"]
            assert plan.state(d) == "done" and stored == d.name.split("-", 1)[1]

    execute(commands)
    text = _cli(["ablate", "activation", "--scale", "smoke", *where, "--plan"])
    again = [x for x in text.splitlines() if not x.startswith("#")]
    chosen = plan.choose(spec, sel, tmp_path / "results")
    assert chosen["relu"] is None and chosen["tanh"] is not None  # tanh's grid is done, relu's is not
    tanh_main = plan.main_runs(spec, "smoke", [0, 1], {}, chosen)
    assert [r.arm for r in tanh_main] == ["tanh", "tanh"]  # seeds 0 and 1: none is a selection run
    assert [shlex.split(c)[-1] for c in again] == [plan.selector(r) for r in (sel[1], *tanh_main)]
    assert any("(relu): the main-seed commands (seeds 0-1) appear after" in x for x in text.splitlines())
    execute(again)
    text = _cli(["ablate", "activation", "--scale", "smoke", *where, "--plan"])
    main = [x for x in text.splitlines() if not x.startswith("#")]
    chosen = plan.choose(spec, sel, tmp_path / "results")
    assert [shlex.split(c)[-1] for c in main] == [plan.selector(r) for r in
                                                   plan.main_runs(spec, "smoke", [0, 1], {}, chosen)
                                                   if r.arm == "relu"]
    assert not any("appear after" in x for x in text.splitlines())
    execute(main)
    text = _cli(["ablate", "activation", "--scale", "smoke", *where, "--plan"])
    assert all(x.startswith("# ") for x in text.splitlines()) and "0 to run" in text  # nothing left
    m = json.loads((tmp_path / "results" / "activation" / "manifest-smoke.json").read_text())
    assert m["selection"]["chosen"] == chosen and len(m["runs"]) == 8  # the --only runs kept it complete
    _cli(["report", "activation", "--scale", "smoke", *where])
    side = json.loads((tmp_path / "results" / "smoke-reports" / "activation.json").read_text())
    assert side["runs"] == {"total": 8, "done": 8}


def test_only_checks_what_it_names(tmp_path, one_thread):
    spec = spec_file.load("activation")
    sel = plan.selection_runs(spec, "smoke", [0, 1], {})
    kw = dict(scale="smoke", quiet=True, trainer=fake_trainer.run, **_dirs(tmp_path))
    for bad, why in [("relu/1", "not all done"), ("relu/0", "selection runs on seed 1000"),
                     ("relu", "expected ARM/SEED"),
                     ("gelu/0", "no such run"), (f"{plan.selector(sel[0])[:-3]}abc", "changed since --plan")]:
        with pytest.raises(ConfigError, match=why) as e:
            run_ablation("activation", only=[bad], **kw)
        assert "\n" not in str(e.value)
    [out] = run_ablation("activation", only=[plan.selector(sel[0], with_hash=False)], **kw)
    assert (out.total, out.trained) == (1, 1) and plan.state(tmp_path / "results" / sel[0].rel) == "done"
    assert not (tmp_path / "reports").exists()  # --only leaves the report to `repro report`
    with pytest.raises(ConfigError, match="not of `all`"):
        run_ablation("all", only=["lrn/0"], **kw)
    result = CliRunner().invoke(app, ["ablate", "lrn", "--scale", "smoke", "--jobs", "0"])
    assert result.exit_code != 0 and "--jobs 0: must be at least 1" in str(result.exception)


@pytest.mark.slow
def test_plan_command_runs_in_a_shell_with_the_real_trainer(tmp_path):
    """One printed line, run by bash from the same working directory: the real trainer makes
    the run directory the line names (tiny synthetic data, one thread)."""
    spec_path = REPO / "tests" / "fixtures" / "tiny.toml"
    out = tmp_path / "plan.txt"
    with out.open("w") as f:
        run_ablation(str(spec_path), scale="smoke", seeds=1, device="cpu", overrides={"runtime.threads": "1"},
                     results_dir=tmp_path / "results", reports_dir=tmp_path / "reports", plan=True, stream=f)
    lines = out.read_text().splitlines()
    assert len([x for x in lines if not x.startswith("#")]) == 2
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
           "OMP_NUM_THREADS": "1"}
    subprocess.run(["bash", "-c", f'sed -n "1p" {shlex.quote(str(out))} | bash'], cwd=tmp_path, env=env, check=True,
                   capture_output=True, timeout=120)
    run = plan.main_runs(spec_file.load(spec_path), "smoke", [0], {})[0]  # the first arm's seed 0
    assert lines[0].endswith(f"--only {plan.selector(run)}")
    d = tmp_path / "results" / run.rel
    assert plan.state(d) == "done" and json.loads((d / "config.json").read_text())["hash"] == run.hash
    left = [x for x in out.read_text().splitlines() if not x.startswith("#")]
    with out.open("w") as f:
        run_ablation(str(spec_path), scale="smoke", seeds=1, device="cpu", overrides={"runtime.threads": "1"},
                     results_dir=tmp_path / "results", reports_dir=tmp_path / "reports", plan=True, stream=f)
    assert [x for x in out.read_text().splitlines() if not x.startswith("#")] == left[1:]
