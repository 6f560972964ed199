"""Tests for repro.layers: LRN conventions, spatial response norm, locally connected layer.

The references below are written as literal per-element loops over the published
formulas (paper §3.3, cuda-convnet's kernels, Caffe's lrn_layer.cpp), independent of
the vectorised code under test. Everything runs on CPU in float64.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch import nn

from repro.layers import LocallyConnected2d, LocalResponseNorm, SpatialResponseNorm, _neg_power

SETTINGS = settings(
    max_examples=30,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)
RTOL, ATOL = 1e-10, 1e-12
DT = torch.float64


def _rand(shape: tuple[int, ...], seed: int, amp: float = 1.0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(shape, generator=g, dtype=DT) * amp


def _close(a: torch.Tensor, b: torch.Tensor) -> None:
    torch.testing.assert_close(a, b, rtol=RTOL, atol=ATOL)


# --------------------------------------------------------------------------- references


def naive_lrn(a: torch.Tensor, convention: str, n: int, alpha: float, beta: float, k: float) -> torch.Tensor:
    """Cross-map LRN, one output at a time, window bounds written out per convention."""
    A = a.tolist()
    B, N, H, W = a.shape
    out = torch.empty_like(a)
    for b in range(B):
        for i in range(N):
            if convention == "paper":
                # sum_{j=max(0, i-n/2)}^{min(N-1, i+n/2)}, alpha not divided by n, k as given
                lo, hi, coef, kk = max(0, i - n // 2), min(N - 1, i + n // 2), alpha, k
            elif convention == "cuda-convnet":
                # startF = -sizeF/2 + f; loop [max(0,startF), min(N, startF+sizeF)); scale/size
                start = i - n // 2
                lo, hi, coef, kk = max(0, start), min(N, start + n) - 1, alpha / n, k
            elif convention == "caffe":
                # pre_pad = (size-1)/2, padded[c .. c+size-1]; alpha/size; k = 1 (proto default)
                start = i - (n - 1) // 2
                lo, hi, coef, kk = max(0, start), min(N - 1, start + n - 1), alpha / n, 1.0
            else:
                raise AssertionError(convention)
            for y in range(H):
                for x in range(W):
                    s = 0.0
                    for j in range(lo, hi + 1):
                        s += A[b][j][y][x] ** 2
                    out[b, i, y, x] = A[b][i][y][x] / (kk + coef * s) ** beta
    return out


def naive_spatial(a: torch.Tensor, size: int, scale: float, power: float) -> torch.Tensor:
    """cuda-convnet rnorm: same map, size x size window clipped at borders, scale/size^2."""
    A = a.tolist()
    B, C, H, W = a.shape
    r = size // 2
    out = torch.empty_like(a)
    for b in range(B):
        for c in range(C):
            for y in range(H):
                for x in range(W):
                    s = 0.0
                    for yy in range(max(0, y - r), min(H - 1, y + r) + 1):
                        for xx in range(max(0, x - r), min(W - 1, x + r) + 1):
                            s += A[b][c][yy][xx] ** 2
                    out[b, c, y, x] = A[b][c][y][x] / (1.0 + scale / size**2 * s) ** power
    return out


def naive_local(
    a: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, k: int, stride: int, pad: int
) -> torch.Tensor:
    """Untied layer: output (o, oy, ox) uses weight[oy*out+ox, o] and bias[o, oy, ox]."""
    B, C, H, _ = a.shape
    out_size = (H + 2 * pad - k) // stride + 1
    n_out = weight.shape[1]
    A, Wt, Bs = a.tolist(), weight.tolist(), bias.tolist()
    out = torch.empty(B, n_out, out_size, out_size, dtype=a.dtype)
    for b in range(B):
        for o in range(n_out):
            for oy in range(out_size):
                for ox in range(out_size):
                    loc = oy * out_size + ox
                    s = Bs[o][oy][ox]
                    for c in range(C):
                        for ky in range(k):
                            for kx in range(k):
                                y, x = oy * stride - pad + ky, ox * stride - pad + kx
                                if 0 <= y < H and 0 <= x < H:
                                    s += A[b][c][y][x] * Wt[loc][o][c * k * k + ky * k + kx]
                    out[b, o, oy, ox] = s
    return out


# --------------------------------------------------------------------------- LRN


@st.composite
def lrn_cases(draw: st.DrawFn, convention: str) -> dict:
    if convention == "caffe":
        n = draw(st.sampled_from([1, 3, 5, 7, 9]))
    else:
        n = draw(st.integers(1, 9))
    return {
        "n": n,
        "alpha": draw(st.floats(0.0, 2.0)),
        "beta": draw(st.sampled_from([0.0, 0.5, 0.75]) | st.floats(0.0, 1.5)),  # each power path
        "k": draw(st.floats(0.5, 3.0)),
        "shape": (
            draw(st.integers(1, 2)),
            draw(st.integers(1, 12)),
            draw(st.integers(1, 3)),
            draw(st.integers(1, 3)),
        ),
        "amp": draw(st.sampled_from([0.1, 1.0, 3.0])),
        "seed": draw(st.integers(0, 2**31 - 1)),
    }


@pytest.mark.parametrize("convention", ["paper", "cuda-convnet", "caffe"])
@SETTINGS
@given(data=st.data())
def test_lrn_matches_naive_formula(convention: str, data: st.DataObject) -> None:
    c = data.draw(lrn_cases(convention))
    x = _rand(c["shape"], c["seed"], c["amp"])
    layer = LocalResponseNorm(c["n"], c["alpha"], c["beta"], c["k"], convention=convention)
    _close(layer(x), naive_lrn(x, convention, c["n"], c["alpha"], c["beta"], c["k"]))


@pytest.mark.parametrize("convention", ["paper", "cuda-convnet", "caffe"])
@SETTINGS
@given(data=st.data())
def test_torch_equivalent_matches_naive_formula(convention: str, data: st.DataObject) -> None:
    c = data.draw(lrn_cases(convention))
    layer = LocalResponseNorm(c["n"], c["alpha"], c["beta"], c["k"], convention=convention)
    eq = layer.torch_equivalent()
    if convention == "paper" and c["n"] % 2 == 0:
        assert eq is None
        return
    assert eq is not None and set(eq) == {"size", "alpha", "beta", "k"}
    x = _rand(c["shape"], c["seed"], c["amp"])
    ref = naive_lrn(x, convention, c["n"], c["alpha"], c["beta"], c["k"])
    _close(nn.LocalResponseNorm(**eq)(x), ref)
    _close(layer(x), nn.LocalResponseNorm(**eq)(x))


@pytest.mark.parametrize("beta", [0.0, 0.5, 0.75, 0.3, 1.25])
def test_neg_power_paths_equal_pow(beta: float) -> None:
    """Each of d^-beta's shortcuts (rsqrt for 0.5 and 0.75, exp-log otherwise) is d ** -beta."""
    d = torch.rand(1000, dtype=torch.float64) * 50 + 1e-3
    torch.testing.assert_close(_neg_power(d.clone(), beta), d ** -beta, rtol=1e-14, atol=0)


