"""Tests for repro.models: shapes, parameter counts, column structure, init, optimizer groups.

Every expected number here is literal data taken from the paper (§3.2-§3.5, §5, Figure 2)
or from the reference facts (/work/shared/reference/alexnet-facts.md §3, §5, §8), with the
arithmetic written out in comments. None of it is computed by calling the model code.

Cost: the full AlexNet (61M parameters) is built for real only a few times per session
(module-scoped fixtures); the switch-combination shape checks run on the `meta` device,
which computes shapes without allocating or computing anything.
"""

from __future__ import annotations

import functools
import itertools
import math

import pytest
import torch
import torch.nn.functional as F
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch import nn

from repro.config import ModelConfig
from repro.errors import ConfigError
from repro.layers import LocallyConnected2d, LocalResponseNorm, SpatialResponseNorm
from repro.models import ENTRIES, build, make_config, names
from repro.models.common import ColumnwiseLRN, Conv2dCeil

pytestmark = pytest.mark.usefixtures("one_thread_module")

SETTINGS = settings(max_examples=15, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
FEW = settings(max_examples=4, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])

CIFAR_NETS = ("cifar-80sec", "cifar-18pct", "cifar-19pct", "cifar-11pct", "cifar-13pct")
ALEXNETS = ("alexnet", "alexnet-cifar")
ALL_NETS = ALEXNETS + CIFAR_NETS


def mcfg(name: str, **switches) -> ModelConfig:
    """The model config `repro` would use: registry defaults, then the switches."""
    return make_config(name, switches).model


@functools.cache
def _meta_model(name: str, items: tuple) -> nn.Module:
    with torch.device("meta"):
        return build(mcfg(name, **dict(items))).eval()


def meta_model(name: str, **switches) -> nn.Module:
    return _meta_model(name, tuple(sorted(switches.items())))


def trace_shapes(model: nn.Module, x: torch.Tensor) -> list[tuple[str, tuple[int, ...]]]:
    """(layer name, per-sample output shape) for every named layer, in execution order."""
    seen: list[tuple[str, tuple[int, ...]]] = []
    hooks = [m.register_forward_hook(lambda m, i, o, n=n: seen.append((n, tuple(o.shape))))
             for n, m in model.named_children()]
    try:
        with torch.no_grad():
            model(x)
    finally:
        for h in hooks:
            h.remove()
    b = x.shape[0]
    assert all(s[0] == b for _, s in seen), seen
    return [(n, s[1:]) for n, s in seen]


@pytest.fixture(scope="module")
def alexnet() -> nn.Module:
    """The paper's net, built once for real: 224x224, two columns, 1000 classes, 'paper' init."""
    torch.manual_seed(1)
    return build(mcfg("alexnet"))


@pytest.fixture(scope="module")
def alexnet_cifar() -> nn.Module:
    torch.manual_seed(2)
    return build(mcfg("alexnet-cifar"))


# =========================================================================== shapes
# Literal tables. "K" stands for num_classes. Norm rows are dropped when norm="none".
K = "K"

