"""Tests for repro.ablate: run expansion and hashing, skip and resume, locking between
processes, selection, dry runs. Training is tests/fixtures/fake_trainer.py (no torch)."""

from __future__ import annotations

import io
import json
import multiprocessing as mp
import os
import shutil
import signal
import time
from collections import Counter, defaultdict
from pathlib import Path

import pytest
from filelock import FileLock
from rich.console import Console

from repro import ablate, report, rundir, spec_file
from repro.ablation import plan
from repro.errors import ConfigError
from tests.fixtures import fake_trainer
from tests.fixtures.ablating import run_ablation
from tests.fixtures.toml_writer import dumps

REPO = Path(__file__).resolve().parents[1]


def _quiet_console() -> Console:
    return Console(file=io.StringIO(), width=200)


def _ablate(name, tmp_path, **kw):
    kw.setdefault("scale", "smoke")
    kw.setdefault("quiet", True)
    return run_ablation(name, results_dir=tmp_path / "results", reports_dir=tmp_path / "reports",
                        trainer=kw.pop("trainer", fake_trainer.run), **kw)


def _log(path: Path) -> list[tuple[int, str, int]]:
    if not path.exists():
        return []
    return [(int(p), h, int(e)) for p, h, e in (line.split() for line in path.read_text().splitlines() if line)]


# ----------------------------------------------------------------------------- expansion and hashing


def test_expansion_is_arms_by_seeds_with_stable_hashes():
    spec = spec_file.load("lrn")
    ov = plan.run_overrides(spec, None, None, None, None)
    runs = plan.main_runs(spec, "smoke", [0, 1, 2], ov)
    assert [(r.arm, r.seed) for r in runs] == [(a, s) for a in ("lrn", "none", "lrn-gain") for s in (0, 1, 2)]
    assert [r.hash for r in runs] == [r.hash for r in plan.main_runs(spec_file.load("lrn"), "smoke", [0, 1, 2], ov)]
    assert len({r.hash for r in runs}) == 9  # seed- and arm-sensitive
    r = runs[0]
    assert r.rel == Path("lrn", "lrn", f"0-{r.hash}") and r.cfg.seed == 0 and r.cfg.model.norm == "lrn"
    assert runs[3].cfg.model.norm == "none" and runs[3].cfg.data.dataset == "synthetic"
    assert runs[6].cfg.model.norm == "lrn-gain" and runs[6].rel == Path("lrn", "lrn-gain", f"0-{runs[6].hash}")
    # where and how fast a run executes is not part of its identity; its budget is
    moved = plan.main_runs(spec, "smoke", [0], plan.run_overrides(spec, None, "/data", "cuda:1", None))
    assert moved[0].hash == r.hash and moved[0].cfg.runtime.device == "cuda:1"
    assert moved[0].cfg.data.data_dir == "/data"
    longer = plan.main_runs(spec, "smoke", [0], plan.run_overrides(spec, 5, None, None, {"lr": "0.01"}))
    assert longer[0].hash != r.hash and longer[0].cfg.epochs == 5 and longer[0].cfg.optim.lr == 0.01
    assert plan.total_runs(spec, [0, 1, 2], plan.selection_runs(spec, "smoke", [0, 1, 2], {})) == 9