def test_lrn_hand_computed_values() -> None:
    # One pixel, maps a = (1, 2, 3, 4); output for map i=1, alpha=0.1, beta=1, k=2.
    x = torch.tensor([1.0, 2.0, 3.0, 4.0], dtype=DT).reshape(1, 4, 1, 1)
    # paper, n=2: j in [0, 2] (three maps): 2 / (2 + 0.1 * 14)
    paper = LocalResponseNorm(2, 0.1, 1.0, 2.0, convention="paper")(x)
    assert paper[0, 1, 0, 0].item() == pytest.approx(2 / (2 + 0.1 * 14), rel=1e-12)
    # cuda-convnet, n=2: j in [0, 1], coefficient 0.1/2: 2 / (2 + 0.05 * 5)
    cc = LocalResponseNorm(2, 0.1, 1.0, 2.0, convention="cuda-convnet")(x)
    assert cc[0, 1, 0, 0].item() == pytest.approx(2 / (2 + 0.05 * 5), rel=1e-12)
    # caffe, n=3, k ignored: j in [0, 2], 2 / (1 + 0.1/3 * 14)
    cf = LocalResponseNorm(3, 0.1, 1.0, 2.0, convention="caffe")(x)
    assert cf[0, 1, 0, 0].item() == pytest.approx(2 / (1 + 0.1 / 3 * 14), rel=1e-12)
    # paper, n=5, at map 0: window clipped to [0, 2]
    p5 = LocalResponseNorm(5, 0.1, 1.0, 2.0, convention="paper")(x)
    assert p5[0, 0, 0, 0].item() == pytest.approx(1 / (2 + 0.1 * 14), rel=1e-12)


