"""Tests for repro.rundir: the run-directory format, its readers and writers, states, locks and reuse."""

from __future__ import annotations

import json
import os

import pytest
from filelock import FileLock

from repro import config, files, rundir


def _cfg(**over) -> config.RunConfig:
    return config.apply(config.RunConfig(), {"data.dataset": "synthetic", **over})


def test_dir_name_is_seed_then_config_hash():
    cfg = _cfg(seed=3)
    assert rundir.dir_name(cfg.seed, cfg.hash()) == f"3-{cfg.hash()}"


def test_records_round_trip(tmp_path):
    d = tmp_path / "run"
    cfg = _cfg(epochs=2)
    rundir.write_config(d, cfg)
    rundir.write_env(d, {"torch": "x"})
    rundir.write_dataset(d, {"name": "synthetic"})
    rundir.write_metrics(d, [{"epoch": 2, "train_error": 0.4}, {"epoch": 1, "train_error": 0.5}])
    rundir.write_summary(d, {"status": rundir.FINISHED, "hash": cfg.hash()})
    stored = json.loads((d / rundir.CONFIG).read_text())
    assert stored == {"config": json.loads(json.dumps(cfg.to_dict())), "hash": cfg.hash()}
    assert rundir.stored_hash(d) == cfg.hash() and rundir.run_config(d) == cfg
    assert rundir.read_env(d) == {"torch": "x"} and rundir.read_dataset(d) == {"name": "synthetic"}
    assert [r["epoch"] for r in rundir.read_metrics(d)] == [1, 2]  # epoch order
    assert rundir.status(d) == "finished" and rundir.state(d) == "done"
    assert sorted(p.name for p in d.iterdir()) == sorted(
        [rundir.CONFIG, rundir.ENV, rundir.DATASET, rundir.METRICS, rundir.SUMMARY])  # no temporary files left


def test_missing_and_torn_records_read_as_nothing(tmp_path):
    d = tmp_path / "run"
    assert rundir.read_summary(d) is None and rundir.read_metrics(d) == [] and rundir.run_config(d) is None
    d.mkdir()
    (d / rundir.SUMMARY).write_text('{"status": "fini')  # being written
    (d / rundir.CONFIG).write_text("[1, 2]")  # not an object
    (d / rundir.METRICS).write_text('{"epoch": 1}\n{"epo')
    assert rundir.read_summary(d) is None and rundir.status(d) is None and rundir.stored_hash(d) is None
    assert rundir.read_metrics(d) == [{"epoch": 1}]
    assert rundir.state(d) == "partial"


def test_state_follows_the_run(tmp_path):
    d = tmp_path / "lrn" / "on" / "0-abc"
    assert rundir.state(d) == "pending"
    assert not rundir.lock_path(d).exists()  # looking never creates a lock file
    with FileLock(str(rundir.lock_path(d))):  # another holder: a separate lock object
        assert rundir.is_locked(d) and rundir.state(d) == "running"
    assert not rundir.is_locked(d)
    rundir.write_metrics(d, [{"epoch": 1}])
    assert rundir.state(d) == "partial"
    rundir.write_summary(d, {"status": rundir.DIVERGED})
    assert rundir.state(d) == "diverged" and rundir.DIVERGED in rundir.TERMINAL and rundir.DIVERGED not in rundir.DONE
    rundir.write_summary(d, {"status": rundir.TARGET_REACHED})
    assert rundir.state(d) == "done"
    assert set(rundir.STATES) >= {"pending", "partial", "running", "diverged", "done"}


def test_find_identical_and_copy_run(tmp_path):
    root = tmp_path / "results"
    src = root / "pooling" / "overlapping" / "0-abc"
    rundir.write_metrics(src, [{"epoch": 1}])
    files.write_json(rundir.checkpoint_path(src), {"epoch": 1})
    dest = root / "gpus" / "two" / "0-abc"
    assert rundir.find_identical(root, 0, "abc", exclude=dest) is None  # not finished yet
    rundir.write_summary(src, {"status": rundir.FINISHED})
    assert rundir.find_identical(root, 0, "abc", exclude=dest) == src
    assert rundir.find_identical(root, 0, "abc", exclude=src) is None
    assert rundir.find_identical(root, 1, "abc", exclude=dest) is None
    dest.mkdir(parents=True)  # an empty directory is replaced
    rundir.copy_run(src, dest)
    assert rundir.state(dest) == "done" and rundir.was_reused(dest) and not rundir.was_reused(src)
    assert not rundir.checkpoint_path(dest).exists()
    assert (dest / rundir.REUSED_FROM).read_text().strip() == str(src)
    assert [p.name for p in dest.parent.iterdir()] == [dest.name]  # no temporary copy left


def test_locate_prefers_the_first_root_with_a_record(tmp_path):
    a, b = tmp_path / "results", tmp_path / "records"
    rel = "lrn/on/0-abc"
    assert rundir.locate(rel, [a, b]) == a / rel
    rundir.write_summary(b / rel, {"status": rundir.FINISHED})
    assert rundir.locate(rel, [a, b]) == b / rel
    rundir.write_summary(a / rel, {"status": rundir.FINISHED})
    assert rundir.locate(rel, [a, b]) == a / rel


def test_manifests(tmp_path):
    assert rundir.manifest_path(tmp_path, "lrn", "smoke") == tmp_path / "lrn" / "manifest-smoke.json"
    assert rundir.load_manifest(tmp_path, "lrn", None, ("smoke", "cifar")) is None
    rundir.write_manifest(rundir.manifest_path(tmp_path, "lrn", "smoke"), {"updated_at": "2", "path": tmp_path})
    rundir.write_manifest(rundir.manifest_path(tmp_path, "lrn", "cifar"), {"updated_at": "1"})
    assert rundir.load_manifest(tmp_path, "lrn", None, ("smoke", "cifar"))["path"] == str(tmp_path)  # as a string
    assert rundir.load_manifest(tmp_path, "lrn", "cifar", ("smoke", "cifar")) == {"updated_at": "1"}


def test_atomic_write_leaves_the_old_file_on_failure(tmp_path):
    target = tmp_path / "summary.json"
    files.write_text(target, "old")
    with pytest.raises(RuntimeError), files.atomic(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("killed")
    assert target.read_text() == "old" and os.listdir(tmp_path) == ["summary.json"]
