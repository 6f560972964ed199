"""Tests for repro.bench that time nothing: the plain-torch reference is the repro net, and the
timed steps are interleaved. (Throughput targets live in `repro bench` only.)"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from repro import bench
from repro.models import build, make_config


def _weighted(net: nn.Module) -> list[nn.Module]:
    return [m for m in net.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]


@pytest.mark.parametrize("name", bench.MODELS)
def test_reference_net_is_the_repro_net(name, one_thread):
    """Same parameter shapes in the same order, and with the repro net's weights copied in, the
    same function (float64, dropout off): the reference differs only in how it is written."""
    cfg = make_config(name)
    ours, ref = build(cfg.model).double().eval(), bench.reference_net(name).double().eval()
    assert sum(p.numel() for p in ref.parameters()) == sum(p.numel() for p in ours.parameters())
    pairs = list(zip(_weighted(ours), _weighted(ref), strict=True))
    with torch.no_grad():
        for a, b in pairs:
            assert a.weight.shape == b.weight.shape and getattr(a, "groups", 1) == getattr(b, "groups", 1)
            b.weight.copy_(a.weight)
            b.bias.copy_(a.bias)
        s = cfg.model.input_size
        x = torch.randn(3, 3, s, s, dtype=torch.float64, generator=torch.Generator().manual_seed(0)) * 60
        out, expected = ref(x), ours(x)
    assert out.shape == expected.shape == (3, 10)
    torch.testing.assert_close(out, expected, rtol=1e-9, atol=1e-9)


def test_reference_net_unknown_name():
    with pytest.raises(ValueError, match="cifar-80sec"):
        bench.reference_net("alexnet")


def test_interleaved_runs_the_steps_in_turn():
    calls: list[str] = []

    def step(name: str):
        def f() -> int:
            calls.append(name)
            return 4
        return f

    rates = bench.interleaved({"a": step("a"), "b": step("b")}, torch.device("cpu"), seconds=0.0, warmup=1)
    assert calls[:2] == ["a", "b"]  # warm-up
    timed = calls[2:]
    assert timed == ["a", "b"] * (len(timed) // 2) and len(timed) >= 6
    assert rates["a"]["rounds"] == rates["b"]["rounds"] == len(timed) // 2
    assert rates["a"]["img_s"] > 0 and rates["b"]["img_s"] > 0


@pytest.mark.slow
def test_imagenet_step_times_alexnet_at_its_own_shape_under_each_numeric_setting(one_thread):
    """`repro bench --imagenet B`: the paper's net at its 224x224, 1000 classes, every setting of
    bench.NUMERICS timed in turn, with its ratio to fp32 NCHW (CPU, batch 2: shape only)."""
    out = bench.imagenet_step(torch.device("cpu"), seconds=0.0, batch=2)["alexnet"]
    assert out["batch"] == 2 and out["input"] == [3, 224, 224] and out["rounds"] >= 3
    names = {bench._numerics_name(p, cl) for p, cl in bench.NUMERICS}
    assert set(out["img_s_by_numerics"]) == set(out["over_fp32_nchw"]) == names
    assert all(v > 0 for v in out["img_s_by_numerics"].values()) and out["over_fp32_nchw"]["fp32-nchw"] == 1.0


def test_a_model_step_trains_the_model(one_thread):
    """The timed step is a real training step: the loss falls on a repeated batch."""
    cfg = make_config("cifar-80sec", {"optim.lr": 0.01})  # 32x32 inputs
    torch.manual_seed(0)
    x, y = torch.randn(8, 3, 32, 32), torch.randint(0, 10, (8,))
    model = build(cfg.model).train()
    step = bench._sgd_step(model, cfg, torch.device("cpu"), lambda: (x, y))
    before = torch.nn.functional.cross_entropy(model(x), y).item()
    for _ in range(20):
        assert step() == 8
    assert torch.nn.functional.cross_entropy(model(x), y).item() < before


@pytest.mark.parametrize("name, has_lrn", [("alexnet-cifar", True), ("cifar-80sec", False)])
def test_profile_splits_a_harness_step_into_its_parts(name, has_lrn, one_thread, tmp_path):
    """`repro bench --profile`: every top-level event of the step lands in one part, so the shares
    sum to one; the convolutions, the loader and the optimizer are found by name, and the LRN
    only in the net that has one (synthetic data: `tmp_path` holds no CIFAR-10)."""
    out = bench.profile_step(name, "fp32", torch.device("cpu"), steps=1, data_dir=str(tmp_path))
    shares = out["shares"]
    assert set(shares) == {p for p, _ in bench.PROFILE_PARTS} | {"other"}
    assert sum(shares.values()) == pytest.approx(1.0)
    assert shares["conv"] > 0 and shares["loader"] > 0 and shares["optimizer"] > 0
    assert (shares["LRN"] > 0) == has_lrn
    assert out["ms_per_step"] > 0 and out["data"] == "synthetic" and out["precision"] == "fp32"


def test_profile_parts_are_matched_by_name():
    assert [bench._part(n) for n in ("aten::conv2d", "autograd::engine::evaluate_function: ConvolutionBackward0",
                                     "_FusedCrossMapNorm", "loader", "Optimizer.step#PaperSGD.step",
                                     "aten::_to_copy", "aten::relu_")] == \
        ["conv", "conv", "LRN", "loader", "optimizer", "casts", "other"]