def test_paper_defaults_and_documented_mappings() -> None:
    paper = LocalResponseNorm()
    assert (paper.size, paper.alpha, paper.beta, paper.k) == (5, 1e-4, 0.75, 2.0)
    assert paper.convention == "paper"
    assert paper.alpha_per_term == 1e-4
    assert paper.torch_equivalent() == {"size": 5, "alpha": pytest.approx(5e-4), "beta": 0.75, "k": 2.0}

    cc2 = LocalResponseNorm(convention="cuda-convnet")  # cuda-convnet2 ImageNet: minDiv=2
    assert cc2.torch_equivalent() == {"size": 5, "alpha": 1e-4, "beta": 0.75, "k": 2.0}
    assert cc2.alpha_per_term == pytest.approx(2e-5)

    caffe = LocalResponseNorm(convention="caffe")  # bvlc_alexnet: k unset -> 1
    assert caffe.k == 1.0
    assert caffe.torch_equivalent() == {"size": 5, "alpha": 1e-4, "beta": 0.75, "k": 1.0}

    cifar11 = LocalResponseNorm(9, 1e-3, 0.75, k=1.0, convention="cuda-convnet")
    assert cifar11.torch_equivalent() == {"size": 9, "alpha": 1e-3, "beta": 0.75, "k": 1.0}

    assert LocalResponseNorm(4, convention="paper").torch_equivalent() is None
    assert LocalResponseNorm(4, convention="cuda-convnet").torch_equivalent() is not None


def test_lrn_paper_differs_from_other_conventions() -> None:
    x = _rand((1, 8, 2, 2), 0, amp=10.0)
    outs = {c: LocalResponseNorm(convention=c)(x) for c in ("paper", "cuda-convnet", "caffe")}
    assert not torch.allclose(outs["paper"], outs["cuda-convnet"])
    assert not torch.allclose(outs["cuda-convnet"], outs["caffe"])


def test_lrn_argument_errors() -> None:
    with pytest.raises(ValueError, match="paper.*cuda-convnet.*caffe"):
        LocalResponseNorm(convention="tensorflow")
    with pytest.raises(ValueError, match="odd"):
        LocalResponseNorm(4, convention="caffe")
    for bad in (0, -1, 2.0, True):
        with pytest.raises(ValueError):
            LocalResponseNorm(bad)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        LocalResponseNorm()(torch.zeros(3, 4))


def test_lrn_extra_repr_names_convention_and_effective_alpha() -> None:
    r = repr(LocalResponseNorm(convention="cuda-convnet"))
    assert "convention='cuda-convnet'" in r and "alpha_per_term=2e-05" in r
    r = repr(LocalResponseNorm(4))
    assert "convention='paper'" in r and "alpha_per_term=0.0001" in r and "window=[i-2, i+2]" in r


def test_lrn_other_ranks_and_empty() -> None:
    x3 = _rand((2, 6, 4), 1)
    for n in (4, 5):
        layer = LocalResponseNorm(n, 0.3, 0.75, 2.0)
        ref = naive_lrn(x3.unsqueeze(-1), "paper", n, 0.3, 0.75, 2.0).squeeze(-1)
        _close(layer(x3), ref)
    empty = torch.zeros(0, 6, 2, 2, dtype=DT)
    assert LocalResponseNorm(4)(empty).shape == empty.shape


LAYOUTS = {"nchw": torch.contiguous_format, "channels_last": torch.channels_last}
GRAD_CASES = [("paper", 5), ("paper", 4), ("cuda-convnet", 4), ("cuda-convnet", 5), ("caffe", 3)]