def test_selection_expansion():
    spec = spec_file.load("activation")
    sel = plan.selection_runs(spec, "smoke", [0, 1, 2], {})
    # the grid trains on the spec's selection seed (1000), which is not analysed (protocol §3)
    assert [(r.arm, r.grid_value, r.seed, r.stage) for r in sel] == [
        ("relu", 0.002, 1000, "selection"), ("relu", 0.004, 1000, "selection"),
        ("tanh", 0.002, 1000, "selection"), ("tanh", 0.004, 1000, "selection")]
    assert sel[0].rel == Path("activation", "relu", "lr-0.002", f"1000-{sel[0].hash}")
    assert sel[0].cfg.optim.lr == 0.002 and sel[2].cfg.epochs == 6 and sel[0].cfg.epochs == 4
    main = plan.main_runs(spec, "smoke", [0, 1, 2], {}, {"relu": 0.004, "tanh": None})
    assert [(r.arm, r.seed, r.cfg.optim.lr) for r in main] == [("relu", 0, 0.004), ("relu", 1, 0.004),
                                                               ("relu", 2, 0.004)]
    assert plan.total_runs(spec, [0, 1, 2], sel) == 4 + 2 * 3
    with pytest.raises(ConfigError, match="chooses optim.lr per arm"):
        plan.run_overrides(spec, None, None, None, {"lr": "0.1"})
    with pytest.raises(ConfigError, match="--seeds"):
        plan.run_overrides(spec, None, None, None, {"seed": "1"})


