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

import repro.train as train
from repro.config import from_dict
from repro.errors import ConfigError, DivergedError
from repro.models import make_config

pytestmark = pytest.mark.usefixtures("one_thread")

REPO = Path(__file__).resolve().parents[1]
LN10 = math.log(10)

TINY = {"data.dataset": "synthetic", "data.synthetic_train": 128, "data.synthetic_test": 32,
        "optim.batch_size": 64, "epochs": 1, "runtime.device": "cpu", "runtime.threads": 1}
ROW_KEYS = {"epoch", "lr", "train_loss", "train_error", "val_loss", "val_error", "val_top5_error", "seconds",
            "data_seconds", "compute_seconds", "images_per_second", "images", "steps"}
SUMMARY_KEYS = {"status", "hash", "epochs_run", "epochs_to_target", "target_train_error", "final_train_error",
                "final_val_error", "final_val_top5_error", "best_val_error", "test_error", "test_top5_error",
                "test_is_val", "wall_seconds", "session_seconds", "total_images", "finished_at"}
TIMING_ROW = {"seconds", "data_seconds", "compute_seconds", "images_per_second"}
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
    assert s["final_train_error"] == 0.0 and r[-1]["train_loss"] < 0.3
    assert r[0]["train_loss"] > 2.0  # it started at chance
    assert s["epochs_run"] == len(r) < 30


@pytest.mark.slow
def test_alexnet_cifar_paper_init_learns_on_synthetic(tmp_path):
    """With a literal N(0, 0.01) (§5) alexnet-cifar sat at ln(10) for 400+ steps: its fan-ins are
    4-16x smaller than the paper net's. The init carried over by fan-in (repro.models.alexnet.
    init_gains) keeps the paper's per-layer gain, and the net learns: well below chance in 32 steps."""
    cfg = tiny("alexnet-cifar", data__synthetic_train=512, data__synthetic_test=128,
               optim__schedule="constant", epochs=8, stall_steps=10**6)
    train.run(cfg, tmp_path, quiet=True)
    r = rows(tmp_path)
    assert r[-1]["val_error"] < 0.75, [x["val_error"] for x in r]
    assert r[-1]["train_loss"] < r[0]["train_loss"] - 0.3


def test_alexnet_cifar_trains_through_the_trainer(tmp_path):
    """The two-column, dropout, LRN net goes through the whole loop with its paper init:
    finite metrics, an initial loss near ln(10), and the weights actually move."""
    cfg = tiny("alexnet-cifar", data__synthetic_train=64, optim__batch_size=32, epochs=1)
    torch.manual_seed(cfg.seed)
    init = train.build(cfg.model).state_dict()
    train.run(cfg, tmp_path, quiet=True)
    (row,) = rows(tmp_path)
    assert all(math.isfinite(row[k]) for k in ("train_loss", "val_loss", "val_error"))
    assert abs(row["train_loss"] - LN10) < 1.5  # near chance (the fan-in-scaled fc layers start louder)
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
def test_bf16_channels_last_trains_end_to_end_on_cpu(tmp_path, monkeypatch, model):
    """runtime.precision=bf16 autocasts the forward pass on the CPU and runtime.channels_last
    feeds NHWC batches; both are recorded in env.json and the hash, and the losses stay close
    to the fp32 NCHW run's (never equal: bf16 rounds differently)."""
    seen = _record_conv1(monkeypatch)
    fp32 = tiny(model, data__synthetic_train=64, optim__batch_size=32, runtime__precision="fp32",
                runtime__channels_last=False)
    train.run(fp32, tmp_path / "fp32", quiet=True)
    assert seen and set(seen) == {(False, torch.float32)}
    seen.clear()
    fast = tiny(model, data__synthetic_train=64, optim__batch_size=32, runtime__precision="bf16",
                runtime__channels_last=True)
    train.run(fast, tmp_path / "bf16", quiet=True)
    assert seen and set(seen) == {(True, torch.bfloat16)}  # training steps and evaluation alike
    assert fast.hash() != fp32.hash()
    env = json.loads((tmp_path / "bf16" / "env.json").read_text())
    assert (env["precision"], env["channels_last"], env["autocast"]) == ("bf16", True, "bfloat16")
    (a,), (b,) = rows(tmp_path / "fp32"), rows(tmp_path / "bf16")
    assert all(math.isfinite(b[k]) for k in ("train_loss", "val_loss"))
    assert a["train_loss"] != b["train_loss"] and abs(a["train_loss"] - b["train_loss"]) < 0.05
    assert abs(a["val_loss"] - b["val_loss"]) < 0.05


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
    assert (ds["train_size"], ds["holdout_size"], ds["test_size"]) == (192, 64, 32)

    r = rows(tmp_path)
    assert [x["epoch"] for x in r] == [1, 2]
    for x in r:
        assert set(x) == ROW_KEYS
        assert x["images"] == 192 and 0 <= x["val_top5_error"] <= x["val_error"] <= 1
        assert all(math.isfinite(v) for v in x.values())
    assert [x["steps"] for x in r] == [3, 6]  # 192 images / batch 64
    assert steps == [(i, 6) for i in range(1, 7)]

    assert SUMMARY_KEYS <= set(s) and s == summary(tmp_path)
    assert s["status"] == "finished" and s["hash"] == cfg.hash() and s["epochs_run"] == 2
    assert s["total_images"] == 384 and s["final_val_error"] == r[-1]["val_error"]
    assert s["test_is_val"] is False and 0 <= s["test_error"] <= 1  # holdout: the test split is separate

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
    assert ckpt["hash"] == tiny().hash() and len(rows(tmp_path)) == 1  # the stored run is untouched


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