# paper §3.5 / Figure 2, facts §3: 224 (or 227) -> 55 -> 27 -> 27 -> 13 -> 13 -> 13 -> 13 -> 6.
# Non-overlapping (2/2) pooling gives the same sizes: 55 -> 27 -> 13 -> 6 (floor).
ALEXNET_2COL = [
    ("conv1", (96, 55, 55)), ("relu1", (96, 55, 55)), ("norm1", (96, 55, 55)), ("pool1", (96, 27, 27)),
    ("conv2", (256, 27, 27)), ("relu2", (256, 27, 27)), ("norm2", (256, 27, 27)), ("pool2", (256, 13, 13)),
    ("conv3", (384, 13, 13)), ("relu3", (384, 13, 13)),
    ("conv4", (384, 13, 13)), ("relu4", (384, 13, 13)),
    ("conv5", (256, 13, 13)), ("relu5", (256, 13, 13)), ("pool5", (256, 6, 6)),
    ("flatten", (9216,)),  # 256 * 6 * 6
    ("fc6", (4096,)), ("relu6", (4096,)), ("drop6", (4096,)),
    ("fc7", (4096,)), ("relu7", (4096,)), ("drop7", (4096,)),
    ("fc8", (K,)),
]
# Footnote 2's one-GPU net: 48, 128, 192, 192 kernels in conv1-conv4, conv5 keeps 256.
ALEXNET_1COL = [
    ("conv1", (48, 55, 55)), ("relu1", (48, 55, 55)), ("norm1", (48, 55, 55)), ("pool1", (48, 27, 27)),
    ("conv2", (128, 27, 27)), ("relu2", (128, 27, 27)), ("norm2", (128, 27, 27)), ("pool2", (128, 13, 13)),
    ("conv3", (192, 13, 13)), ("relu3", (192, 13, 13)),
    ("conv4", (192, 13, 13)), ("relu4", (192, 13, 13)),
    ("conv5", (256, 13, 13)), ("relu5", (256, 13, 13)), ("pool5", (256, 6, 6)),
    ("flatten", (9216,)),
    ("fc6", (4096,)), ("relu6", (4096,)), ("drop6", (4096,)),
    ("fc7", (4096,)), ("relu7", (4096,)), ("drop7", (4096,)),
    ("fc8", (K,)),
]
# alexnet-cifar (CIFAR_WIDTHS 24-64-96-96-64, FC 512): 24 -> 24 -> 12 -> 12 -> 6 -> 6 -> 6 -> 6 -> 3.
ALEXNET_CIFAR_2COL = [
    ("conv1", (24, 24, 24)), ("relu1", (24, 24, 24)), ("norm1", (24, 24, 24)), ("pool1", (24, 12, 12)),
    ("conv2", (64, 12, 12)), ("relu2", (64, 12, 12)), ("norm2", (64, 12, 12)), ("pool2", (64, 6, 6)),
    ("conv3", (96, 6, 6)), ("relu3", (96, 6, 6)),
    ("conv4", (96, 6, 6)), ("relu4", (96, 6, 6)),
    ("conv5", (64, 6, 6)), ("relu5", (64, 6, 6)), ("pool5", (64, 3, 3)),
    ("flatten", (576,)),  # 64 * 3 * 3
    ("fc6", (512,)), ("relu6", (512,)), ("drop6", (512,)),
    ("fc7", (512,)), ("relu7", (512,)), ("drop7", (512,)),
    ("fc8", (K,)),
]
ALEXNET_CIFAR_1COL = [
    ("conv1", (12, 24, 24)), ("relu1", (12, 24, 24)), ("norm1", (12, 24, 24)), ("pool1", (12, 12, 12)),
    ("conv2", (32, 12, 12)), ("relu2", (32, 12, 12)), ("norm2", (32, 12, 12)), ("pool2", (32, 6, 6)),
    ("conv3", (48, 6, 6)), ("relu3", (48, 6, 6)),
    ("conv4", (48, 6, 6)), ("relu4", (48, 6, 6)),
    ("conv5", (64, 6, 6)), ("relu5", (64, 6, 6)), ("pool5", (64, 3, 3)),
    ("flatten", (576,)),
    ("fc6", (512,)), ("relu6", (512,)), ("drop6", (512,)),
    ("fc7", (512,)), ("relu7", (512,)), ("drop7", (512,)),
    ("fc8", (K,)),
]
# facts §5a: conv32-maxpool(relu)-conv32-avgpool-conv64-avgpool-fc64-fc10, 32 -> 16 -> 8 -> 4 (ceil).
CIFAR_80SEC = [
    ("conv1", (32, 32, 32)), ("pool1", (32, 16, 16)), ("relu1", (32, 16, 16)),
    ("conv2", (32, 16, 16)), ("relu2", (32, 16, 16)), ("pool2", (32, 8, 8)),
    ("conv3", (64, 8, 8)), ("relu3", (64, 8, 8)), ("pool3", (64, 4, 4)),
    ("flatten", (1024,)), ("fc64", (64,)), ("relu64", (64,)), ("fc10", (K,)),
]
# facts §5b: as 80sec without fc64, with a same-map rnorm after pool1 and after pool2.
CIFAR_18PCT = [
    ("conv1", (32, 32, 32)), ("pool1", (32, 16, 16)), ("relu1", (32, 16, 16)), ("norm1", (32, 16, 16)),
    ("conv2", (32, 16, 16)), ("relu2", (32, 16, 16)), ("pool2", (32, 8, 8)), ("norm2", (32, 8, 8)),
    ("conv3", (64, 8, 8)), ("relu3", (64, 8, 8)), ("pool3", (64, 4, 4)),
    ("flatten", (1024,)), ("fc10", (K,)),
]
CIFAR_19PCT = [row for row in CIFAR_18PCT if not row[0].startswith("norm")]
# facts §5c: 24 -> 12 -> 6 (ceil); rnorm1 after pool1, rnorm2 before pool2.
CIFAR_11PCT = [
    ("conv1", (64, 24, 24)), ("relu1", (64, 24, 24)), ("pool1", (64, 12, 12)), ("norm1", (64, 12, 12)),
    ("conv2", (64, 12, 12)), ("relu2", (64, 12, 12)), ("norm2", (64, 12, 12)), ("pool2", (64, 6, 6)),
    ("local3", (64, 6, 6)), ("relu3", (64, 6, 6)),
    ("local4", (32, 6, 6)), ("relu4", (32, 6, 6)),
    ("flatten", (1152,)), ("fc10", (K,)),  # 32 * 6 * 6
]
# facts §5d: 11pct without rnorm, local3 has 32 filters.
CIFAR_13PCT = [
    ("conv1", (64, 24, 24)), ("relu1", (64, 24, 24)), ("pool1", (64, 12, 12)),
    ("conv2", (64, 12, 12)), ("relu2", (64, 12, 12)), ("pool2", (64, 6, 6)),
    ("local3", (32, 6, 6)), ("relu3", (32, 6, 6)),
    ("local4", (32, 6, 6)), ("relu4", (32, 6, 6)),
    ("flatten", (1152,)), ("fc10", (K,)),
]
TABLES = {
    ("alexnet", 2): ALEXNET_2COL, ("alexnet", 1): ALEXNET_1COL,
    ("alexnet-cifar", 2): ALEXNET_CIFAR_2COL, ("alexnet-cifar", 1): ALEXNET_CIFAR_1COL,
    ("cifar-80sec", 1): CIFAR_80SEC, ("cifar-18pct", 1): CIFAR_18PCT, ("cifar-19pct", 1): CIFAR_19PCT,
    ("cifar-11pct", 1): CIFAR_11PCT, ("cifar-13pct", 1): CIFAR_13PCT,
}
INPUT = {"alexnet": (224, 227), "alexnet-cifar": (24,), "cifar-80sec": (32,), "cifar-18pct": (32,),
         "cifar-19pct": (32,), "cifar-11pct": (24,), "cifar-13pct": (24,)}
CLASSES = {"alexnet": 1000}  # every other net: 10


def expected_table(name: str, columns: int, norm: str, classes: int) -> list[tuple[str, tuple]]:
    rows = TABLES[(name, columns)]
    if norm == "none":
        rows = [r for r in rows if not r[0].startswith("norm")]
    return [(n, tuple(classes if d == K else d for d in s)) for n, s in rows]