def test_default_scale(tmp_path, monkeypatch):
    monkeypatch.delenv("REPRO_DATA", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    with pytest.raises(ConfigError) as e:
        ablate.default_scale(None)
    msg = str(e.value)
    assert "\n" not in msg and all(s in msg for s in ("--data-dir", "$REPRO_DATA", "--download", "--scale smoke"))
    with pytest.raises(ConfigError):
        run_ablation("lrn", results_dir=tmp_path / "r", reports_dir=tmp_path / "p", quiet=True)
    with pytest.raises(ConfigError) as e:  # a --data-dir given is named, not asked for again
        _ablate("lrn", tmp_path, scale="cifar", data_dir=str(tmp_path / "d"))
    assert f"not found in --data-dir {tmp_path / 'd'} (it needs cifar-10-batches-py/ inside)" in str(e.value)
    assert "for the default --scale" not in str(e.value) and "$REPRO_DATA" not in str(e.value)
    with pytest.raises(ConfigError, match="unknown ablation 'lrnn'"):  # the name is checked before the data
        _ablate("lrnn", tmp_path, scale=None)
    (tmp_path / "d" / "cifar-10-batches-py").mkdir(parents=True)
    assert ablate.default_scale(tmp_path / "d") == "cifar"
    monkeypatch.setenv("REPRO_DATA", str(tmp_path / "d"))
    assert ablate.default_scale(None) == "cifar"
    with pytest.raises(ConfigError, match="--scale imagenet needs --data-dir"):
        _ablate("lrn", tmp_path, scale="imagenet")
    with pytest.raises(ConfigError, match="--scale tiny"):
        _ablate("lrn", tmp_path, scale="tiny")


# ----------------------------------------------------------------------------- running, skipping, resuming


def test_run_then_rerun_trains_nothing(tmp_path):
    calls = []

    def trainer(cfg, out, **kw):
        calls.append(cfg.hash())
        return fake_trainer.run(cfg, out, **kw)

    spec = spec_file.load("lrn")
    n = len(spec.arms) * spec.scales["smoke"].seeds  # 3 arms x 2 seeds
    console = _quiet_console()
    [out] = _ablate("lrn", tmp_path, trainer=trainer, quiet=False, console=console)
    assert (out.total, out.trained, out.skipped) == (n, n, 0) and len(set(calls)) == n
    shown = console.file.getvalue()
    assert "lrn/lrn seed 0: finished" in shown and f"runs {n}/{n}" in shown
    assert out.report == tmp_path / "results" / "smoke-reports" / "lrn.md" and out.report.exists()
    assert not (tmp_path / "reports").exists()  # smoke never writes into reports/ (no records, no scorecard)
    manifest = json.loads((tmp_path / "results" / "lrn" / "manifest-smoke.json").read_text())
    assert len(manifest["runs"]) == n and all(r["main"] for r in manifest["runs"])
    for r in manifest["runs"]:
        d = tmp_path / "results" / r["dir"]
        assert json.loads((d / "summary.json").read_text())["status"] == "finished"
        assert d.name == f"{r['seed']}-{r['hash']}"
    calls.clear()
    [again] = _ablate("lrn", tmp_path, trainer=trainer)
    assert calls == [] and (again.trained, again.skipped) == (0, n)


def test_partial_run_resumes(tmp_path):
    """A run with a checkpoint but no summary is handed to the trainer, which resumes it."""
    spec = spec_file.load("lrn")
    r = plan.main_runs(spec, "smoke", [0], {})[0]
    d = tmp_path / "results" / r.rel
    with pytest.raises(KeyboardInterrupt):
        def interrupted(cfg, out, on_step=None, **kw):
            def stop(done, total):
                if done == 2 * int(os.environ.get("FAKE_STEPS", "4")):  # after epoch 2's last step
                    raise KeyboardInterrupt
            return fake_trainer.run(cfg, out, on_step=stop, **kw)
        _ablate("lrn", tmp_path, seeds=1, trainer=interrupted)
    assert plan.state(d) == "partial"  # and not "running": the lock went with the interrupted run
    [out] = _ablate("lrn", tmp_path, seeds=1)
    rows = [json.loads(x) for x in (d / "metrics.jsonl").read_text().splitlines()]
    # the interrupted run resumed, and one seed of each other arm trained from scratch
    assert [x["epoch"] for x in rows] == [0, 1, 2, 3] and out.trained == len(spec.arms)


def _runner(name: str, tmp: str, epochs: int, env: dict) -> None:
    """A second `repro ablate` process (forked: no second torch import), quiet, with the fake trainer."""
    os.environ.update(env)
    run_ablation(name, scale="smoke", epochs=epochs, results_dir=Path(tmp) / "results",
                 reports_dir=Path(tmp) / "reports", quiet=True, trainer=fake_trainer.run)


def _start(name: str, tmp_path: Path, epochs: int, env: dict) -> mp.Process:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot  # noqa: F401  (imported once here, not in every child)

    p = mp.get_context("fork").Process(target=_runner, args=(name, str(tmp_path), epochs, env))
    p.start()
    return p


def test_kill_and_rerun_loses_nothing_and_repeats_nothing(tmp_path, monkeypatch):
    """SIGKILL a runner mid-ablation; the rerun resumes the interrupted run from its checkpoint,
    skips the finished ones, and every epoch is trained exactly once."""
    log = tmp_path / "train.log"
    proc = _start("lrn", tmp_path, 4, {"FAKE_TRAIN_LOG": str(log), "FAKE_EPOCH_SECONDS": "0.2"})
    deadline = time.monotonic() + 60
    while len(_log(log)) < 6 and time.monotonic() < deadline:  # a run and a half
        assert proc.is_alive(), proc.exitcode
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)
    proc.join()
    runs = plan.main_runs(spec_file.load("lrn"), "smoke", [0, 1], {"epochs": 4})
    before = _log(log)
    assert 6 <= len(before) < 4 * len(runs)
    states = Counter(plan.state(tmp_path / "results" / r.rel) for r in runs)
    assert states["done"] >= 1 and states["partial"] == 1
    monkeypatch.setenv("FAKE_TRAIN_LOG", str(log))
    [out] = _ablate("lrn", tmp_path, epochs=4)
    epochs = Counter((h, e) for _, h, e in _log(log))
    assert len(epochs) == 4 * len(runs) and set(epochs.values()) == {1}  # 6 runs x 4 epochs, each trained once
    assert out.skipped == states["done"] and out.trained == len(runs) - states["done"]
    for r in runs:
        d = tmp_path / "results" / r.rel
        assert [json.loads(x)["epoch"] for x in (d / "metrics.jsonl").read_text().splitlines()] == [0, 1, 2, 3, 4]