def test_resume_after_stop_condition_does_not_train_on(tmp_path):
    """Killed after the last checkpoint but before summary.json: rerunning must end the run
    where it ended, not train past the target."""
    cfg = tiny(data__synthetic_train=64, optim__batch_size=32, lr=0.001, optim__schedule="constant", epochs=30,
               target_train_error=0.5)
    s = train.run(cfg, tmp_path, quiet=True)
    assert s["status"] == "target-reached"
    (tmp_path / "summary.json").unlink()
    again = train.run(cfg, tmp_path, quiet=True)
    assert again["status"] == "target-reached" and again["epochs_run"] == s["epochs_run"]
    assert len(rows(tmp_path)) == s["epochs_run"]


def _train_cmd(out: Path) -> list[str]:
    # alexnet-cifar: dropout (the global RNG), flips, crops of 28x28 images and PCA noise
    # (the loader's per-epoch RNG), a plateau schedule (scheduler state) and PaperSGD momentum.
    return [sys.executable, "-m", "repro", "train", "--model", "alexnet-cifar", "--dataset", "synthetic",
            "--deterministic", "--threads", "1", "--device", "cpu", "--quiet", "--epochs", "6", "--out", str(out),
            "--set", "data.synthetic_train=96", "--set", "data.synthetic_test=32", "--set", "optim.batch_size=32",
            "--set", "data.image_size=28", "--set", "data.crop=24", "--set", "data.pca_noise=0.1",
            "--set", "optim.patience=0", "--set", "optim.max_drops=10"]


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
def test_kill_and_resume_equals_uninterrupted(tmp_path):
    env = os.environ | {"PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    d1, d2 = tmp_path / "whole", tmp_path / "killed"
    quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.PIPE, "text": True}
    whole = subprocess.Popen(_train_cmd(d1), env=env, **quiet)  # the uninterrupted run, meanwhile
    try:
        for _ in range(3):  # a kill that lands after the run ended proves nothing: retry
            if d2.exists():
                for p in d2.iterdir():
                    p.unlink()
            proc = subprocess.Popen(_train_cmd(d2), env=env, **quiet)
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
    killed_at = len(rows(d2))
    assert 1 <= killed_at < 6

    resumed = subprocess.run(_train_cmd(d2), env=env, capture_output=True, text=True, timeout=180)
    assert resumed.returncode == 0, resumed.stderr

    r1, r2 = rows(d1), rows(d2)
    assert len(r1) == len(r2) == 6
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


def test_plateau_drops_lr_then_stops(tmp_path, monkeypatch):
    """Paper §5: divide by 10 when the validation error stops improving, max_drops times,
    then stop at the next plateau. The validation error is scripted (0.9, then 0.8 for
    ever) around the real evaluation."""
    script = iter([0.9, 0.8] + [0.8] * 20)
    real = train.evaluate

    def scripted(*a, **k):
        return real(*a, **k) | {"error": next(script)}

    monkeypatch.setattr(train, "evaluate", scripted)
    cfg = tiny(lr=0.001, optim__schedule="plateau", optim__patience=0, optim__max_drops=2, epochs=20,
               data__synthetic_train=64)
    s = train.run(cfg, tmp_path, quiet=True)
    lrs = [x["lr"] for x in rows(tmp_path)]
    # 1-2: improving; 3: no better -> /10 after it; 4: /10 again (2 drops); 5: a third plateau -> stop
    assert lrs == pytest.approx([1e-3, 1e-3, 1e-3, 1e-4, 1e-5], rel=1e-9)
    assert s["status"] == "finished" and s["epochs_run"] == 5
    assert s["best_val_error"] == 0.8


