"""Tests for the trainer (repro.train): learning, the run directory, resume, the paper's
schedule, divergence and the stall warning.

Everything runs on the CPU on small synthetic data (repro.data.synthetic) with one thread:
the machine this runs on is shared, and a tiny run is enough to check the contract in
repro.train's module docstring. The kill-and-resume test goes through a real
`python -m repro train` subprocess that it kills with SIGKILL.
"""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

import repro.evaluation as evaluation
import repro.provenance as provenance
import repro.train as train
from repro.config import from_dict
from repro.errors import ConfigError, DivergedError
from repro.models import make_config

pytestmark = pytest.mark.usefixtures("one_thread")

REPO = Path(__file__).resolve().parents[1]
LN10 = math.log(10)

TINY = {"data.dataset": "synthetic", "data.synthetic_train": 128, "data.synthetic_test": 32,
        "optim.batch_size": 64, "epochs": 1, "runtime.device": "cpu", "runtime.threads": 1}
ROW_KEYS = {"epoch", "step", "lr", "train_loss_running", "train_error_running", "train_loss", "train_error",
            "holdout_loss", "holdout_error", "holdout_top5_error", "seconds", "eval_seconds", "images",
            "images_per_second"}
SUMMARY_KEYS = {"status", "hash", "epochs_run", "steps", "epochs_to_target", "target_train_error", "eval_every",
                "final_train_error", "final_train_error_running", "final_holdout_error", "best_holdout_error",
                "best_holdout_epoch", "test_error", "test_loss", "test_top5_error", "test_views", "test_error_1view",
                "test_loss_1view", "test_top5_error_1view", "wall_seconds", "session_seconds", "total_images",
                "finished_at"}
TEN_VIEW_KEYS = {"test_error_10view", "test_loss_10view", "test_top5_error_10view"}
TIMING_ROW = {"seconds", "eval_seconds", "images_per_second"}
TIMING_SUMMARY = {"wall_seconds", "session_seconds", "finished_at"}


def tiny(model: str = "cifar-80sec", **overrides):
    """A small CPU config on synthetic data; `overrides` use config keys (dots as __)."""
    return make_config(model, TINY | {k.replace("__", "."): v for k, v in overrides.items()})