def test_two_concurrent_runners_never_train_a_run_twice(tmp_path):
    log = tmp_path / "train.log"
    env = {"FAKE_TRAIN_LOG": str(log), "FAKE_EPOCH_SECONDS": "0.1"}
    procs = [_start("lrn", tmp_path, 3, env) for _ in range(2)]
    for p in procs:
        p.join(timeout=120)
        assert p.exitcode == 0
    runs = plan.main_runs(spec_file.load("lrn"), "smoke", [0, 1], {"epochs": 3})
    entries = _log(log)
    hashes = {h for _, h, _ in entries}
    assert hashes == {r.hash for r in runs} and len(hashes) == 6  # 3 arms x 2 seeds
    assert Counter((h, e) for _, h, e in entries) == {(h, e): 1 for h in hashes for e in (1, 2, 3)}
    trainers = defaultdict(set)
    for pid, h, _ in entries:
        trainers[h].add(pid)
    assert all(len(p) == 1 for p in trainers.values())  # no run was trained by both
    for r in runs:
        d = tmp_path / "results" / r.rel
        assert json.loads((d / "summary.json").read_text())["status"] == "finished"
        assert len((d / "metrics.jsonl").read_text().splitlines()) == 4  # epoch 0 and 3 evaluations
    smoke = tmp_path / "results" / "smoke-reports"
    assert (smoke / "lrn.md").exists() and json.loads((smoke / "lrn.json").read_text())


def test_locked_run_is_deferred_then_waited_for(tmp_path):
    """A run locked by someone else is skipped at first and waited for at the end; if it is
    still unfinished when the lock is released, this process trains it."""
    spec = spec_file.load("lrn")
    runs = plan.main_runs(spec, "smoke", [0, 1], {})
    first = runs[0]
    d = tmp_path / "results" / first.rel
    d.parent.mkdir(parents=True)
    order = []

    def trainer(cfg, out, **kw):
        order.append(cfg.hash())
        if len(order) == 3:
            holder.release()  # the "other process" gives up without finishing
        return fake_trainer.run(cfg, out, **kw)

    holder = FileLock(str(d) + ".lock")
    holder.acquire()
    assert plan.state(d) == "running"
    [out] = _ablate("lrn", tmp_path, trainer=trainer)
    assert order[-1] == first.hash and len(order) == len(runs) and out.trained == len(runs)
    assert plan.state(d) == "done"


def test_diverged_runs_are_recorded_and_not_retried(tmp_path):
    """A grid value that diverges is recorded, never retried, and never selected."""
    d = {"title": "t", "section": "s", "question": "q", "baseline": "relu", "metrics": ["epochs_to_target"],
         "base": {"target_train_error": 0.25}, "selection": {"key": "optim.lr"},
         "arms": {"relu": {"set": {"model.activation": "relu"}, "grid": [0.002, 0.1]},
                  "tanh": {"set": {"model.activation": "tanh"}, "grid": [0.004, 0.2]}},
         "claims": [{"arm": "tanh", "against": "relu", "metric": "epochs_to_target", "test": "welch", "unit": "x",
                     "paper": 6.0, "tolerance": 2.0, "section": "s", "quote": "q", "source": "s"}],
         "scales": {s: {"model": "cifar-80sec", "seeds": 2,
                        "set": {"data.dataset": "synthetic", "data.holdout": 64, "epochs": 8}}
                   for s in spec_file.SCALES}}
    path = tmp_path / "divergy.toml"
    path.write_text(dumps(d), encoding="utf-8")
    [out] = _ablate(str(path), tmp_path)
    assert out.diverged == 2 and out.trained == 4  # 2 selection runs diverged; 2 selection + 2 main trained
    m = json.loads((tmp_path / "results" / "divergy" / "manifest-smoke.json").read_text())
    assert m["selection"]["chosen"] == {"relu": 0.002, "tanh": 0.004}
    winners = {(r["arm"], r["grid_value"]) for r in m["runs"] if r["main"] and r["stage"] == "selection"}
    assert winners == {("relu", 0.002), ("tanh", 0.004)}
    calls = []
    [again] = _ablate(str(path), tmp_path, trainer=lambda *a, **k: calls.append(1))
    assert calls == [] and again.skipped == 6 and again.diverged == 2
    text = (tmp_path / "results" / "smoke-reports" / "divergy.md").read_text()
    assert "| diverged" in text