@pytest.mark.parametrize("layout", list(LAYOUTS))
@pytest.mark.parametrize("groups", [1, 2])
@pytest.mark.parametrize(("convention", "n"), GRAD_CASES)
def test_lrn_gradcheck(convention: str, n: int, groups: int, layout: str) -> None:
    """The fused closed-form backward against finite differences, float64, both layouts."""
    layer = LocalResponseNorm(n, 0.5, 0.75, 1.5, convention=convention)
    x = _rand((2, 8, 3, 3), 7).contiguous(memory_format=LAYOUTS[layout]).requires_grad_()
    assert torch.autograd.gradcheck(lambda t: layer(t, groups=groups), (x,))


def _per_group_naive(x: torch.Tensor, groups: int, convention: str, n: int, alpha: float, beta: float,
                     k: float) -> torch.Tensor:
    return torch.cat([naive_lrn(part, convention, n, alpha, beta, k) for part in x.chunk(groups, dim=1)], 1)


@pytest.mark.parametrize("convention", ["paper", "cuda-convnet", "caffe"])
@SETTINGS
@given(data=st.data())
def test_lrn_any_layout_and_groups_match_naive_formula(convention: str, data: st.DataObject) -> None:
    """channels_last in, channels_last out; groups normalize each block of maps on its own."""
    c = data.draw(lrn_cases(convention))
    groups = data.draw(st.sampled_from([g for g in (1, 2, 3) if c["shape"][1] % g == 0]))
    x = _rand(c["shape"], c["seed"], c["amp"]).contiguous(memory_format=torch.channels_last)
    layer = LocalResponseNorm(c["n"], c["alpha"], c["beta"], c["k"], convention=convention)
    out = layer(x, groups=groups)
    _close(out, _per_group_naive(x, groups, convention, c["n"], c["alpha"], c["beta"], c["k"]))
    assert out.is_contiguous(memory_format=torch.channels_last)


@pytest.mark.parametrize("layout", list(LAYOUTS))
def test_lrn_backward_matches_autograd_of_naive_formula(layout: str) -> None:
    """The closed-form gradient equals autograd through the vectorised formula, float64."""
    x = _rand((3, 10, 4, 5), 11, 3.0).contiguous(memory_format=LAYOUTS[layout]).requires_grad_()
    g = _rand((3, 10, 4, 5), 12)
    layer = LocalResponseNorm(5, 0.3, 0.75, 1.0, convention="paper")
    (ours,) = torch.autograd.grad(layer(x, groups=2), x, g)
    halves = [h / (1.0 + 0.3 * F.pad(h * h, (0, 0, 0, 0, 2, 2)).unfold(1, 5, 1).sum(-1)) ** 0.75
              for h in x.chunk(2, dim=1)]
    (ref,) = torch.autograd.grad(torch.cat(halves, 1), x, g)
    _close(ours, ref)


def _bf16_case(layout: str) -> tuple[torch.Tensor, torch.Tensor]:
    x = _rand((4, 16, 6, 6), 21, 2.0).float().abs().contiguous(memory_format=LAYOUTS[layout])
    return x, _rand((4, 16, 6, 6), 22).float()


@pytest.mark.parametrize("layout", list(LAYOUTS))
@pytest.mark.parametrize("convention", ["paper", "cuda-convnet", "caffe"])
def test_lrn_under_bf16_autocast_is_close_to_fp32(convention: str, layout: str) -> None:
    """bf16 in (as a conv under autocast gives it), bf16 out, layout kept; values and gradients
    within a loose bf16 tolerance of the fp32 computation."""
    layer = LocalResponseNorm(5, 0.5, 0.75, 2.0, convention=convention)
    x, g = _bf16_case(layout)
    xf = x.clone().requires_grad_()
    out_f = layer(xf, groups=2)
    (gf,) = torch.autograd.grad(out_f, xf, g)
    xb = x.bfloat16().requires_grad_()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out_b = layer(xb, groups=2)
    (gb,) = torch.autograd.grad(out_b, xb, g.bfloat16())
    assert out_b.dtype == gb.dtype == torch.bfloat16
    assert out_b.is_contiguous(memory_format=LAYOUTS[layout])
    torch.testing.assert_close(out_b.float(), out_f, rtol=3e-2, atol=3e-2)
    torch.testing.assert_close(gb.float(), gf, rtol=5e-2, atol=5e-2)