def _combos():
    for name in ALL_NETS:
        cols = (2, 1) if name in ALEXNETS else (1,)
        for act, norm, pool, c, size in itertools.product(
                ("relu", "tanh"), ("lrn", "none", "batchnorm"), ("overlapping", "non-overlapping"), cols, INPUT[name]):
            yield pytest.param(name, act, norm, pool, c, size, id=f"{name}-{act}-{norm}-{pool}-c{c}-{size}")


@pytest.mark.parametrize("name,act,norm,pool,columns,size", list(_combos()))
@FEW
@given(batch=st.integers(1, 64))
def test_layer_shapes_every_switch_combination(name, act, norm, pool, columns, size, batch):
    switches = {"activation": act, "norm": norm, "pooling": pool}
    if name in ALEXNETS:
        switches |= {"columns": columns, "input_size": size}
    model = meta_model(name, **switches)
    got = trace_shapes(model, torch.empty(batch, 3, size, size, device="meta"))
    assert got == expected_table(name, columns, norm, CLASSES.get(name, 10))


@pytest.mark.parametrize("name", CIFAR_NETS + ("alexnet-cifar",))
@FEW
@given(batch=st.integers(1, 3))
def test_layer_shapes_on_cpu(name, batch):
    """The same tables with real tensors (the meta-device test above covers the switches)."""
    model = build(mcfg(name)).eval()
    size = INPUT[name][0]
    got = trace_shapes(model, torch.randn(batch, 3, size, size))
    assert got == expected_table(name, 2 if name == "alexnet-cifar" else 1, "lrn", 10)


def test_alexnet_layer_shapes_on_cpu(alexnet):
    alexnet.eval()
    try:
        got = trace_shapes(alexnet, torch.randn(1, 3, 224, 224))
    finally:
        alexnet.train()
    assert got == expected_table("alexnet", 2, "lrn", 1000)


@SETTINGS
@given(classes=st.integers(1, 5000), name=st.sampled_from(ALL_NETS))
def test_num_classes_sets_the_last_layer(classes, name):
    model = meta_model(name, num_classes=classes)
    size = INPUT[name][0]
    assert model(torch.empty(2, 3, size, size, device="meta")).shape == (2, classes)


# =========================================================================== parameter counts

# facts §3 [calc]: conv1 96*(11*11*3)+96 = 34,944; conv2 256*(5*5*48)+256 = 307,456;
# conv3 384*(3*3*256)+384 = 885,120; conv4 384*(3*3*192)+384 = 663,936;
# conv5 256*(3*3*192)+256 = 442,624; fc6 9216*4096+4096 = 37,752,832;
# fc7 4096*4096+4096 = 16,781,312; fc8 4096*1000+1000 = 4,097,000. Total 60,965,224.
ALEXNET_LAYER_PARAMS = {"conv1": 34_944, "conv2": 307_456, "conv3": 885_120, "conv4": 663_936,
                        "conv5": 442_624, "fc6": 37_752_832, "fc7": 16_781_312, "fc8": 4_097_000}
PARAM_COUNTS = {
    "alexnet": 60_965_224,
    # conv1 1824 (24*75+24) + conv2 19,264 (64*12*25+64) + conv3 55,392 (96*64*9+96)
    # + conv4 41,568 (96*48*9+96) + conv5 27,712 (64*48*9+64) + fc6 295,424 (576*512+512)
    # + fc7 262,656 (512*512+512) + fc8 5130 (512*10+10) = 708,970
    "alexnet-cifar": 708_970,
    # facts §5a: conv1 2432 + conv2 25,632 + conv3 51,264 + fc64 65,600 (1024*64+64) + fc10 650
    "cifar-80sec": 145_578,
    # facts §5b: conv1-3 79,328 + fc10 10,250 (1024*10+10)
    "cifar-18pct": 89_578,
    # 18pct without rnorm (no parameters): the same 89,578
    "cifar-19pct": 89_578,
    # conv1 4864 + conv2 102,464 + local3 1,329,408 (36*64*576 + 64*36) + local4 664,704
    # (36*32*576 + 32*36) + fc10 11,530 (1152*10+10)
    "cifar-11pct": 2_112_970,
    # conv1 4864 + conv2 102,464 + local3 664,704 (36*32*576 + 32*36)
    # + local4 332,928 (36*32*288 + 32*36) + fc10 11,530 = 1,116,490
    "cifar-13pct": 1_116_490,
}


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def test_alexnet_param_count(alexnet):
    assert n_params(alexnet) == 60_965_224
    assert {n: n_params(getattr(alexnet, n)) for n in ALEXNET_LAYER_PARAMS} == ALEXNET_LAYER_PARAMS


def test_one_column_alexnet_param_count():
    # facts §2 [calc]: 48-128-192-192-256, FC unchanged:
    # conv 17,472 + 153,728 + 221,376 + 331,968 + 442,624; FC 58,631,144 -> 59,798,312
    assert n_params(meta_model("alexnet", columns=1)) == 59_798_312


@pytest.mark.parametrize("name", [n for n in PARAM_COUNTS if n != "alexnet"])
def test_param_counts(name):
    assert n_params(build(mcfg(name))) == PARAM_COUNTS[name]


def test_param_counts_ignore_pooling_and_activation_and_227():
    for sw in ({"pooling": "non-overlapping"}, {"activation": "tanh"}, {"input_size": 227}, {"norm": "none"}):
        assert n_params(meta_model("alexnet", **sw)) == 60_965_224, sw


def test_every_model_is_covered():
    assert set(names()) == set(ALL_NETS) == set(PARAM_COUNTS)


