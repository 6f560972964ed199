"""Tests for repro.placement: AlexNet's two columns placed on two devices (paper §3.2).

The placed net must be the grouped single-device net, numerically: same outputs, same
gradients (compared per single-device parameter through the gather mapping), same
optimizer groups, and checkpoints in the single-device layout, so that a run placed on
two devices and a run on one are interchangeable. CI has no GPUs, so most tests place
both columns on the CPU; `ColumnTracker` then stands in for two physical devices by
tagging every tensor with its column and failing on any op that mixes the columns
outside `_exchange`. The real two-GPU test is marked `multigpu`.
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch.overrides import TorchFunctionMode
from torch.utils._pytree import tree_flatten

from repro import placement
from repro.errors import ConfigError
from repro.models import build, make_config
from repro.optim import PaperSGD
from repro.placement import TwoColumnAlexNet, place_columns

pytestmark = pytest.mark.usefixtures("one_thread")
CPU2 = ["cpu", "cpu"]


def model_cfg(name: str = "alexnet-cifar", **switches):
    return make_config(name, switches).model


def grouped_and_placed(name: str = "alexnet-cifar", devices=CPU2, dtype=torch.float64, seed: int = 0, **switches):
    torch.manual_seed(seed)
    model = build(model_cfg(name, **switches)).to(dtype)
    return model, place_columns(model, devices)


def batch(n: int = 4, size: int = 24, dtype=torch.float64, seed: int = 1):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 3, size, size, generator=g, dtype=dtype) * 50, torch.randint(0, 10, (n,), generator=g)


# ------------------------------------------------------------------ the same function


@pytest.mark.parametrize("switches", [{}, {"norm": "batchnorm"}, {"norm": "none", "pooling": "non-overlapping"},
                                      {"activation": "tanh", "lrn_convention": "caffe"}])
def test_placed_net_computes_the_grouped_net(switches):
    model, placed = grouped_and_placed(**switches)
    model.eval(), placed.eval()
    x, _ = batch()
    with torch.no_grad():
        want, got = model(x), placed(x)
    assert got.shape == want.shape == (4, 10)
    torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)


def test_placement_copies_the_weights_and_leaves_the_model_alone():
    model, placed = grouped_and_placed()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    gathered = placed.gather_state_dict()
    assert list(gathered) == list(model.state_dict())  # the single-device layout, key for key
    for k, v in model.state_dict().items():
        assert torch.equal(gathered[k], v), k
    with torch.no_grad():
        placed.column1.conv2.weight.add_(1.0)  # a copy, not a view of the grouped weights
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())


def test_halves_are_the_paper_column_split():
    """conv2/conv4/conv5 read only their own column's maps; conv3 and the FC layers read both."""
    model, placed = grouped_and_placed()
    for col in (placed.column1, placed.column2):
        assert col.conv1.in_channels == 3 and col.conv1.out_channels == model.conv1.out_channels // 2
        for n in ("conv2", "conv4", "conv5"):  # paper §3.5: "only from those kernel maps ... on the same GPU"
            layer = getattr(model, n)
            assert getattr(col, n).in_channels == layer.in_channels // 2
            assert getattr(col, n).out_channels == layer.out_channels // 2
        assert col.conv3.in_channels == model.conv3.in_channels  # paper §3.5: "all kernel maps in the second layer"
        assert col.fc6.in_features == model.fc6.in_features and col.fc7.in_features == model.fc7.in_features
        assert not hasattr(col, "fc8")
    assert placed.fc8.in_features == model.fc8.in_features
    assert sum(p.numel() for p in placed.parameters()) == sum(p.numel() for p in model.parameters())


def test_full_alexnet_at_224_batch_1():
    model, placed = grouped_and_placed("alexnet", dtype=torch.float32)
    model.eval(), placed.eval()
    x, _ = batch(1, 224, torch.float32)
    with torch.no_grad():
        want, got = model(x), placed(x)
    assert got.shape == (1, 1000)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)


# ------------------------------------------------------------------ gradients and the optimizer


@pytest.mark.parametrize("switches", [{"dropout": 0.0}, {"dropout": 0.0, "norm": "batchnorm"}])
def test_gradients_equal_per_original_parameter(switches):
    model, placed = grouped_and_placed(**switches)  # training mode: BatchNorm uses batch statistics
    x, y = batch()
    F.cross_entropy(model(x), y).backward()
    F.cross_entropy(placed(x), y).backward()
    grads = placed.gather_grads()
    names = [n for n, _ in model.named_parameters()]
    assert list(grads) == names
    for n, p in model.named_parameters():
        torch.testing.assert_close(grads[n], p.grad, rtol=1e-10, atol=1e-14, msg=n)
    if switches.get("norm") == "batchnorm":  # the running statistics were updated the same way
        gathered = placed.gather_state_dict()
        for k, v in model.state_dict().items():
            torch.testing.assert_close(gathered[k], v, rtol=1e-12, atol=1e-12, msg=k)