def test_lrn_bf16_accumulates_in_fp32() -> None:
    """Sums of squares in fp32: with bf16 inputs the only error left is rounding the output
    to bf16 (relative 2^-9; the bound checked is 2^-8), far tighter than bf16 sums could give."""
    x = _rand((2, 64, 4, 4), 31, 1.0).abs().add(1.0).bfloat16()
    layer = LocalResponseNorm(9, 1.0, 0.75, 0.01, convention="paper")  # the sum dominates k
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = layer(x)
    ref = naive_lrn(x.double(), "paper", 9, 1.0, 0.75, 0.01)
    assert ((out.double() - ref).abs() / ref).max().item() <= 2.0**-8


# --------------------------------------------------------------------------- spatial


@SETTINGS
@given(
    size=st.sampled_from([1, 3, 5]),
    scale=st.floats(0.0, 2.0),
    power=st.floats(0.0, 1.5),
    shape=st.tuples(st.integers(1, 2), st.integers(1, 3), st.integers(1, 5), st.integers(1, 5)),
    amp=st.sampled_from([0.1, 1.0, 3.0]),
    seed=st.integers(0, 2**31 - 1),
)
def test_spatial_matches_naive(size: int, scale: float, power: float, shape: tuple, amp: float, seed: int) -> None:
    x = _rand(shape, seed, amp)
    _close(SpatialResponseNorm(size, scale, power)(x), naive_spatial(x, size, scale, power))


def test_spatial_rejects_even_and_defaults() -> None:
    for bad in (2, 4, 0):
        with pytest.raises(ValueError, match="odd"):
            SpatialResponseNorm(bad)
    s = SpatialResponseNorm()
    assert (s.size, s.scale, s.power) == (3, 5e-5, 0.75)  # 18pct rnorm1/rnorm2
    assert "scale_per_term" in repr(s)


@pytest.mark.parametrize("size", [3, 5])
def test_spatial_gradcheck(size: int) -> None:
    layer = SpatialResponseNorm(size, 0.7, 0.75)
    x = _rand((1, 1, 4, 4), 3).requires_grad_()
    assert torch.autograd.gradcheck(layer, (x,))


# --------------------------------------------------------------------------- local


@st.composite
def local_cases(draw: st.DrawFn) -> dict:
    k = draw(st.integers(1, 3))
    pad = draw(st.integers(0, 1))
    in_size = draw(st.integers(max(1, k - 2 * pad), 5))
    return {
        "in_c": draw(st.integers(1, 3)),
        "out_c": draw(st.integers(1, 3)),
        "in_size": in_size,
        "k": k,
        "stride": draw(st.integers(1, 2)),
        "pad": pad,
        "batch": draw(st.integers(1, 2)),
        "seed": draw(st.integers(0, 2**31 - 1)),
    }


def _make_local(c: dict) -> LocallyConnected2d:
    layer = LocallyConnected2d(c["in_c"], c["out_c"], c["in_size"], c["k"], c["stride"], c["pad"]).double()
    with torch.no_grad():
        layer.weight.copy_(_rand(tuple(layer.weight.shape), c["seed"] + 1))
        layer.bias.copy_(_rand(tuple(layer.bias.shape), c["seed"] + 2))
    return layer


@SETTINGS
@given(c=local_cases())
def test_local_matches_naive(c: dict) -> None:
    layer = _make_local(c)
    out_size = (c["in_size"] + 2 * c["pad"] - c["k"]) // c["stride"] + 1
    assert layer.out_size == out_size
    assert layer.weight.shape == (out_size**2, c["out_c"], c["in_c"] * c["k"] ** 2)
    assert layer.bias.shape == (c["out_c"], out_size, out_size)
    x = _rand((c["batch"], c["in_c"], c["in_size"], c["in_size"]), c["seed"])
    ref = naive_local(x, layer.weight.detach(), layer.bias.detach(), c["k"], c["stride"], c["pad"])
    _close(layer(x), ref)