def test_identical_run_of_another_ablation_is_copied(tmp_path):
    """pooling's `overlapping` and gpus' `two` are the same net: the second is copied, not retrained."""
    _ablate("pooling", tmp_path)
    [out] = _ablate("gpus", tmp_path)
    assert out.reused == 2 and out.trained == 2
    copied = [p for p in (tmp_path / "results" / "gpus" / "two").iterdir() if p.is_dir()]
    assert len(copied) == 2 and all((p / "reused_from.txt").exists() for p in copied)
    assert not any((p / "checkpoint.pt").exists() for p in copied)
    assert "copied from another ablation" in (tmp_path / "results" / "smoke-reports" / "gpus.md").read_text()


def test_selection_runs_that_can_no_longer_be_chosen_stop_and_the_choice_stands(tmp_path, monkeypatch):
    """Selection by the fewest epochs to the target: each arm's grid trains largest lr first,
    and a run that has trained as long as a rival needed without reaching the target stops
    (outrun). The toy model's relu lr 0.004 crosses 25% at ~1.5 epochs; 0.002 would at ~2.6,
    so it stops at the end of epoch 2. Neither tanh value crosses inside its cap: both run out."""
    log = tmp_path / "train.log"
    monkeypatch.setenv("FAKE_TRAIN_LOG", str(log))
    _ablate("activation", tmp_path)
    results = tmp_path / "results"
    sel = {(r.arm, r.grid_value): r for r in plan.selection_runs(spec_file.load("activation"), "smoke", [0, 1], {})}
    fast, slow = (rundir.read_summary(results / sel["relu", v].rel) for v in (0.004, 0.002))
    assert fast["status"] == "target-reached" and 1 < fast["epochs_to_target"] < 2
    assert slow["status"] == "outrun" and slow["epochs_run"] == 2.0 and slow["outrun_at"] == fast["epochs_to_target"]
    assert [rundir.read_summary(results / sel["tanh", v].rel)["status"] for v in (0.002, 0.004)] == ["finished"] * 2
    order = [h for _, h, _ in _log(log)]
    assert order.index(sel["relu", 0.004].hash) < order.index(sel["relu", 0.002].hash)  # largest lr first
    manifest = json.loads((results / "activation" / "manifest-smoke.json").read_text())
    assert manifest["selection"]["chosen"] == {"relu": 0.004, "tanh": 0.004}
    text = (results / "smoke-reports" / "activation.md").read_text()
    assert "| outrun " in text and "*outrun*: stopped at the end of the first epoch" in text
    # --dry-run prices a grid run a rival has beaten up to where it would be outrun, not to its cap
    shutil.rmtree(results / sel["relu", 0.002].rel)
    [out] = _ablate("activation", tmp_path, dry_run=True)
    [row] = [r for r in out.plan if r["hash"] == sel["relu", 0.002].hash]
    assert row["state"] == "pending" and sel["relu", 0.002].cfg.epochs == 4
    assert row["estimate_s"] == pytest.approx(2 * row["speed"][0])  # epoch 2: the end of 0.004's crossing's epoch