def test_optim_groups_map_split_parameters_to_their_layer_hparams():
    model, placed = grouped_and_placed("alexnet-cifar", norm="batchnorm")
    for wd in (None, 0.0):
        want, got = model.optim_groups(wd), placed.optim_groups(wd)
        assert [g["name"] for g in got] == [g["name"] for g in want]
        for g, w in zip(got, want, strict=True):
            assert (g["weight_decay"], g["lr_mult"]) == (w["weight_decay"], w["lr_mult"])
            assert sum(p.numel() for p in g["params"]) == sum(p.numel() for p in w["params"])
    groups = {g["name"]: g["params"] for g in placed.optim_groups()}
    assert groups["conv2.weight"] == [placed.column1.conv2.weight, placed.column2.conv2.weight]
    assert groups["fc8.bias"] == [placed.fc8.bias]
    assert {id(p) for ps in groups.values() for p in ps} == {id(p) for p in placed.parameters()}


def test_sgd_steps_and_optimizer_state_match_the_grouped_net():
    model, placed = grouped_and_placed(dropout=0.0)
    opt_m, opt_p = PaperSGD(model.optim_groups(None)), PaperSGD(placed.optim_groups(None))
    for step in range(3):
        x, y = batch(seed=10 + step)
        for net, opt in ((model, opt_m), (placed, opt_p)):
            opt.zero_grad()
            F.cross_entropy(net(x), y).backward()
            opt.step()
    for k, v in model.state_dict().items():
        torch.testing.assert_close(placed.gather_state_dict()[k], v, rtol=1e-10, atol=1e-13, msg=k)
    want = opt_m.state_dict()
    got = placed.gather_optimizer_state(opt_p.state_dict())
    assert [g["params"] for g in got["param_groups"]] == [g["params"] for g in want["param_groups"]]
    for i, s in want["state"].items():
        torch.testing.assert_close(got["state"][i]["velocity"], s["velocity"], rtol=1e-10, atol=1e-13)
    # and back: the single-device optimizer state loads into the placed net's optimizer
    fresh = PaperSGD(placed.optim_groups(None))
    fresh.load_state_dict(placed.scatter_optimizer_state(want))
    for a, b in zip(fresh.state_dict()["state"].values(), opt_p.state_dict()["state"].values(), strict=True):
        torch.testing.assert_close(a["velocity"], b["velocity"], rtol=1e-10, atol=1e-13)


def test_scatter_state_dict_and_gather_model_round_trip():
    model, placed = grouped_and_placed()
    torch.manual_seed(5)
    other = build(model_cfg()).double()
    placed.scatter_state_dict(other.state_dict())
    back = placed.gather_model()
    assert type(back) is type(model) and back.columns == 2
    for k, v in other.state_dict().items():
        assert torch.equal(back.state_dict()[k], v), k
    with pytest.raises(ConfigError, match="does not fit"):
        placed.scatter_state_dict({k: v for k, v in other.state_dict().items() if k != "fc8.bias"})
    wrong = dict(other.state_dict()) | {"fc8.bias": torch.zeros(3)}
    with pytest.raises(ConfigError, match="shape"):
        placed.scatter_state_dict(wrong)


# ------------------------------------------------------------------ where the columns communicate


class ColumnTracker(TorchFunctionMode):
    """Two virtual devices on one CPU: every tensor carries the column it lives in, and an
    op that combines tensors of both columns (a cross-device transfer on real GPUs) is
    recorded as a violation unless it happens inside `_exchange`."""

    def __init__(self):
        super().__init__()
        self.violations: list[str] = []
        self.exchanging = False  # set while `_exchange` runs: there mixing is the point

    def __torch_function__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        if self.exchanging:
            return out
        tags = {getattr(t, "_column", None) for t in tree_flatten((args, kwargs))[0] if isinstance(t, torch.Tensor)}
        tags.discard(None)
        if len(tags) > 1:
            self.violations.append(getattr(func, "__name__", str(func)))
        if len(tags) == 1:
            tag = tags.pop()
            for t in tree_flatten(out)[0]:
                if isinstance(t, torch.Tensor):
                    t._column = tag
        return out


def tag_columns(placed: TwoColumnAlexNet) -> None:
    for c, module in ((1, placed.column1), (2, placed.column2), (1, placed.fc8)):  # fc8 lives on devices[0]
        for p in list(module.parameters()) + list(module.buffers()):
            p._column = c