@SETTINGS
@given(c=local_cases())
def test_local_with_tied_weights_is_conv2d(c: dict) -> None:
    layer = LocallyConnected2d(c["in_c"], c["out_c"], c["in_size"], c["k"], c["stride"], c["pad"]).double()
    w = _rand((c["out_c"], c["in_c"], c["k"], c["k"]), c["seed"])
    b = _rand((c["out_c"],), c["seed"] + 1)
    with torch.no_grad():
        layer.weight.copy_(w.reshape(1, c["out_c"], -1).expand_as(layer.weight))
        layer.bias.copy_(b[:, None, None].expand_as(layer.bias))
    x = _rand((c["batch"], c["in_c"], c["in_size"], c["in_size"]), c["seed"] + 2)
    _close(layer(x), F.conv2d(x, w, b, stride=c["stride"], padding=c["pad"]))


def test_local_weights_and_biases_are_untied() -> None:
    layer = _make_local({"in_c": 2, "out_c": 3, "in_size": 4, "k": 3, "stride": 1, "pad": 1, "seed": 5})
    x = _rand((2, 2, 4, 4), 9)
    base = layer(x).detach()
    loc, oy, ox = 6, 1, 2  # out_size 4: location 6 is row 1, column 2
    mask = torch.zeros(4, 4, dtype=torch.bool)
    mask[oy, ox] = True
    with torch.no_grad():
        layer.weight[loc] += 1.0
    changed = layer(x).detach()
    assert torch.equal(changed[..., ~mask], base[..., ~mask])
    assert (changed[..., mask] != base[..., mask]).all()
    with torch.no_grad():
        layer.weight[loc] -= 1.0
        layer.bias[1, oy, ox] += 1.0
    moved = layer(x).detach()
    diff = moved - base
    assert torch.allclose(diff[:, 1, oy, ox], torch.ones(2, dtype=DT))
    diff[:, 1, oy, ox] = 0.0
    assert torch.equal(diff, torch.zeros_like(diff))


@pytest.mark.parametrize(
    ("in_c", "out_c", "in_size", "k", "pad", "expected"),
    [
        (64, 64, 6, 3, 1, 1_329_408),  # 11pct local3
        (64, 32, 6, 3, 1, 664_704),  # 11pct local4
        (2, 3, 5, 2, 0, 16 * 3 * 8 + 3 * 16),
    ],
)
def test_local_parameter_count(in_c: int, out_c: int, in_size: int, k: int, pad: int, expected: int) -> None:
    layer = LocallyConnected2d(in_c, out_c, in_size, k, 1, pad)
    o = layer.out_size
    assert expected == o * o * out_c * in_c * k * k + out_c * o * o
    assert sum(p.numel() for p in layer.parameters()) == expected


def test_local_default_init_and_errors() -> None:
    layer = LocallyConnected2d(8, 16, 6, 3, 1, 1)
    assert layer.out_size == 6
    assert torch.count_nonzero(layer.bias) == 0
    assert 0.005 < layer.weight.std().item() < 0.015
    assert "out_size=6" in repr(layer)
    with pytest.raises(ValueError):
        layer(torch.zeros(1, 8, 5, 5))
    with pytest.raises(ValueError):
        layer(torch.zeros(1, 7, 6, 6))
    with pytest.raises(ValueError):
        LocallyConnected2d(1, 1, 2, 5)


def test_local_gradcheck() -> None:
    c = {"in_c": 2, "out_c": 2, "in_size": 3, "k": 2, "stride": 2, "pad": 1, "seed": 11}
    layer = _make_local(c)
    x = _rand((1, 2, 3, 3), 12).requires_grad_()
    w = layer.weight.detach().clone().requires_grad_()
    b = layer.bias.detach().clone().requires_grad_()

    def f(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return torch.func.functional_call(layer, {"weight": w, "bias": b}, (x,))

    assert torch.autograd.gradcheck(f, (x, w, b))