def test_dry_run_lists_runs_and_states(tmp_path):
    console = _quiet_console()
    [out] = _ablate("activation", tmp_path, dry_run=True, quiet=False, console=console)
    assert [r["state"] for r in out.plan] == ["pending"] * 4 + ["pending", "pending"]
    assert [r["grid"] for r in out.plan[-2:]] == ["after selection"] * 2
    assert "activation at scale smoke: 8 runs" in console.file.getvalue()  # 4 on the selection seed, 2 x 2 after
    assert not (tmp_path / "results").exists() and not (tmp_path / "reports").exists()  # a dry run writes nothing
    _ablate("activation", tmp_path)
    first = plan.selection_runs(spec_file.load("activation"), "smoke", [0, 1], {})[0]
    d = tmp_path / "results" / first.rel
    (d / "summary.json").unlink()  # as if interrupted
    [out] = _ablate("activation", tmp_path, dry_run=True)
    # 4 selection runs (one partial), tanh seeds 0-1, and a "waiting" row for relu
    assert [r["state"] for r in out.plan].count("partial") == 1 and len(out.plan) == 7
    assert {r["stage"] for r in out.plan} == {"selection", "main"}


def test_dry_run_of_all_names_each_ablation_and_sums_what_is_left(tmp_path):
    """`repro ablate all --dry-run`: each estimate line names its ablation; then one table row each, and the total."""
    _ablate("pooling", tmp_path)  # pooling finished (fake runs: 1 epoch in 2 s, as fake_trainer records)
    console = _quiet_console()
    outs = _ablate("all", tmp_path, dry_run=True, quiet=False, console=console)
    text = console.file.getvalue()
    # only what is left is listed: no table for finished pooling, its runs counted on its line
    assert "pooling: nothing left to train (4 finished run(s) not listed)" in text
    assert "pooling at scale smoke" not in text and "activation at scale smoke: 8 runs" in text
    rows = {line.split("│")[1].strip(): [c.strip() for c in line.split("│")[2:-1]]
            for line in text.splitlines() if line.startswith("│") and "│" in line[1:]}
    assert rows["pooling"][:3] == ["4", "4", "0"]
    assert rows["activation"][:3] == ["8", "0", "8"]  # its main seeds wait for selection: not counted as done
    assert rows["activation"][3:] == ["-", "-", "6 run(s) or arm(s) without a measured speed"]  # no cifar-80sec run
    left = sum(r["estimate_s"] or 0 for o in outs for r in o.plan if r["state"] not in plan.NOTHING_LEFT)
    assert left > 0 and f"all: at most {ablate._duration(left)} of one process" in text
    assert text.rstrip().endswith("plus what is not counted")


# ----------------------------------------------------------------------------- end to end, real trainer


@pytest.mark.slow
def test_end_to_end_with_the_real_trainer(tmp_path):
    """tests/fixtures/tiny.toml through repro.train.run: run directories the report can read,
    and a rerun that trains nothing."""
    pytest.importorskip("repro.train")
    spec = REPO / "tests" / "fixtures" / "tiny.toml"
    [out] = run_ablation(str(spec), scale="smoke", results_dir=tmp_path / "results",
                         reports_dir=tmp_path / "reports", quiet=True, device="cpu")
    assert (out.trained, out.diverged) == (4, 0)
    text = out.report.read_text(encoding="utf-8")
    assert text.startswith("> **Smoke scale") and "| synthetic (sha256 " in text
    assert "cpu" in text and "paired n=" in text  # n=2 once repro.train writes the new record (old: NaN)
    for r in plan.main_runs(spec_file.load(spec), "smoke", [0, 1], {}):
        d = tmp_path / "results" / r.rel
        assert plan.state(d) == "done" and (d / "env.json").exists() and (d / "dataset.json").exists()
    [again] = run_ablation(str(spec), scale="smoke", results_dir=tmp_path / "results",
                           reports_dir=tmp_path / "reports", quiet=True, device="cpu")
    assert (again.trained, again.skipped) == (0, 4)


# ----------------------------------------------------------------------------- committed run records


def _cifar(name, tmp_path, results="results", **kw):
    data = tmp_path / "data"
    (data / "cifar-10-batches-py").mkdir(parents=True, exist_ok=True)  # the fake trainer reads no data
    return _ablate(name, tmp_path, scale="cifar", seeds=2, epochs=2, data_dir=str(data),
                   **({"results_dir": tmp_path / results} if results != "results" else {}), **kw)