# =========================================================================== columns (paper §3.2)
# (layer, input column size, output column size) in the two-column AlexNet:
# conv2 96 -> 256 (48 | 48 -> 128 | 128), conv4 384 -> 384, conv5 384 -> 256.
PER_COLUMN = {"alexnet": [("conv2", 48, 128), ("conv4", 192, 192), ("conv5", 192, 128)],
              "alexnet-cifar": [("conv2", 12, 32), ("conv4", 48, 48), ("conv5", 48, 32)]}
# Layers that read both columns: conv3 256 -> 384, fc6, fc7, fc8.
MIXING = {"alexnet": [("conv3", 128, 192), ("fc7", 2048, 2048)],
          "alexnet-cifar": [("conv3", 32, 48), ("fc7", 256, 256)]}


def _rand(shape, seed, scale=1.0):
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed)) * scale


def _perturb_col2(x: torch.Tensor, half: int, seed: int) -> torch.Tensor:
    y = x.clone()
    y[:, half:] += _rand(y[:, half:].shape, seed + 1, 3.0)
    return y


@pytest.mark.parametrize("name", ALEXNETS)
@SETTINGS
@given(seed=st.integers(0, 2**31 - 1), hw=st.integers(1, 7), batch=st.integers(1, 2))
def test_grouped_layers_keep_columns_apart(name, seed, hw, batch, request):
    model = request.getfixturevalue("alexnet" if name == "alexnet" else "alexnet_cifar")
    with torch.no_grad():
        for layer, cin, cout in PER_COLUMN[name]:
            conv = getattr(model, layer)
            x = _rand((batch, 2 * cin, hw, hw), seed)
            a, b = conv(x), conv(_perturb_col2(x, cin, seed))
            # column 1's outputs do not see column 2's inputs ...
            torch.testing.assert_close(a[:, :cout], b[:, :cout], rtol=1e-5, atol=1e-6)
            # ... but column 2's do (so the check above is not vacuous)
            assert (a[:, cout:] - b[:, cout:]).abs().max() > 1e-3, layer
            # and column 1's outputs do see column 1's inputs
            x1 = x.clone()
            x1[:, :cin] += _rand(x1[:, :cin].shape, seed + 2, 3.0)
            assert (conv(x1)[:, :cout] - a[:, :cout]).abs().max() > 1e-3, layer