def rows(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


def summary(out: Path) -> dict:
    return json.loads((out / "summary.json").read_text())


# ---------------------------------------------------------------- learning


def test_overfits_a_small_training_set(tmp_path):
    """cifar-80sec memorizes 64 synthetic images: 0% training error well within 30 epochs
    (2 steps each), and the run stops there with status target-reached."""
    cfg = tiny(data__synthetic_train=64, optim__batch_size=32, lr=0.001, optim__schedule="constant", epochs=30,
               target_train_error=0.0)
    s = train.run(cfg, tmp_path, quiet=True)
    r = rows(tmp_path)
    assert s["status"] == "target-reached", [x["train_error"] for x in r]
    assert s["final_train_error"] == 0.0 and r[-1]["train_loss"] < 0.3  # eval mode, on the training images
    assert r[0]["epoch"] == 0 and r[0]["train_loss"] > 2.0  # it started at chance
    assert s["epochs_run"] == r[-1]["epoch"] == len(r) - 1 < 30  # one row per epoch after the epoch-0 row


@pytest.mark.slow
def test_alexnet_cifar_paper_init_learns_on_synthetic(tmp_path):
    """With a literal N(0, 0.01) (§5) alexnet-cifar sat at ln(10) for 400+ steps: its fan-ins are
    4-16x smaller than the paper net's. The init carried over by fan-in (repro.models.alexnet.
    init_gains) keeps the paper's per-layer gain, and the net learns: well below chance in 32 steps."""
    cfg = tiny("alexnet-cifar", data__synthetic_train=640, data__holdout=128, data__synthetic_test=128,
               optim__schedule="constant", epochs=8, stall_steps=10**6)  # 512 training images, 128 held out
    train.run(cfg, tmp_path, quiet=True)
    r = rows(tmp_path)
    assert r[-1]["holdout_error"] < 0.75, [x["holdout_error"] for x in r]
    assert r[-1]["train_loss"] < r[0]["train_loss"] - 0.3
    assert r[-1]["train_loss_running"] < r[1]["train_loss_running"] - 0.3


def test_alexnet_cifar_trains_through_the_trainer(tmp_path):
    """The two-column, dropout, LRN net goes through the whole loop with its paper init:
    finite metrics, an initial loss near ln(10), and the weights actually move."""
    cfg = tiny("alexnet-cifar", data__synthetic_train=96, data__holdout=32, optim__batch_size=32, epochs=1)
    torch.manual_seed(cfg.seed)
    init = train.build(cfg.model).state_dict()
    train.run(cfg, tmp_path, quiet=True)
    first, row = rows(tmp_path)  # the net as initialised, then after epoch 1
    keys = ("train_loss", "train_loss_running", "train_error_running", "holdout_loss", "holdout_error")
    assert all(math.isfinite(row[k]) for k in keys)
    assert abs(first["train_loss"] - LN10) < 1.5  # near chance (the fan-in-scaled fc layers start louder)
    ckpt = torch.load(tmp_path / "checkpoint.pt", weights_only=True)
    moved = [k for k, v in ckpt["model"].items() if not torch.equal(v, init[k])]
    assert {"conv1.weight", "fc8.weight"} <= set(moved)


def _record_conv1(monkeypatch) -> list[tuple[bool, torch.dtype]]:
    """Make train.build's nets record, per forward, (conv1 input is channels_last, conv1 output dtype)."""
    seen: list[tuple[bool, torch.dtype]] = []
    build = train.build

    def recording_build(model_cfg):
        net = build(model_cfg)
        net.conv1.register_forward_hook(lambda m, args, out: seen.append(
            (args[0].is_contiguous(memory_format=torch.channels_last) and not args[0].is_contiguous(), out.dtype)))
        return net

    monkeypatch.setattr(train, "build", recording_build)
    return seen


@pytest.mark.parametrize("model", ["alexnet-cifar", "cifar-80sec"])
def test_bf16_channels_last_trains_end_to_end_on_cpu(tmp_path, monkeypatch, capsys, model):
    """runtime.precision=bf16 autocasts the forward pass on the CPU and runtime.channels_last
    feeds NHWC batches; both are recorded in env.json and the hash, and the losses stay close
    to the fp32 NCHW run's (never equal: bf16 rounds differently)."""
    seen = _record_conv1(monkeypatch)
    fp32 = tiny(model, data__synthetic_train=96, data__holdout=32, optim__batch_size=32, runtime__precision="fp32",
                runtime__channels_last=False)
    train.run(fp32, tmp_path / "fp32", quiet=True)
    assert seen and set(seen) == {(False, torch.float32)}
    seen.clear()
    fast = tiny(model, data__synthetic_train=96, data__holdout=32, optim__batch_size=32, runtime__precision="bf16",
                runtime__channels_last=True)
    monkeypatch.setattr(provenance, "cpu_features", lambda: ["avx2"])  # a CPU that emulates bf16: warned once
    train.run(fast, tmp_path / "bf16", quiet=True)
    assert capsys.readouterr().err.count("on a CPU without bf16 units") == 1
    assert seen and set(seen) == {(True, torch.bfloat16)}  # training steps and evaluation alike
    assert fast.hash() != fp32.hash()
    env = json.loads((tmp_path / "bf16" / "env.json").read_text())
    assert (env["precision"], env["channels_last"], env["autocast"]) == ("bf16", True, "bfloat16")
    (_, a), (_, b) = rows(tmp_path / "fp32"), rows(tmp_path / "bf16")  # epoch 0, epoch 1
    assert all(math.isfinite(b[k]) for k in ("train_loss_running", "train_loss", "holdout_loss"))
    assert a["train_loss_running"] != b["train_loss_running"]
    assert abs(a["train_loss_running"] - b["train_loss_running"]) < 0.05
    assert abs(a["train_loss"] - b["train_loss"]) < 0.05 and abs(a["holdout_loss"] - b["holdout_loss"]) < 0.05


def test_autocast_factory():
    assert train.autocast("fp32", torch.device("cpu"))() is not None
    with train.autocast("bf16", torch.device("cpu"))():
        assert torch.is_autocast_enabled("cpu") and torch.get_autocast_dtype("cpu") == torch.bfloat16
    with pytest.raises(ConfigError, match="bf16 runs on cpu or cuda, not mps"):
        train.autocast("bf16", torch.device("mps"))
    with pytest.raises(ConfigError, match="fp32 or bf16"):
        train.autocast("fp16", torch.device("cpu"))


# ---------------------------------------------------------------- the run directory


def test_run_directory_contents(tmp_path):
    cfg = tiny(epochs=2, data__synthetic_train=256, data__holdout=64)
    steps: list[tuple[int, int]] = []
    s = train.run(cfg, tmp_path, quiet=True, on_step=lambda a, b: steps.append((a, b)))
    names = {p.name for p in tmp_path.iterdir()}
    assert {"config.json", "env.json", "dataset.json", "metrics.jsonl", "checkpoint.pt", "summary.json"} <= names
    assert not [n for n in names if n.endswith(".tmp")]

    conf = json.loads((tmp_path / "config.json").read_text())
    assert conf["hash"] == cfg.hash() and from_dict(conf["config"]) == cfg  # enough to rebuild the run

    env = json.loads((tmp_path / "env.json").read_text())
    assert env["torch"] == torch.__version__ and env["device"] == "cpu" and env["threads"] == 1
    assert "git_revision" in env and "git_dirty" in env and env["world_size"] == 1 and "resumes" not in env

    ds = json.loads((tmp_path / "dataset.json").read_text())
    assert ds["synthetic"] is True and ds["name"] == "synthetic"
    assert (ds["train_size"], ds["holdout_size"], ds["test_size"], ds["train_eval_size"]) == (192, 64, 32, 192)

    r = rows(tmp_path)
    assert [x["epoch"] for x in r] == [0, 1, 2]  # the net as initialised, then one row per epoch
    assert all(type(x["epoch"]) is float for x in r)
    for x in r:
        assert set(x) == ROW_KEYS
        assert 0 <= x["holdout_top5_error"] <= x["holdout_error"] <= 1 and 0 <= x["train_error"] <= 1
        assert all(math.isfinite(v) for v in x.values() if v is not None)
    assert r[0]["train_loss_running"] is r[0]["train_error_running"] is None  # no training before epoch 0
    assert r[0]["images"] == 0 and r[0]["step"] == 0 and r[0]["seconds"] == 0
    for x in r[1:]:
        assert x["images"] == 192 and 0 <= x["train_error_running"] <= 1
        assert all(x[k] is not None for k in ROW_KEYS)
    assert [x["step"] for x in r] == [0, 3, 6]  # 192 images / batch 64
    assert steps == [(i, 6) for i in range(1, 7)]

    assert set(s) == SUMMARY_KEYS and s == summary(tmp_path)  # crop = image: no 10-view figures
    assert s["status"] == "finished" and s["hash"] == cfg.hash() and s["epochs_run"] == 2.0 and s["steps"] == 6
    assert s["total_images"] == 384 and s["final_holdout_error"] == r[-1]["holdout_error"]
    assert s["final_train_error"] == r[-1]["train_error"]
    assert s["final_train_error_running"] == r[-1]["train_error_running"]
    best = min(r, key=lambda x: x["holdout_error"])
    assert (s["best_holdout_error"], s["best_holdout_epoch"]) == (best["holdout_error"], best["epoch"])
    assert s["eval_every"] == 1.0 and s["epochs_to_target"] is None and s["target_train_error"] is None
    assert 0 <= s["test_top5_error"] <= s["test_error"] <= 1 and math.isfinite(s["test_loss"])  # a separate split
    assert s["test_views"] == 1 and s["test_error"] == s["test_error_1view"] and s["test_loss"] == s["test_loss_1view"]

    ckpt = torch.load(tmp_path / "checkpoint.pt", weights_only=True)
    assert ckpt["epoch"] == 2 and ckpt["hash"] == cfg.hash() and ckpt["history"] == r


def test_finished_run_is_returned_not_retrained(tmp_path, monkeypatch):
    cfg = tiny()
    first = train.run(cfg, tmp_path, quiet=True)
    before = {p.name: p.stat().st_mtime_ns for p in tmp_path.iterdir()}

    def boom(*a, **k):
        raise AssertionError("a finished run was loaded again")

    monkeypatch.setattr(train, "load_dataset", boom)
    monkeypatch.setattr(train, "build", boom)
    assert train.run(cfg, tmp_path, quiet=True) == first
    assert {p.name: p.stat().st_mtime_ns for p in tmp_path.iterdir()} == before


@pytest.mark.parametrize("left", ["everything", "checkpoint only"])
def test_other_config_in_the_run_directory_is_refused(tmp_path, left):
    train.run(tiny(), tmp_path, quiet=True)
    if left == "checkpoint only":  # the checkpoint's own hash is checked too
        for name in ("config.json", "summary.json"):
            (tmp_path / name).unlink()
    other = tiny(lr=0.002)
    with pytest.raises(ConfigError, match="different run") as e:
        train.run(other, tmp_path, quiet=True)
    assert "\n" not in str(e.value) and "--out" in str(e.value)
    ckpt = torch.load(tmp_path / "checkpoint.pt", weights_only=True)
    assert ckpt["hash"] == tiny().hash() and [x["epoch"] for x in rows(tmp_path)] == [0, 1]  # untouched


def test_other_config_without_checkpoint_is_refused(tmp_path):
    """A run that diverged in its first epoch leaves config.json and summary.json but no
    checkpoint; another config must not overwrite it."""
    with pytest.raises(DivergedError):
        train.run(tiny(lr=1e6), tmp_path, quiet=True)
    assert not (tmp_path / "checkpoint.pt").exists()
    with pytest.raises(ConfigError, match="different run"):
        train.run(tiny(), tmp_path, quiet=True)
    assert json.loads((tmp_path / "config.json").read_text())["hash"] == tiny(lr=1e6).hash()


def test_runtime_settings_do_not_change_the_run(tmp_path):
    """Device and threads are not part of a run's identity: a finished run is found again."""
    first = train.run(tiny(), tmp_path, quiet=True)
    assert train.run(tiny(runtime__threads=2, runtime__device="auto"), tmp_path, quiet=True) == first


# ---------------------------------------------------------------- resume


@pytest.mark.parametrize("eval_every", [1.0, 0.5])
def test_resume_after_stop_condition_does_not_train_on(tmp_path, eval_every):
    """Killed after the last checkpoint but before summary.json: rerunning must end the run
    where it ended, not train past the target (nor train again up to it: the checkpoint holds
    the weights at the evaluation that reached it, also mid-epoch)."""
    cfg = tiny(data__synthetic_train=64, optim__batch_size=16, lr=0.001, optim__schedule="constant", epochs=30,
               target_train_error=0.5, eval_every=eval_every)
    s = train.run(cfg, tmp_path, quiet=True)
    assert s["status"] == "target-reached"
    r = rows(tmp_path)
    assert torch.load(tmp_path / "checkpoint.pt", weights_only=True)["history"] == r
    (tmp_path / "summary.json").unlink()
    steps: list[int] = []
    again = train.run(cfg, tmp_path, quiet=True, on_step=lambda a, b: steps.append(a))
    assert steps == []
    assert again["status"] == "target-reached" and again["epochs_run"] == s["epochs_run"]
    assert _strip(again, TIMING_SUMMARY) == _strip(s, TIMING_SUMMARY)  # the same weights, tested again
    assert rows(tmp_path) == r and len(r) == s["epochs_run"] / eval_every + 1  # epoch 0, then every eval_every


def _train_cmd(out: Path, eval_every: float) -> list[str]:
    # alexnet-cifar: dropout (the global RNG), flips, crops of 28x28 images and PCA noise
    # (the loader's per-epoch RNG), a plateau schedule on a 32-image holdout (scheduler state)
    # and PaperSGD momentum; 96 training images, 3 steps an epoch.
    return [sys.executable, "-m", "repro", "train", "--model", "alexnet-cifar", "--dataset", "synthetic",
            "--deterministic", "--threads", "1", "--device", "cpu", "--quiet", "--epochs", "6", "--out", str(out),
            "--set", "data.synthetic_train=128", "--set", "data.holdout=32", "--set", "data.synthetic_test=32",
            "--set", "optim.batch_size=32", "--set", "data.image_size=28", "--set", "data.crop=24",
            "--set", "data.pca_noise=0.1", "--set", "optim.patience=0", "--set", "optim.max_drops=10",
            "--set", f"eval_every={eval_every}"]


def _strip(d: dict, timing: set[str]) -> dict:
    return {k: v for k, v in d.items() if k not in timing}


def _wait_for_first_epoch(proc: subprocess.Popen, out: Path, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        metrics = out / "metrics.jsonl"
        if (out / "checkpoint.pt").exists() and metrics.exists() and metrics.read_text().strip():
            return
        time.sleep(0.01)


@pytest.mark.slow
@pytest.mark.parametrize("eval_every", [1.0, 1 / 3])  # 1/3: an evaluation after every step, killed between
def test_kill_and_resume_equals_uninterrupted(tmp_path, eval_every):
    """kill -9 after the first checkpoint, rerun: the same metrics, summary and weights as an
    uninterrupted run. With eval_every < 1 the kill lands among the in-epoch evaluations of
    the epoch after that checkpoint, which the resumed run must recompute, not keep."""
    env = os.environ | {"PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    d1, d2 = tmp_path / "whole", tmp_path / "killed"
    quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.PIPE, "text": True}
    whole = subprocess.Popen(_train_cmd(d1, eval_every), env=env, **quiet)  # the uninterrupted run, meanwhile
    try:
        for _ in range(3):  # a kill that lands after the run ended proves nothing: retry
            if d2.exists():
                for p in d2.iterdir():
                    p.unlink()
            proc = subprocess.Popen(_train_cmd(d2, eval_every), env=env, **quiet)
            _wait_for_first_epoch(proc, d2)
            proc.send_signal(signal.SIGKILL)  # kill -9: no handler, no cleanup
            proc.communicate(timeout=30)
            if not (d2 / "summary.json").exists():
                break
        else:
            pytest.fail("the kill landed after the run had finished three times; make the run longer")
        _, err = whole.communicate(timeout=180)
        assert whole.returncode == 0, err
    finally:
        whole.kill()
    per_epoch = round(1 / eval_every)
    killed = rows(d2)
    killed_at = killed[-1]["epoch"]  # metrics.jsonl is written with each (end-of-epoch) checkpoint
    assert killed_at in range(1, 6) and len(killed) == killed_at * per_epoch + 1

    resumed = subprocess.run(_train_cmd(d2, eval_every), env=env, capture_output=True, text=True, timeout=180)
    assert resumed.returncode == 0, resumed.stderr

    r1, r2 = rows(d1), rows(d2)
    assert len(r1) == len(r2) == 6 * per_epoch + 1  # the epoch-0 row, then per_epoch rows an epoch
    assert [x["epoch"] for x in r1] == pytest.approx([i / per_epoch for i in range(6 * per_epoch + 1)], abs=1e-6)
    assert [_strip(x, TIMING_ROW) for x in r1] == [_strip(x, TIMING_ROW) for x in r2]
    assert len({x["lr"] for x in r1}) > 1  # the plateau schedule dropped the lr along the way
    assert _strip(summary(d1), TIMING_SUMMARY) == _strip(summary(d2), TIMING_SUMMARY)
    m1 = torch.load(d1 / "checkpoint.pt", weights_only=True)
    m2 = torch.load(d2 / "checkpoint.pt", weights_only=True)
    assert m1["model"].keys() == m2["model"].keys()
    for k in m1["model"]:
        assert torch.equal(m1["model"][k], m2["model"][k]), k
    env2 = json.loads((d2 / "env.json").read_text())
    assert [x["from_epoch"] for x in env2["resumes"]] == [killed_at]


# ---------------------------------------------------------------- the schedule and stopping


def _script_holdout_error(monkeypatch, values) -> None:
    """Replace the error of every holdout evaluation with the next of `values` (the real
    evaluation still runs, and the training slice's and test set's figures are real)."""
    script = iter(values)
    real = evaluation.evaluate

    def scripted(model, loader, *a, **k):
        out = real(model, loader, *a, **k)
        return out | {"error": next(script)} if loader.split == "holdout" else out

    monkeypatch.setattr(evaluation, "evaluate", scripted)


def test_plateau_drops_lr_then_stops(tmp_path, monkeypatch):
    """Paper §5: divide by 10 when the validation error stops improving, max_drops times,
    then stop at the next plateau. The holdout error is scripted (1.0 at epoch 0, 0.9, then
    0.8 for ever) around the real evaluation."""
    _script_holdout_error(monkeypatch, [1.0, 0.9, 0.8] + [0.8] * 20)
    cfg = tiny(lr=0.001, optim__schedule="plateau", optim__patience=0, optim__max_drops=2, epochs=20,
               data__synthetic_train=96, data__holdout=32)
    s = train.run(cfg, tmp_path, quiet=True)
    lrs = [x["lr"] for x in rows(tmp_path)]
    # 0: the net as initialised (not a schedule step); 1-2: improving; 3: no better -> /10 after it;
    # 4: /10 again (2 drops); 5: a third plateau -> stop
    assert lrs == pytest.approx([1e-3, 1e-3, 1e-3, 1e-3, 1e-4, 1e-5], rel=1e-9)
    assert s["status"] == "finished" and s["epochs_run"] == 5
    assert s["best_holdout_error"] == 0.8 and s["best_holdout_epoch"] == 2  # the first epoch at the best


def test_plateau_patience(tmp_path, monkeypatch):
    _script_holdout_error(monkeypatch, [0.5] * 20)
    cfg = tiny(lr=0.001, optim__schedule="plateau", optim__patience=1, optim__max_drops=1, epochs=20,
               data__synthetic_train=96, data__holdout=32)
    s = train.run(cfg, tmp_path, quiet=True)
    # epoch 1 sets the best; 2 is one bad epoch (patience 1); 3 drops; 4 bad; 5 drops again -> stop
    assert [x["lr"] for x in rows(tmp_path)] == pytest.approx([1e-3, 1e-3, 1e-3, 1e-3, 1e-4, 1e-4])
    assert s["epochs_run"] == 5


def _script_evaluator(monkeypatch, **scripts) -> None:
    """Evaluator.row's figures named in `scripts` (key -> values, one per evaluation) replaced."""
    its = {k: iter(v) for k, v in scripts.items()}
    real = evaluation.Evaluator.row
    monkeypatch.setattr(evaluation.Evaluator, "row",
                        lambda self, net: real(self, net) | {k: next(it) for k, it in its.items()})


@pytest.mark.parametrize("holdout_rises", [True, False])
def test_plateau_reads_the_holdout_error(tmp_path, monkeypatch, holdout_rises):
    """The plateau schedule steps on holdout_error and nothing else: a rising holdout error
    drops the lr while the training error falls; a falling one keeps it while the training
    error (and the holdout loss) rise."""
    n = 8
    up, down = [0.1 + 0.1 * i for i in range(n)], [0.9 - 0.1 * i for i in range(n)]
    _script_evaluator(monkeypatch, holdout_error=up if holdout_rises else down,
                      train_error=down if holdout_rises else up, holdout_loss=[2.0 + i for i in range(n)])
    cfg = tiny(lr=0.001, optim__schedule="plateau", optim__patience=0, optim__max_drops=10, epochs=4,
               data__synthetic_train=96, data__holdout=32)
    s = train.run(cfg, tmp_path, quiet=True)
    lrs = [x["lr"] for x in rows(tmp_path)]  # each row: the lr its epoch trained with
    if holdout_rises:  # epoch 1 sets the schedule's best, 2 and 3 are worse: /10 after each
        assert lrs == pytest.approx([1e-3, 1e-3, 1e-3, 1e-4, 1e-5], rel=1e-9)
        assert s["best_holdout_epoch"] == 0 and s["best_holdout_error"] == pytest.approx(0.1)
    else:
        assert lrs == pytest.approx([1e-3] * 5, rel=1e-9)
        assert s["best_holdout_epoch"] == 4 and s["best_holdout_error"] == pytest.approx(0.5)


@pytest.mark.parametrize("eval_every", [1.0, 0.5])
def test_step_schedule(tmp_path, eval_every):
    """Milestones are in epochs, also with evaluations within an epoch (each row: the lr it trained with)."""
    cfg = tiny(lr=0.001, optim__schedule="step", optim__milestones="1,2", optim__lr_factor=0.5, epochs=3,
               data__synthetic_train=64, optim__batch_size=32, eval_every=eval_every)
    train.run(cfg, tmp_path, quiet=True)
    per_epoch = round(1 / eval_every)
    assert [x["lr"] for x in rows(tmp_path)] == pytest.approx([1e-3] + [1e-3] * per_epoch + [5e-4] * per_epoch
                                                              + [2.5e-4] * per_epoch)


def test_target_train_error_stops_at_first_epoch_reaching_it(tmp_path):
    cfg = tiny(data__synthetic_train=64, optim__batch_size=32, lr=0.001, optim__schedule="constant", epochs=30,
               target_train_error=0.5)
    s = train.run(cfg, tmp_path, quiet=True)
    r = rows(tmp_path)
    errs = [x["train_error"] for x in r]  # eval mode, on the training slice
    assert s["status"] == "target-reached" and s["target_train_error"] == 0.5
    assert errs[-1] <= 0.5 and all(e > 0.5 for e in errs[:-1])
    assert s["epochs_run"] == r[-1]["epoch"] == len(errs) - 1 < 30
    # interpolated between the last evaluation above the target and the first at or below it
    (e0, x0), (e1, x1) = [(x["epoch"], x["train_error"]) for x in r[-2:]]
    assert e0 < s["epochs_to_target"] <= e1
    assert s["epochs_to_target"] == pytest.approx(e0 + (x0 - 0.5) / (x0 - x1) * (e1 - e0), rel=1e-12)


def test_target_stops_at_the_evaluation_reaching_it_mid_epoch(tmp_path, monkeypatch):
    """Four evaluations an epoch, a scripted training error that reaches the target at the
    second evaluation of epoch 2: the run stops there (epoch 1.25, step 5), not at the end of
    the epoch, and the crossing is interpolated between epochs 1.0 and 1.25."""
    script = [0.9, 0.85, 0.8, 0.7, 0.6, 0.45] + [0.9] * 10  # epochs 0, 0.25, ..., 1.25, ...
    _script_evaluator(monkeypatch, train_error=script)
    steps: list[int] = []
    cfg = tiny(data__synthetic_train=64, optim__batch_size=16, lr=0.001, optim__schedule="constant", epochs=3,
               target_train_error=0.5, eval_every=0.25)
    s = train.run(cfg, tmp_path, quiet=True, on_step=lambda a, b: steps.append(a))
    r = rows(tmp_path)
    assert [x["epoch"] for x in r] == [0, 0.25, 0.5, 0.75, 1.0, 1.25]
    assert steps == [1, 2, 3, 4, 5] and r[-1]["step"] == s["steps"] == 5
    assert s["status"] == "target-reached" and s["epochs_run"] == 1.25 and s["final_train_error"] == 0.45
    assert r[-2]["epoch"] < s["epochs_to_target"] < r[-1]["epoch"]
    assert s["epochs_to_target"] == pytest.approx(1.0 + (0.6 - 0.5) / (0.6 - 0.45) * 0.25, rel=1e-12)
    assert s["total_images"] == 5 * 16 and 0 <= s["test_error"] <= 1  # tested at the weights that reached it


# ---------------------------------------------------------------- divergence and stalls


def test_nan_loss_is_recorded_as_diverged(tmp_path):
    with pytest.raises(DivergedError) as e:
        train.run(tiny(lr=1e6, epochs=3), tmp_path, quiet=True)
    assert "\n" not in str(e.value) and "lr" in str(e.value)
    s = summary(tmp_path)
    assert s["status"] == "diverged" and s["diverged_at"]["epoch"] == 1
    json.loads((tmp_path / "summary.json").read_text(), parse_constant=_no_nan)  # strict JSON: no NaN
    with pytest.raises(DivergedError):  # a diverged run is not trained again, and says so
        train.run(tiny(lr=1e6, epochs=3), tmp_path, quiet=True)


def _no_nan(name):
    raise ValueError(f"{name} is not JSON")


@pytest.mark.parametrize("nan_after, epoch, kept", [
    # forward calls: 1 evaluation batch at epoch 0, then per epoch 2 training steps + 1 evaluation batch
    (4, 2, [0, 1]),  # NaN from epoch 2's first step
    (3, 1, [0]),  # NaN first in epoch 1's evaluation: no row with a NaN metric is written
    (0, 0, []),  # NaN from the initialised net: not even the epoch-0 row
])
def test_nan_from_the_model_is_diverged(tmp_path, monkeypatch, nan_after, epoch, kept):
    """A model whose output turns NaN after `nan_after` forward calls: the run stops in
    `epoch`, keeps the epochs before it, and writes no NaN metric."""
    real_build = train.build
    calls = {"n": 0}

    def build(mcfg):
        model = real_build(mcfg)

        def hook(module, inputs, output):
            calls["n"] += 1
            return output * float("nan") if calls["n"] > nan_after else output

        model.register_forward_hook(hook)
        return model

    monkeypatch.setattr(train, "build", build)
    with pytest.raises(DivergedError, match=f"epoch {epoch}"):
        train.run(tiny(epochs=3), tmp_path, quiet=True)
    assert [x["epoch"] for x in rows(tmp_path)] == kept
    s = summary(tmp_path)
    assert s["status"] == "diverged" and s["diverged_at"]["epoch"] == epoch
    assert s["epochs_run"] == (kept[-1] if kept else 0)
    for x in rows(tmp_path):
        assert all(math.isfinite(v) for v in x.values() if v is not None)


def test_nan_training_loss_alone_is_diverged(tmp_path, monkeypatch):
    """A NaN in the training loss with finite gradients (so the weights, and the validation
    metrics, stay finite): only the training-loss check can see it."""
    nan_from = {"call": 3}  # epoch 1 is 2 steps

    def cross_entropy(logits, y):
        nan_from["call"] -= 1
        loss = torch.nn.functional.cross_entropy(logits, y)
        return loss + torch.tensor(float("nan")) if nan_from["call"] < 1 else loss  # the constant has no gradient

    monkeypatch.setattr(train, "F", SimpleNamespace(**(vars(torch.nn.functional) | {"cross_entropy": cross_entropy})))
    with pytest.raises(DivergedError, match="epoch 2"):
        train.run(tiny(epochs=3), tmp_path, quiet=True)
    assert [x["epoch"] for x in rows(tmp_path)] == [0, 1]


def test_stall_warning_names_init_and_lr(tmp_path, capsys):
    cfg = tiny(lr=1e-12, stall_steps=2, epochs=2)  # checked at the end of each epoch: warned once
    train.run(cfg, tmp_path, quiet=True)
    err = capsys.readouterr().err
    warnings = [line for line in err.splitlines() if "not learning" in line]
    assert len(warnings) == 1, err
    assert "ln(10)" in warnings[0] and "init=" in warnings[0] and "lr=" in warnings[0]


def test_no_stall_warning_while_learning(tmp_path, capsys):
    cfg = tiny(data__synthetic_train=64, optim__batch_size=32, lr=0.001, optim__schedule="constant", epochs=12,
               stall_steps=14)
    train.run(cfg, tmp_path, quiet=True)
    assert "not learning" not in capsys.readouterr().err


def test_progress_bar(tmp_path, capsys):
    """Not quiet: a rich progress bar, with the epoch lines and the warning printed above it."""
    train.run(tiny(lr=1e-12, stall_steps=1), tmp_path)
    out = capsys.readouterr().out
    assert "epoch 1: train err" in out and "not learning" in out


def test_quiet_log_prints_one_line_per_epoch(tmp_path, capsys):
    train.run(tiny(epochs=2), tmp_path, quiet=True, log=True)
    err = capsys.readouterr().err
    assert [line.split(":")[0] for line in err.splitlines() if line.startswith("epoch")] == ["epoch 1", "epoch 2"]


# ---------------------------------------------------------------- evaluation


def _spy_on_evaluate(monkeypatch, log: list | None = None) -> list[tuple[str, tuple[int, ...]]]:
    """Record (split, batch shape) of every batch repro.evaluation.evaluate sees; also append
    ("evaluate", split, views) to `log` per call."""
    seen: list[tuple[str, tuple[int, ...]]] = []
    real = evaluation.evaluate

    def spy(model, loader, *a, **k):
        if log is not None:
            log.append(("evaluate", loader.split, loader.views))
        for x, _ in loader.epoch(0):
            seen.append((loader.split, tuple(x.shape)))
        return real(model, loader, *a, **k)

    monkeypatch.setattr(evaluation, "evaluate", spy)
    return seen


def test_ten_view_evaluation(tmp_path, monkeypatch):
    """data.test_views=10 (paper §4.1): at the end the model sees the centre crop and 10 crops
    of every test image, the headline test error is the 10-view one, and the metrics stay
    finite; the training slice and the holdout are evaluated on centre crops."""
    seen = _spy_on_evaluate(monkeypatch)
    cfg = tiny("alexnet-cifar", data__synthetic_train=96, data__holdout=32, optim__batch_size=32,
               data__image_size=28, data__crop=24, data__test_views=10)
    s = train.run(cfg, tmp_path, quiet=True)
    assert [shape for split, shape in seen if split == "test"] == [(32, 3, 24, 24), (10, 32, 3, 24, 24)]
    assert {shape for split, shape in seen if split != "test"} == {(64, 3, 24, 24), (32, 3, 24, 24)}
    assert TEN_VIEW_KEYS <= set(s) and s["test_views"] == 10
    assert (s["test_error"], s["test_loss"], s["test_top5_error"]) == (
        s["test_error_10view"], s["test_loss_10view"], s["test_top5_error_10view"])
    for views in ("1view", "10view"):
        assert math.isfinite(s[f"test_loss_{views}"])
        assert 0 <= s[f"test_top5_error_{views}"] <= s[f"test_error_{views}"] <= 1
    assert s["test_loss_1view"] != s["test_loss_10view"]


@pytest.mark.parametrize("model, views", [("cifar-80sec", [1]), ("alexnet-cifar", [1, 10])])
def test_the_test_set_is_evaluated_once_at_the_end(tmp_path, monkeypatch, model, views):
    """Protocol §1: the test split is evaluated once per run (per number of views), after the
    last training step, never during training; a finished run is not evaluated again."""
    log: list[tuple] = []
    _spy_on_evaluate(monkeypatch, log)
    crop = {"data__image_size": 28, "data__crop": 24} if model == "alexnet-cifar" else {}
    cfg = tiny(model, data__synthetic_train=96, data__holdout=32, optim__batch_size=32, epochs=3, eval_every=0.5,
               **crop)
    train.run(cfg, tmp_path, quiet=True, on_step=lambda a, b: log.append(("step", a)))
    tests = [i for i, x in enumerate(log) if x[:2] == ("evaluate", "test")]
    assert [log[i][2] for i in tests] == views
    last_step = max(i for i, x in enumerate(log) if x[0] == "step")
    assert log[last_step] == ("step", 6) and min(tests) > last_step
    assert sum(x[:2] == ("evaluate", "holdout") for x in log) == len(rows(tmp_path)) == 7  # epoch 0 + 2 an epoch
    log.clear()
    train.run(cfg, tmp_path, quiet=True)
    assert log == []


def test_eval_every_quarter_epoch(tmp_path):
    """eval_every=0.25: four rows an epoch, at fractional epochs, after the epoch-0 row; each
    row's running figures cover the training batches since the row before."""
    cfg = tiny(data__synthetic_train=128, data__holdout=64, optim__batch_size=16, epochs=2, eval_every=0.25)
    s = train.run(cfg, tmp_path, quiet=True)
    r = rows(tmp_path)
    assert [x["epoch"] for x in r] == [0, 0.25, 0.5, 0.75, 1.0, 1.25, 1.5, 1.75, 2.0]
    assert [x["step"] for x in r] == list(range(9))  # 64 images / batch 16: one step per evaluation
    assert [x["images"] for x in r] == [0] + [16] * 8 and s["total_images"] == 128
    assert all(set(x) == ROW_KEYS for x in r)
    assert all((16 * x["train_error_running"]).is_integer() for x in r[1:])  # over one batch of 16
    assert all(x["holdout_error"] is not None and x["train_error"] is not None for x in r)
    assert s["epochs_run"] == 2.0 and s["steps"] == 8 and s["eval_every"] == 0.25
    assert torch.load(tmp_path / "checkpoint.pt", weights_only=True)["history"] == r


def test_evaluate_averages_softmax_over_views():
    """The 10-view prediction is the mean of the views' softmax outputs (paper §4.1), not of
    their logits: here the two rules pick different classes."""
    table = torch.tensor([[2.0, 0.0, -5.0], [-5.0, 0.0, 2.2]])  # logits of view 0 and view 1

    class Views(torch.nn.Module):  # each image carries its view's index as its pixel value
        def forward(self, x):
            return table[x[:, 0, 0, 0].long()]

    class FakeLoader:
        def epoch(self, e):
            x = torch.stack([torch.zeros(1, 3, 2, 2), torch.ones(1, 3, 2, 2)])  # (views=2, B=1, 3, 2, 2)
            yield x, torch.tensor([2])

    probs = table.softmax(-1).mean(0)
    assert probs.argmax() == 2 and table.mean(0).argmax() == 1
    out = evaluation.evaluate(Views(), FakeLoader(), torch.device("cpu"), train.nullcontext)
    assert out["loss"] == pytest.approx(-math.log(probs[2].item()), rel=1e-6)
    assert out["error"] == 0.0 and out["top5_error"] == 0.0


def test_resolve_device():
    assert train.resolve_device("cpu") == torch.device("cpu")
    with pytest.raises(ConfigError, match="unknown device"):
        train.resolve_device("nope")
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="CUDA is not available"):
            train.resolve_device("cuda")


# ---------------------------------------------------------------- real data


@pytest.mark.data
def test_cifar10_smoke(tmp_path, cifar10_root):
    cfg = make_config("cifar-80sec", {"data.data_dir": str(cifar10_root), "data.subset": 512, "epochs": 1,
                                      "runtime.device": "cpu", "runtime.threads": 1})
    s = train.run(cfg, tmp_path, quiet=True)
    first, row = rows(tmp_path)
    assert s["status"] == "finished" and row["images"] == 512 and row["step"] == 4 and first["step"] == 0
    assert math.isfinite(row["train_loss"]) and 0 <= s["test_error"] <= 1
    ds = json.loads((tmp_path / "dataset.json").read_text())
    assert ds["synthetic"] is False and ds["train_size"] == 512 and ds["test_size"] == 10_000


def test_a_selection_run_stops_once_a_rival_reached_the_target_sooner(tmp_path, monkeypatch):
    """`stop_at`, asked at the end of each epoch, gives a rival grid run's epochs to target
    (None until one has): the run stops at the first epoch end at or past it without having
    reached the target, status outrun, the rival's figure in its summary; never retrained."""
    _script_evaluator(monkeypatch, train_error=[0.9] * 20)  # never reaches 0.5
    bounds, asked = iter([None, 2.6, 2.6, 2.6]), []
    cfg = tiny(data__synthetic_train=64, optim__batch_size=32, lr=0.001, optim__schedule="constant", epochs=6,
               target_train_error=0.5)
    s = train.run(cfg, tmp_path, quiet=True, stop_at=lambda: asked.append(1) or next(bounds))
    assert s["status"] == "outrun" and s["outrun_at"] == 2.6 and s["epochs_run"] == 3.0
    assert len(asked) == 3 and [x["epoch"] for x in rows(tmp_path)] == [0, 1, 2, 3]  # epoch 2 < 2.6: trained on
    assert train.run(cfg, tmp_path, quiet=True) == s  # terminal: the stored summary, nothing trained


def test_outrun_only_once_past_the_bound_and_never_after_reaching_the_target(tmp_path, monkeypatch):
    _script_evaluator(monkeypatch, train_error=[0.9, 0.8, 0.4] + [0.9] * 10)  # reaches 0.5 at epoch 2
    cfg = tiny(data__synthetic_train=64, optim__batch_size=32, lr=0.001, optim__schedule="constant", epochs=6,
               target_train_error=0.5)
    s = train.run(cfg, tmp_path, quiet=True, stop_at=lambda: 0.5)  # a rival reached it at 0.5 epochs
    assert s["status"] == "outrun" and s["epochs_run"] == 1.0  # at epoch 1, past 0.5 without reaching it
    _script_evaluator(monkeypatch, train_error=[0.9, 0.4] + [0.9] * 10)
    s = train.run(cfg, tmp_path / "b", quiet=True, stop_at=lambda: 1.5)
    assert s["status"] == "target-reached" and "outrun_at" not in s