def test_plateau_patience(tmp_path, monkeypatch):
    script = iter([0.5] * 20)
    real = train.evaluate
    monkeypatch.setattr(train, "evaluate", lambda *a, **k: real(*a, **k) | {"error": next(script)})
    cfg = tiny(lr=0.001, optim__schedule="plateau", optim__patience=1, optim__max_drops=1, epochs=20,
               data__synthetic_train=64)
    s = train.run(cfg, tmp_path, quiet=True)
    # epoch 1 sets the best; 2 is one bad epoch (patience 1); 3 drops; 4 bad; 5 drops again -> stop
    assert [x["lr"] for x in rows(tmp_path)] == pytest.approx([1e-3, 1e-3, 1e-3, 1e-4, 1e-4])
    assert s["epochs_run"] == 5


def test_step_schedule(tmp_path):
    cfg = tiny(lr=0.001, optim__schedule="step", optim__milestones="1,2", optim__lr_factor=0.5, epochs=3,
               data__synthetic_train=64)
    train.run(cfg, tmp_path, quiet=True)
    assert [x["lr"] for x in rows(tmp_path)] == pytest.approx([1e-3, 5e-4, 2.5e-4])


def test_target_train_error_stops_at_first_epoch_reaching_it(tmp_path):
    cfg = tiny(data__synthetic_train=64, optim__batch_size=32, lr=0.001, optim__schedule="constant", epochs=30,
               target_train_error=0.5)
    s = train.run(cfg, tmp_path, quiet=True)
    errs = [x["train_error"] for x in rows(tmp_path)]
    assert s["status"] == "target-reached" and s["target_train_error"] == 0.5
    assert errs[-1] <= 0.5 and all(e > 0.5 for e in errs[:-1])
    assert s["epochs_to_target"] == s["epochs_run"] == len(errs) < 30


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
    (3, 2, [1]),  # epoch 1 is 2 training steps + 1 evaluation batch; NaN from epoch 2's first step
    (2, 1, []),  # NaN first in epoch 1's evaluation: no row with a NaN metric is written
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
    assert s["status"] == "diverged" and s["epochs_run"] == len(kept) and s["diverged_at"]["epoch"] == epoch
    for x in rows(tmp_path):
        assert all(math.isfinite(v) for v in x.values())


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
    assert [x["epoch"] for x in rows(tmp_path)] == [1]


def test_stall_warning_names_init_and_lr(tmp_path, capsys):
    cfg = tiny(lr=0.0, stall_steps=2, epochs=2)  # checked at the end of each epoch: warned once
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
    train.run(tiny(lr=0.0, stall_steps=1), tmp_path)
    out = capsys.readouterr().out
    assert "epoch 1: train err" in out and "not learning" in out


def test_quiet_log_prints_one_line_per_epoch(tmp_path, capsys):
    train.run(tiny(epochs=2), tmp_path, quiet=True, log=True)
    err = capsys.readouterr().err
    assert [line.split(":")[0] for line in err.splitlines() if line.startswith("epoch")] == ["epoch 1", "epoch 2"]


# ---------------------------------------------------------------- evaluation


def test_ten_view_evaluation(tmp_path, monkeypatch):
    """data.test_views=10 (paper §4.1): the model sees 10 crops of every validation image
    and the metrics stay finite."""
    seen: list[tuple[int, ...]] = []
    real = train.evaluate

    def spy(model, loader, *a, **k):
        for x, _ in loader.epoch(0):
            seen.append(tuple(x.shape))
        return real(model, loader, *a, **k)

    monkeypatch.setattr(train, "evaluate", spy)
    cfg = tiny("alexnet-cifar", data__synthetic_train=64, optim__batch_size=32,
               data__image_size=28, data__crop=24, data__test_views=10)
    train.run(cfg, tmp_path, quiet=True)
    (row,) = rows(tmp_path)
    assert seen == [(10, 32, 3, 24, 24)]
    assert all(math.isfinite(row[k]) for k in ("val_loss", "val_error", "val_top5_error"))
    assert 0 <= row["val_top5_error"] <= row["val_error"] <= 1


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
    out = train.evaluate(Views(), FakeLoader(), torch.device("cpu"), train.nullcontext)
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
    (row,) = rows(tmp_path)
    assert s["status"] == "finished" and row["images"] == 512 and row["steps"] == 4
    assert math.isfinite(row["train_loss"]) and 0 <= s["test_error"] <= 1
    ds = json.loads((tmp_path / "dataset.json").read_text())
    assert ds["synthetic"] is False and ds["train_size"] == 512 and ds["test_size"] == 10_000