@pytest.mark.parametrize("name", ALEXNETS)
@SETTINGS
@given(seed=st.integers(0, 2**31 - 1), batch=st.integers(1, 2))
def test_conv3_and_fc_layers_mix_columns(name, seed, batch, request):
    model = request.getfixturevalue("alexnet" if name == "alexnet" else "alexnet_cifar")
    with torch.no_grad():
        for layer, cin, cout in MIXING[name]:
            mod = getattr(model, layer)
            shape = (batch, 2 * cin, 5, 5) if layer.startswith("conv") else (batch, 2 * cin)
            x = _rand(shape, seed)
            a, b = mod(x), mod(_perturb_col2(x, cin, seed))
            assert (a[:, :cout] - b[:, :cout]).abs().max() > 1e-3, layer
        # fc6 reads conv5's pooled maps of both columns: column 2 is maps 128..255
        # (alexnet: 256x6x6 flattened -> features 4608..9215; alexnet-cifar: 64x3x3 -> 288..575)
        half_in = 4608 if name == "alexnet" else 288
        x = _rand((batch, 2 * half_in), seed)
        a, b = model.fc6(x), model.fc6(_perturb_col2(x, half_in, seed))
        assert (a[:, : model.fc6.out_features // 2] - b[:, : model.fc6.out_features // 2]).abs().max() > 1e-3
        # fc8 (the softmax layer) reads both fc7 halves
        x = _rand((batch, model.fc8.in_features), seed)
        a, b = model.fc8(x), model.fc8(_perturb_col2(x, model.fc8.in_features // 2, seed))
        assert (a - b).abs().max() > 1e-3


@pytest.mark.parametrize("name,c1,c2", [("alexnet", 96, 256), ("alexnet-cifar", 24, 64)])
@SETTINGS
@given(seed=st.integers(0, 2**31 - 1), hw=st.integers(1, 4))
def test_columnwise_lrn_does_not_leak_across_columns(name, c1, c2, seed, hw, request):
    model = request.getfixturevalue("alexnet" if name == "alexnet" else "alexnet_cifar")
    for layer, c in (("norm1", c1), ("norm2", c2)):
        norm = getattr(model, layer)
        assert isinstance(norm, ColumnwiseLRN) and norm.columns == 2
        half = c // 2
        # ReLU outputs are >= 0; large values so the LRN term is far from negligible
        x = _rand((2, c, hw, hw), seed, 30.0).abs()
        out = norm(x)
        # columns normalized separately == LRN applied to each half on its own
        torch.testing.assert_close(out, torch.cat([norm.lrn(x[:, :half]), norm.lrn(x[:, half:])], 1))
        y = x.clone()
        y[:, half:] = y[:, half:] * 5 + 50
        out_y = norm(y)
        torch.testing.assert_close(out_y[:, :half], out[:, :half], rtol=0, atol=0)
        # sanity: the same perturbation inside column 1 does reach its neighbour maps
        z = x.clone()
        z[:, half - 1] = z[:, half - 1] * 5 + 50
        assert (norm(z)[:, half - 3:half - 1] - out[:, half - 3:half - 1]).abs().max() > 1e-4
        # and the perturbed column-2 maps nearest the boundary did change
        assert (out_y[:, half:half + 2] - out[:, half:half + 2]).abs().max() > 1e-4


def test_one_column_net_is_not_grouped():
    model = meta_model("alexnet", columns=1)
    assert all(getattr(model, n).groups == 1 for n in ("conv1", "conv2", "conv3", "conv4", "conv5"))
    assert model.norm1.columns == 1 and model.columns == 1
    two = meta_model("alexnet")
    assert [getattr(two, n).groups for n in ("conv1", "conv2", "conv3", "conv4", "conv5")] == [1, 2, 1, 2, 2]
    # conv2 kernels are 5x5x48, conv4/conv5 3x3x192, conv3 3x3x256 (paper §3.5)
    assert two.conv2.weight.shape == (256, 48, 5, 5)
    assert two.conv3.weight.shape == (384, 256, 3, 3)
    assert two.conv4.weight.shape == (384, 192, 3, 3)
    assert two.conv5.weight.shape == (256, 192, 3, 3)
    assert two.conv1.weight.shape == (96, 3, 11, 11) and two.conv1.stride == (4, 4) and two.conv1.padding == (0, 0)


# =========================================================================== gradients


def _check_grads(model: nn.Module, size: int, classes: int, batch: int = 2) -> None:
    model.train()
    model.zero_grad(set_to_none=True)
    x = _rand((batch, 3, size, size), 7)
    out = model(x)
    assert torch.isfinite(out).all()
    loss = F.cross_entropy(out, torch.arange(batch) % classes)
    loss.backward()
    for n, p in model.named_parameters():
        assert p.grad is not None, n
        assert torch.isfinite(p.grad).all(), n
        assert p.grad.abs().sum() > 0, n


@pytest.mark.parametrize("name", CIFAR_NETS + ("alexnet-cifar",))
@pytest.mark.parametrize("act", ["relu", "tanh"])
@pytest.mark.parametrize("norm", ["lrn", "none", "batchnorm"])
def test_every_parameter_gets_a_finite_gradient(name, act, norm):
    torch.manual_seed(0)
    _check_grads(build(mcfg(name, activation=act, norm=norm)), INPUT[name][0], 10)


@pytest.mark.parametrize("act,norm", [("relu", "none"), ("relu", "batchnorm"), ("tanh", "lrn"),
                                      ("tanh", "none"), ("tanh", "batchnorm")])
def test_alexnet_gradients_every_switch_small_input(act, norm):
    # 67x67 input keeps the topology (55 -> 15, 27 -> 7, 13 -> 3, 6 -> 1) at a fraction of the cost
    torch.manual_seed(0)
    model = build(mcfg("alexnet", activation=act, norm=norm, input_size=67, num_classes=10))
    _check_grads(model, 67, 10)


def test_alexnet_gradients_full_size(alexnet):
    try:
        _check_grads(alexnet, 224, 1000, batch=1)
    finally:
        alexnet.zero_grad(set_to_none=True)


# =========================================================================== init (paper §5)


def _assert_gaussian(w: torch.Tensor, std: float, where: str) -> None:
    n = w.numel()
    s, m = torch.std_mean(w.detach().float())
    # 5 standard errors: SE(sample std) ~ std / sqrt(2n); SE(mean) = std / sqrt(n)
    assert abs(s.item() - std) <= 5 * std / math.sqrt(2 * n), (where, s.item(), std)
    assert abs(m.item()) <= 5 * std / math.sqrt(n), (where, m.item())


def _assert_bias(b: torch.Tensor, value: float, where: str) -> None:
    assert torch.equal(b.detach(), torch.full_like(b, value)), (where, b.flatten()[:3], value)


ALEXNET_LAYERS = ("conv1", "conv2", "conv3", "conv4", "conv5", "fc6", "fc7", "fc8")
# paper §5: N(0, 0.01) everywhere; bias 1 in conv2, conv4, conv5, fc6, fc7; 0 in conv1, conv3, fc8
PAPER_BIAS = {"conv1": 0, "conv2": 1, "conv3": 0, "conv4": 1, "conv5": 1, "fc6": 1, "fc7": 1, "fc8": 0}
# Caffe bvlc_alexnet (facts §8.7): biases 0.1 there, fc6/fc7 std 0.005
CAFFE_BIAS = {"conv1": 0, "conv2": 0.1, "conv3": 0, "conv4": 0.1, "conv5": 0.1, "fc6": 0.1, "fc7": 0.1, "fc8": 0}
CAFFE_STD = {"conv1": 0.01, "conv2": 0.01, "conv3": 0.01, "conv4": 0.01, "conv5": 0.01,
             "fc6": 0.005, "fc7": 0.005, "fc8": 0.01}


def test_alexnet_paper_init(alexnet):
    for n in ALEXNET_LAYERS:
        layer = getattr(alexnet, n)
        _assert_gaussian(layer.weight, 0.01, n)
        _assert_bias(layer.bias, PAPER_BIAS[n], n)


def test_alexnet_caffe_init():
    torch.manual_seed(3)
    model = build(mcfg("alexnet", init="caffe"))
    for n in ALEXNET_LAYERS:
        layer = getattr(model, n)
        _assert_gaussian(layer.weight, CAFFE_STD[n], n)
        _assert_bias(layer.bias, CAFFE_BIAS[n], n)


@pytest.mark.parametrize("init", ["paper", "caffe"])
@SETTINGS
@given(bias=st.floats(-2, 2, allow_nan=False))
def test_bias_init_override(init, bias):
    torch.manual_seed(0)
    model = build(mcfg("alexnet-cifar", init=init, bias_init=bias))
    for n in ALEXNET_LAYERS:
        _assert_bias(getattr(model, n).bias, bias if PAPER_BIAS[n] else 0.0, n)
    fc_std = 0.01 if init == "paper" else 0.005
    _assert_gaussian(model.fc6.weight, fc_std * CIFAR_GAIN["fc6"], "fc6")
    _assert_gaussian(model.conv3.weight, 0.01 * CIFAR_GAIN["conv3"], "conv3")


# The paper's std carried over to alexnet-cifar by fan-in: sqrt(paper fan-in / alexnet-cifar fan-in).
#   conv1 3*11*11=363 vs 3*5*5=75; conv2 48*25=1200 vs 12*25=300; conv3 256*9=2304 vs 64*9=576;
#   conv4/conv5 192*9=1728 vs 48*9=432; fc6 256*6*6=9216 vs 64*3*3=576; fc7/fc8 4096 vs 512.
CIFAR_GAIN = {"conv1": math.sqrt(363 / 75), "conv2": 2.0, "conv3": 2.0, "conv4": 2.0, "conv5": 2.0,
              "fc6": 4.0, "fc7": math.sqrt(8), "fc8": math.sqrt(8)}


def test_alexnet_cifar_uses_the_paper_init_carried_over_by_fan_in(alexnet_cifar):
    for n in ALEXNET_LAYERS:
        layer = getattr(alexnet_cifar, n)
        _assert_gaussian(layer.weight, 0.01 * CIFAR_GAIN[n], n)
        _assert_bias(layer.bias, PAPER_BIAS[n], n)


def test_alexnet_cifar_one_column_keeps_the_two_column_stds():
    # footnote 2's comparison changes the widths, not the init: same stds for both nets
    torch.manual_seed(0)
    one = build(mcfg("alexnet-cifar", columns=1))
    for n in ALEXNET_LAYERS:
        _assert_gaussian(getattr(one, n).weight, 0.01 * CIFAR_GAIN[n], n)


# Layer files (facts §5): initW (std) and wc (weight decay) per layer; biases 0, no decay, epsB = 2 epsW.
CIFAR_HP = {
    "cifar-80sec": {"conv1": (1e-4, 0.004), "conv2": (0.01, 0.004), "conv3": (0.01, 0.004),
                    "fc64": (0.1, 0.03), "fc10": (0.1, 0.03)},
    "cifar-18pct": {"conv1": (1e-4, 0.004), "conv2": (0.01, 0.004), "conv3": (0.01, 0.004), "fc10": (0.01, 1.0)},
    "cifar-19pct": {"conv1": (1e-4, 0.004), "conv2": (0.01, 0.004), "conv3": (0.01, 0.004), "fc10": (0.01, 3.0)},
    "cifar-11pct": {"conv1": (1e-4, 0.0), "conv2": (0.01, 0.0), "local3": (0.04, 0.004),
                    "local4": (0.04, 0.004), "fc10": (0.01, 0.01)},
    "cifar-13pct": {"conv1": (1e-4, 0.0), "conv2": (0.01, 0.0), "local3": (0.04, 0.004),
                    "local4": (0.04, 0.004), "fc10": (0.01, 0.004)},
}


@pytest.mark.parametrize("name", CIFAR_NETS)
def test_cifar_layer_file_init(name):
    torch.manual_seed(0)
    model = build(mcfg(name))
    weighted = [n for n, m in model.named_children() if isinstance(m, (nn.Conv2d, nn.Linear, LocallyConnected2d))]
    assert weighted == list(CIFAR_HP[name])
    for n, (std, _) in CIFAR_HP[name].items():
        _assert_gaussian(getattr(model, n).weight, std, n)
        _assert_bias(getattr(model, n).bias, 0.0, n)


def _groups(model, weight_decay=None) -> dict[str, tuple[float, float]]:
    groups = model.optim_groups(weight_decay)
    ids = [id(p) for g in groups for p in g["params"]]
    assert len(ids) == len(set(ids)), "a parameter is in two groups"
    assert set(ids) == {id(p) for p in model.parameters()}, "a parameter is in no group"
    return {g["name"]: (g["weight_decay"], g["lr_mult"]) for g in groups}


@pytest.mark.parametrize("name", CIFAR_NETS)
def test_cifar_optim_groups(name):
    got = _groups(build(mcfg(name)))
    want = {}
    for n, (_, wc) in CIFAR_HP[name].items():
        want[f"{n}.weight"] = (wc, 1.0)
        want[f"{n}.bias"] = (0.0, 2.0)  # biases: no weight decay, epsB = 0.002 = 2 x epsW
    assert got == want
    if name == "cifar-80sec":
        assert got["fc64.weight"] == (0.03, 1.0)
    if name == "cifar-18pct":
        assert got["fc10.weight"] == (1.0, 1.0)


def test_alexnet_optim_groups(alexnet):
    # paper §5: one weight decay 0.0005 for every parameter, one learning rate
    got = _groups(alexnet)
    assert got == {f"{n}.{k}": (5e-4, 1.0) for n in ALEXNET_LAYERS for k in ("weight", "bias")}


@SETTINGS
@given(wd=st.floats(0, 1, allow_nan=False), name=st.sampled_from(ALL_NETS))
def test_weight_decay_override_replaces_every_weights_decay(wd, name):
    model = meta_model(name)
    got, own = _groups(model, wd), _groups(model)
    for g, (decay, mult) in got.items():
        assert mult == own[g][1]
        if g.endswith(".weight"):
            assert decay == wd, g
        elif own[g][0] == 0:
            assert decay == 0.0, g  # cuda-convnet biases never decay
        else:
            assert decay == wd, g  # alexnet decays its biases like its weights


def test_batchnorm_parameters_get_no_weight_decay():
    got = _groups(meta_model("alexnet-cifar", norm="batchnorm"))
    assert got["other"] == (0.0, 1.0)


# =========================================================================== Conv2dCeil


@SETTINGS
@given(size=st.integers(1, 40), k=st.integers(1, 11), s=st.integers(1, 5), p=st.integers(0, 3),
       cin=st.integers(1, 3), cout=st.integers(1, 3), seed=st.integers(0, 2**31 - 1))
def test_conv2d_ceil_matches_cuda_convnet_sizing(size, k, s, p, cin, cout, seed):
    if size + 2 * p < k:
        return
    conv = Conv2dCeil(cin, cout, k, stride=s, padding=p).double()
    x = _rand((2, cin, size, size), seed).double()
    out = conv(x)
    expect = 1 + math.ceil((2 * p + size - k) / s)  # facts §5 / §8.1: cuda-convnet's output size
    assert out.shape == (2, cout, expect, expect)
    # = F.conv2d on the input zero-padded at the right and bottom (generously), cropped
    ref = F.conv2d(F.pad(x, (0, s, 0, s)), conv.weight, conv.bias, stride=s, padding=p)[..., :expect, :expect]
    torch.testing.assert_close(out, ref)


def test_conv2d_ceil_gives_55_for_224_and_227():
    conv = Conv2dCeil(3, 2, 11, stride=4)
    assert conv(torch.randn(1, 3, 224, 224)).shape[-2:] == (55, 55)  # 1 + ceil(213/4) = 55
    assert conv(torch.randn(1, 3, 227, 227)).shape[-2:] == (55, 55)  # 1 + 216/4 = 55, no overhang
    assert conv.extra_pad(227) == 0 and conv.extra_pad(224) == 3  # 54*4 + 11 = 227 = 224 + 3


# =========================================================================== normalization placement


def test_alexnet_lrn_is_the_papers_by_default(alexnet):
    for n in ("norm1", "norm2"):
        lrn = getattr(alexnet, n).lrn
        assert isinstance(lrn, LocalResponseNorm)
        # paper §3.3: k=2, n=5, alpha=1e-4, beta=0.75, alpha not divided by n
        assert (lrn.k, lrn.size, lrn.alpha, lrn.beta, lrn.convention) == (2.0, 5, 1e-4, 0.75, "paper")
        assert lrn.alpha_per_term == 1e-4
    assert not any(isinstance(m, (LocalResponseNorm, ColumnwiseLRN, nn.BatchNorm2d))
                   for n, m in alexnet.named_children() if n not in ("norm1", "norm2"))


@pytest.mark.parametrize("convention,k,per_term", [("cuda-convnet", 2.0, 2e-5), ("caffe", 1.0, 2e-5),
                                                   ("paper", 2.0, 1e-4)])
def test_lrn_convention_switch(convention, k, per_term):
    model = meta_model("alexnet", lrn_convention=convention)
    for n in ("norm1", "norm2"):
        lrn = getattr(model, n).lrn
        assert lrn.convention == convention and lrn.k == k and lrn.size == 5
        assert lrn.alpha_per_term == pytest.approx(per_term, rel=1e-12)


@pytest.mark.parametrize("name,c1,c2", [("alexnet", 96, 256), ("alexnet-cifar", 24, 64),
                                        ("cifar-18pct", 32, 32), ("cifar-11pct", 64, 64)])
def test_norm_switch_batchnorm_and_none(name, c1, c2):
    bn = meta_model(name, norm="batchnorm")
    assert isinstance(bn.norm1, nn.BatchNorm2d) and bn.norm1.num_features == c1
    assert isinstance(bn.norm2, nn.BatchNorm2d) and bn.norm2.num_features == c2
    none = meta_model(name, norm="none")
    assert not hasattr(none, "norm1") and not hasattr(none, "norm2")


def test_cifar_11pct_uses_cuda_convnet_cmrnorm():
    model = build(mcfg("cifar-11pct"))
    for n in ("norm1", "norm2"):
        lrn = getattr(model, n)
        assert isinstance(lrn, LocalResponseNorm)
        # facts §5c: cmrnorm size=9 scale=0.001 pow=0.75 -> (1 + 0.001/9 * sum)^0.75
        assert (lrn.convention, lrn.size, lrn.alpha, lrn.k, lrn.beta) == ("cuda-convnet", 9, 1e-3, 1.0, 0.75)
        assert lrn.alpha_per_term == pytest.approx(1e-3 / 9)


def test_cifar_18pct_uses_spatial_rnorm():
    model = build(mcfg("cifar-18pct"))
    for n in ("norm1", "norm2"):
        r = getattr(model, n)
        # facts §5b: rnorm size=3 scale=5e-5 pow=0.75, same map
        assert isinstance(r, SpatialResponseNorm) and (r.size, r.scale, r.power) == (3, 5e-5, 0.75)


@pytest.mark.parametrize("name", ["cifar-80sec", "cifar-19pct", "cifar-13pct"])
def test_nets_without_normalization_have_none(name):
    for norm in ("lrn", "batchnorm"):
        model = meta_model(name, norm=norm)
        assert not any(isinstance(m, (LocalResponseNorm, SpatialResponseNorm, nn.BatchNorm2d, ColumnwiseLRN))
                       for m in model.modules())


def test_pooling_kinds():
    # paper §3.4: overlapping max-pool z=3, s=2; non-overlapping z=s=2
    for sw, k in (("overlapping", 3), ("non-overlapping", 2)):
        m = meta_model("alexnet", pooling=sw)
        for n in ("pool1", "pool2", "pool5"):
            pool = getattr(m, n)
            assert isinstance(pool, nn.MaxPool2d) and pool.kernel_size == k and pool.stride == 2
    # facts §5a: 80sec pool1 max, pool2/pool3 avg, all ceil-sized
    m = meta_model("cifar-80sec")
    assert isinstance(m.pool1, nn.MaxPool2d) and m.pool1.ceil_mode
    assert isinstance(m.pool2, nn.AvgPool2d) and isinstance(m.pool3, nn.AvgPool2d) and m.pool3.ceil_mode
    # dropout 0.5 on fc6 and fc7 (paper §4.2)
    assert meta_model("alexnet").drop6.p == 0.5 and meta_model("alexnet").drop7.p == 0.5


# =========================================================================== golden outputs
# Generated once (torch 2.14.1, CPU) with exactly `_golden_logits` below:
#   torch.manual_seed(0); model = build(make_config(name).model); in float64, eval mode,
#   input torch.randn(2, 3, s, s, generator=Generator().manual_seed(1234), float64);
#   the first 4 logits of both images, printed with repr().
# A change to the architecture, the layer order, the init or the order parameters are created
# in changes them. Tolerance: 1e-4 relative (plus 1e-4 of the largest magnitude, absolute).
GOLDEN = {
    # the two images' logits agree to ~4 digits: at this init fc6/fc7's bias of 1 dominates
    "alexnet-cifar": [[-0.8261310403780757, 0.15029672094597024, -0.3580449916907451, 1.013368856200045],
                      [-0.8258373093750078, 0.15027285450989836, -0.3580193747531354, 1.0131941570744085]],
    # tiny because conv1's initW is 1e-4 and every bias is 0
    "cifar-80sec": [[-5.697937916663738e-05, 4.1673487326478676e-05, 7.17510750273333e-06, 4.34446619874852e-05],
                    [-6.971957932078e-05, 4.061716539954076e-05, 2.563971626551851e-05, 5.2953696001221005e-05]],
}


def _golden_logits(name: str) -> torch.Tensor:
    torch.manual_seed(0)
    model = build(mcfg(name)).double().eval()
    s = INPUT[name][0]
    x = torch.randn(2, 3, s, s, generator=torch.Generator().manual_seed(1234), dtype=torch.float64)
    with torch.no_grad():
        return model(x)[:, :4]


@pytest.mark.parametrize("name", list(GOLDEN))
def test_golden_logits(name):
    got = _golden_logits(name)
    want = torch.tensor(GOLDEN[name], dtype=torch.float64)
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4 * want.abs().max().item())


# =========================================================================== bad switches


@pytest.mark.parametrize("name,switches", [
    ("alexnet", {"columns": 3}),
    ("alexnet", {"columns": 0}),
    ("alexnet-cifar", {"columns": 3}),
    ("alexnet", {"input_size": 30}),  # conv5's pooled maps would be empty
    ("alexnet", {"activation": "sigmoid"}),
    ("alexnet", {"norm": "layernorm"}),
    ("alexnet", {"pooling": "average"}),
    ("alexnet", {"init": "xavier"}),
    ("alexnet", {"lrn_convention": "torch"}),
    *[(n, {"columns": 2}) for n in CIFAR_NETS],
    *[(n, {"init": "caffe"}) for n in CIFAR_NETS],
    *[(n, {"bias_init": 1.0}) for n in CIFAR_NETS],
    ("cifar-80sec", {"input_size": 24}),
    ("cifar-18pct", {"input_size": 28}),
    ("cifar-19pct", {"input_size": 224}),
    ("cifar-11pct", {"input_size": 32}),
    ("cifar-13pct", {"input_size": 32}),
])
def test_bad_switches_raise_config_error(name, switches):
    with pytest.raises(ConfigError):
        with torch.device("meta"):
            build(mcfg(name, **switches))


@pytest.mark.parametrize("field,value", [("activation", "sigmoid"), ("norm", "layernorm"), ("pooling", "avg"),
                                         ("init", "xavier")])
def test_builders_reject_bad_values_even_without_config_validation(field, value):
    # ModelConfig built directly (not through apply) skips the choice check; the builders must still refuse
    for name in ("alexnet-cifar", "cifar-11pct"):
        cfg = ModelConfig(name=name, **{field: value}, **({"columns": 1, "input_size": 24, "num_classes": 10}
                                                           if name == "cifar-11pct" else {"input_size": 24}))
        with pytest.raises(ConfigError):
            build(cfg)


def test_registry_builds_every_model_with_its_defaults():
    for name, entry in ENTRIES.items():
        assert entry.name == name and entry.summary
        model = meta_model(name)
        assert model.columns == (2 if name in ALEXNETS else 1)


@pytest.mark.parametrize("name, size", [("alexnet-cifar", 24), ("cifar-11pct", 24)])
def test_lrn_gain_is_the_same_layer_with_only_its_constant_gain(name, size):
    """norm=lrn-gain (protocol §6's control): the net's own LRN with alpha = 0 multiplies every
    activation by k^-beta and nothing else (alexnet-cifar: 2^-0.75; cifar-11pct's cmrnorm: 1^-0.75)."""
    torch.manual_seed(0)
    lrn_net = build(make_config(name, {"model.norm": "lrn"}).model)
    torch.manual_seed(0)
    gain_net = build(make_config(name, {"model.norm": "lrn-gain"}).model)
    layers = [(n, m) for n, m in gain_net.named_modules() if hasattr(m, "alpha")]
    assert layers and all(m.alpha == 0.0 for _, m in layers)
    for n, m in lrn_net.named_modules():
        if hasattr(m, "alpha"):
            assert m.alpha > 0, n  # the paper arm keeps its alpha
    x = torch.randn(2, 7, 5, 5, dtype=torch.float64) * 30
    for _, m in layers:
        k, beta = m.k, m.beta
        torch.testing.assert_close(m.double()(x), x * k ** -beta)
    assert lrn_net.state_dict().keys() == gain_net.state_dict().keys()


def test_lrn_gain_needs_a_layer_with_alpha():
    with pytest.raises(ConfigError, match="lrn-gain"):
        build(make_config("cifar-18pct", {"model.norm": "lrn-gain"}).model)  # spatial rnorm: no alpha