def test_columns_communicate_only_into_conv3_fc6_fc7_fc8(monkeypatch):
    model, placed = grouped_and_placed(dropout=0.0)
    tag_columns(placed)
    real = placement._exchange
    calls: list[str] = []
    tracker = ColumnTracker()

    def exchange(parts, devices, into):
        calls.append(into)
        assert [getattr(p, "_column", None) for p in parts] == [1, 2]  # one part from each column
        tracker.exchanging = True
        try:
            out = real(parts, devices, into)
        finally:
            tracker.exchanging = False
        for column, t in enumerate(out, start=1):  # output i lives on devices[i]
            t._column = column
        return out

    monkeypatch.setattr(placement, "_exchange", exchange)
    x, y = batch()
    with tracker:
        logits = placed(x)
        F.cross_entropy(logits, y).backward()
    assert calls == ["conv3", "fc6", "fc7", "fc8"]  # paper §3.2: four exchanges per forward, no more
    assert tracker.violations == []
    assert logits._column == 1
    with tracker, torch.no_grad():
        placed.eval()(x)
    assert calls == ["conv3", "fc6", "fc7", "fc8"] * 2 and tracker.violations == []


def test_column_tracker_catches_a_hidden_transfer():
    """The tracker is not vacuous: an op mixing the columns' tensors is recorded."""
    _, placed = grouped_and_placed()
    tag_columns(placed)
    tracker = ColumnTracker()
    with tracker:
        torch.cat([placed.column1.conv1.bias, placed.column2.conv1.bias])
    assert tracker.violations == ["cat"]


# ------------------------------------------------------------------ errors


@pytest.mark.parametrize("name, switches, match", [
    ("alexnet-cifar", {"columns": 1}, "columns=1"),
    ("cifar-80sec", {}, "columns=1"),
])
def test_only_the_two_column_alexnet_can_be_placed(name, switches, match):
    model = build(model_cfg(name, **switches))
    with pytest.raises(ConfigError, match=match):
        place_columns(model, CPU2)


def test_place_columns_rejects_other_modules_and_device_counts():
    with pytest.raises(ConfigError, match="PaperNet"):
        place_columns(torch.nn.Linear(2, 2), CPU2)
    model = build(model_cfg())
    with pytest.raises(ConfigError, match="two devices"):
        place_columns(model, ["cpu"])


def test_parse_devices():
    assert placement.parse_devices("cpu, cpu") == [torch.device("cpu")] * 2
    for bad, match in [("cpu", "name two devices"), ("cpu,cpu,cpu", "name two devices"), ("cpu,floppy", "unknown")]:
        with pytest.raises(ConfigError, match=match):
            placement.parse_devices(bad)
    with pytest.raises(ConfigError, match="CUDA device"):
        placement.parse_devices(f"cuda:0,cuda:{torch.cuda.device_count()}")  # one more than there are


def test_resolve_devices_from_the_run_config():
    assert placement.resolve_devices(make_config("alexnet-cifar")) is None  # runtime.devices="": one device
    assert placement.resolve_devices(make_config("alexnet-cifar", {"devices": "cpu,cpu"})) == [torch.device("cpu")] * 2
    with pytest.raises(ConfigError, match="cifar-80sec"):
        placement.resolve_devices(make_config("cifar-80sec", {"devices": "cpu,cpu"}))
    with pytest.raises(ConfigError, match="columns=1"):
        placement.resolve_devices(make_config("alexnet", {"devices": "cpu,cpu", "columns": 1}))
    with pytest.raises(ConfigError, match="nproc"):
        placement.resolve_devices(make_config("alexnet-cifar", {"devices": "cpu,cpu"}), world=2)
    # a runtime field: where the columns run is not part of the run's identity
    assert make_config("alexnet-cifar", {"devices": "cpu,cpu"}).hash() == make_config("alexnet-cifar").hash()


# ------------------------------------------------------------------ through the trainer


def _run_cfg(**over):
    """Two short epochs in a regime that is not chaotic: at alexnet-cifar's own lr (0.01) and
    batch 16 the loss climbs to ~4.8, and kernel-level summation differences between CPUs
    then grow without bound; at lr 1e-3, constant, the trajectories of two summation orders
    stay within the tolerance on any CPU."""
    base = {"data.dataset": "synthetic", "synthetic_train": 64, "synthetic_test": 32, "batch_size": 16,
            "epochs": 2, "dropout": 0.0, "threads": 1, "stall_steps": 10**6,
            "optim.lr": 1e-3, "optim.schedule": "constant", "data.holdout": 0}  # constant: nothing adapts
    return make_config("alexnet-cifar", base | over)


class _Stop(Exception):
    pass


def _stop_at(k):
    def on_step(step, total):
        if step == k:
            raise _Stop
    return on_step