def test_finished_runs_are_committed_and_a_fresh_clone_retrains_nothing(tmp_path):
    """At a real-data scale every finished run's record (no checkpoint, no lock) lands in
    reports/records/ with the manifest; with results/ gone, the records count as finished
    runs for ablate, --dry-run and --plan, and the report rebuilds identically from them."""
    [out] = _cifar("pooling", tmp_path)
    assert out.trained == 4
    recs = tmp_path / "reports" / "records" / "pooling"
    dirs = sorted(recs.glob("*/*-*"))
    assert len(dirs) == 4 and (recs / "manifest-cifar.json").is_file()
    for d in dirs:
        assert sorted(p.name for p in d.iterdir()) == sorted(
            ["config.json", "dataset.json", "env.json", "metrics.jsonl", "summary.json"])
    assert not list(recs.rglob("*.lock"))
    before = {n: (tmp_path / "reports" / n).read_bytes() for n in ("pooling.md", "pooling.csv")}
    shutil.rmtree(tmp_path / "results")  # a fresh clone: only what is committed
    calls = []
    [again] = _cifar("pooling", tmp_path, trainer=lambda *a, **k: calls.append(1))
    assert calls == [] and (again.trained, again.skipped) == (0, 4)
    assert {n: (tmp_path / "reports" / n).read_bytes() for n in before} == before
    [dry] = _cifar("pooling", tmp_path, dry_run=True)
    assert {r["state"] for r in dry.plan} == {"done"}
    stream = io.StringIO()
    _cifar("pooling", tmp_path, plan=True, stream=stream)
    assert "--only" not in stream.getvalue() and "0 to run" in stream.getvalue()
    # an identical run committed by another ablation is copied, not retrained (gpus' `two` = pooling's `overlapping`)
    [gpus] = _cifar("gpus", tmp_path)
    assert (gpus.reused, gpus.trained) == (2, 2)
    origin = next((tmp_path / "results" / "gpus" / "two").glob("*/reused_from.txt")).read_text()
    assert origin.startswith("pooling/overlapping/") and str(tmp_path) not in origin  # no absolute paths


def test_smoke_runs_are_never_committed(tmp_path):
    _ablate("pooling", tmp_path)
    assert not (tmp_path / "reports").exists()


def test_evaluation_arm_trains_nothing_and_reads_the_other_protocol(tmp_path):
    """ten-crop's `ten` is the ten-view evaluation of `centre`'s runs: trained once, exactly paired."""
    calls = []

    def trainer(cfg, out, **kw):
        calls.append(cfg.data.test_views)
        return fake_trainer.run(cfg, out, **kw)

    [out] = _ablate("ten-crop", tmp_path, trainer=trainer)
    assert out.total == 2 and calls == [1, 1]
    m = json.loads((tmp_path / "results" / "ten-crop" / "manifest-smoke.json").read_text())
    ten = [r for r in m["runs"] if r["arm"] == "ten"]
    centre = [r for r in m["runs"] if r["arm"] == "centre"]
    assert [r["dir"] for r in ten] == [r["dir"] for r in centre] and {r["views"] for r in ten} == {10}
    _, _, runs, rows = report.build("ten-crop", tmp_path / "results", scale="smoke", reports_dir=tmp_path / "reports")
    eff = rows[0]["effect"]
    assert eff.test == "paired" and eff.interval.n == 2 and eff.estimate == pytest.approx(-1.5)
    assert "| ten " in out.report.read_text()
    stream = io.StringIO()
    shutil.rmtree(tmp_path / "results")
    _ablate("ten-crop", tmp_path, plan=True, stream=stream)
    assert stream.getvalue().count("--only") == 2 and "ten/" not in stream.getvalue()