def _ckpt(path: Path) -> dict:
    return torch.load(path / "checkpoint.pt", weights_only=True)


def _assert_same_checkpoint(a: dict, b: dict, tol: float = 2e-5) -> None:
    assert list(a["model"]) == list(b["model"])
    for k in a["model"]:
        torch.testing.assert_close(a["model"][k], b["model"][k], rtol=tol, atol=tol, msg=k)
    sa, sb = a["optimizer"]["state"], b["optimizer"]["state"]
    assert sorted(sa) == sorted(sb)
    for i in sa:
        torch.testing.assert_close(sa[i]["velocity"], sb[i]["velocity"], rtol=tol, atol=tol)
    for ra, rb in zip(a["history"], b["history"], strict=True):
        assert ra["train_loss"] == pytest.approx(rb["train_loss"], rel=1e-4)


def test_train_run_on_two_devices_resumes_on_one_and_back(tmp_path):
    """`repro train --devices cpu,cpu` trains the same net as one device, and its checkpoints
    (single-device layout) resume on one device, and a one-device checkpoint on two."""
    from repro.train import run

    summary = run(_run_cfg(), tmp_path / "one", quiet=True)  # reference: one device, uninterrupted
    ref = _ckpt(tmp_path / "one")
    losses = [r["train_loss"] for r in ref["history"]]  # eval mode: the net as initialised, then each epoch
    assert losses[-1] < losses[0] < 1.2 * math.log(10), f"the reference run must learn, not blow up: {losses}"
    running = [r["train_loss_running"] for r in ref["history"][1:]]
    assert running[-1] < running[0] < 1.2 * math.log(10), f"the reference run must learn, not blow up: {running}"
    assert summary["status"] == "finished"

    placed = _run_cfg(devices="cpu,cpu")
    with pytest.raises(_Stop):  # killed in epoch 2 (4 steps per epoch)
        run(placed, tmp_path / "two-then-one", quiet=True, on_step=_stop_at(6))
    mid = _ckpt(tmp_path / "two-then-one")
    assert mid["epoch"] == 1 and list(mid["model"]) == list(ref["model"])
    run(_run_cfg(), tmp_path / "two-then-one", quiet=True)  # resume on one device
    _assert_same_checkpoint(_ckpt(tmp_path / "two-then-one"), ref)

    with pytest.raises(_Stop):
        run(_run_cfg(), tmp_path / "one-then-two", quiet=True, on_step=_stop_at(6))
    run(placed, tmp_path / "one-then-two", quiet=True)  # resume on two devices
    _assert_same_checkpoint(_ckpt(tmp_path / "one-then-two"), ref)


# ------------------------------------------------------------------ real devices


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cpu_and_gpu_columns_equal_the_grouped_net():
    """One column on the CPU, one on the GPU: any transfer outside `_exchange` would fail."""
    model, placed = grouped_and_placed(devices=["cpu", "cuda:0"], dropout=0.0)
    x, y = batch()
    F.cross_entropy(model(x), y).backward()
    out = placed(x)
    assert out.device.type == "cpu" and placed.column2.conv1.weight.device.type == "cuda"
    torch.testing.assert_close(out, model(x), rtol=1e-10, atol=1e-12)
    F.cross_entropy(out, y).backward()
    grads = placed.gather_grads("cpu")
    for n, p in model.named_parameters():
        torch.testing.assert_close(grads[n], p.grad, rtol=1e-9, atol=1e-12, msg=n)


@pytest.mark.multigpu
@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs two CUDA devices")
@pytest.mark.parametrize("name, size", [("alexnet-cifar", 24), ("alexnet", 224)])
def test_two_gpus_equal_the_grouped_net_on_the_cpu(name, size):
    """The paper's layout: column 1 on cuda:0, column 2 on cuda:1, against the CPU grouped net (float64)."""
    model, placed = grouped_and_placed(name, devices=["cuda:0", "cuda:1"], dropout=0.0)
    assert placed.column1.conv2.weight.device == torch.device("cuda", 0)
    assert placed.column2.conv2.weight.device == torch.device("cuda", 1)
    x, _ = batch(2, size)
    y = torch.tensor([3, 7])
    F.cross_entropy(model(x), y).backward()
    out = placed(x.to("cuda:0"))
    assert out.device == torch.device("cuda", 0)
    torch.testing.assert_close(out.cpu(), model(x).detach(), rtol=1e-9, atol=1e-10)
    F.cross_entropy(out, y.to("cuda:0")).backward()
    grads = placed.gather_grads("cpu")
    for n, p in model.named_parameters():
        torch.testing.assert_close(grads[n], p.grad, rtol=1e-8, atol=1e-11, msg=n)
