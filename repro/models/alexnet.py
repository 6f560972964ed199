"""AlexNet as the paper describes it (§3.5, Figure 2), and two relatives.

    conv1  96 @ 11x11 / 4          -> ReLU -> LRN -> max-pool 3/2     both columns see the image
    conv2 256 @ 5x5 pad 2          -> ReLU -> LRN -> max-pool 3/2     per column (48 maps in)
    conv3 384 @ 3x3 pad 1          -> ReLU                            both columns (256 maps in)
    conv4 384 @ 3x3 pad 1          -> ReLU                            per column (192 maps in)
    conv5 256 @ 3x3 pad 1          -> ReLU -> max-pool 3/2            per column (192 maps in)
    fc6 4096 -> ReLU -> dropout;  fc7 4096 -> ReLU -> dropout;  fc8 num_classes

Map sizes for a 224x224 input: 55 -> 27 -> 27 -> 13 -> 13 -> 13 -> 13 -> 6.
(224 - 11)/4 + 1 is not a whole number; the paper's 55 comes from cuda-convnet, which
sizes outputs with a ceiling and no padding (see `Conv2dCeil`). A 227x227 input (Caffe's
choice) gives 55 exactly, with no overhang. Both are supported; 224 is the paper's.

The "two GPUs" are two columns. On one device they are grouped convolutions
(groups=2): each column's kernels see only that column's maps, exactly where the paper
says the GPUs do not communicate (conv2, conv4, conv5). conv3 and the fully connected
layers read both columns. 60,965,224 parameters at 1000 classes.

`columns=1` is footnote 2's one-GPU comparison net: half the kernels in conv1-conv4
(48, 128, 192, 192), conv5 kept at 256, the same FC layers, every convolution fully
connected: 59,798,312 parameters.

`alexnet-cifar` keeps the topology (5 conv, 3 FC, two columns, LRN after conv1 and
conv2, overlapping max-pooling after conv1, conv2 and conv5) at a size a CPU trains on
CIFAR-10 in minutes; see `CIFAR_WIDTHS`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from torch import nn

from repro.config import ModelConfig
from repro.errors import ConfigError
from repro.layers import LocalResponseNorm
from repro.models.common import ColumnwiseLRN, Conv2dCeil, LayerHP, PaperNet, activation, norm_switch


@dataclass(frozen=True)
class Widths:
    """Kernel counts of the two-column net; the one-column net derives from them."""

    conv: tuple[int, int, int, int, int]
    fc: int
    conv1_kernel: int
    conv1_stride: int
    conv1_padding: int
    ceil_pool: bool  # cuda-convnet's ceil-sized pooling; needed where floor would differ

    def one_column(self) -> Widths:
        """Footnote 2: half the kernels in conv1-conv4, conv5 and the FC layers kept."""
        c1, c2, c3, c4, c5 = self.conv
        return Widths((c1 // 2, c2 // 2, c3 // 2, c4 // 2, c5), self.fc, self.conv1_kernel,
                      self.conv1_stride, self.conv1_padding, self.ceil_pool)


PAPER_WIDTHS = Widths((96, 256, 384, 384, 256), 4096, 11, 4, 0, ceil_pool=False)  # paper §3.5
# alexnet-cifar: the paper's widths divided by 4 (FC by 8) and conv1 5x5 stride 1 for
# 24x24 crops of 32x32 images (cuda-convnet's --crop-border 4, like cifar-11pct).
# Maps: 24 -> 12 -> 12 -> 6 -> 6 -> 6 -> 6 -> 3. Pooling is ceil-sized so that 3/2 and
# 2/2 pooling give the same map sizes, as 55 -> 27 does for both in the paper (§3.4).
CIFAR_WIDTHS = Widths((24, 64, 96, 96, 64), 512, 5, 1, 2, ceil_pool=True)


def _pool(cfg: ModelConfig, ceil: bool) -> nn.MaxPool2d:
    if cfg.pooling == "overlapping":
        return nn.MaxPool2d(kernel_size=3, stride=2, ceil_mode=ceil)  # paper §3.4: z=3, s=2
    if cfg.pooling == "non-overlapping":
        return nn.MaxPool2d(kernel_size=2, stride=2, ceil_mode=ceil)  # traditional z=s=2
    raise ConfigError(f"model.pooling={cfg.pooling!r}: choose overlapping or non-overlapping")


def _feature_size(size: int, w: Widths, cfg: ModelConfig) -> int:
    """The side of conv5's pooled maps for an input of side `size`."""
    k = 3 if cfg.pooling == "overlapping" else 2
    rnd = math.ceil if w.ceil_pool else math.floor
    s = 1 + math.ceil((2 * w.conv1_padding + size - w.conv1_kernel) / w.conv1_stride)  # Conv2dCeil
    for _ in range(3):
        s = 1 + rnd((s - k) / 2)
    return s


def fan_ins(w: Widths, input_size: int, cfg: ModelConfig) -> dict[str, int]:
    """Inputs per unit of every weighted layer of the two-column net with widths `w`."""
    c1, c2, c3, c4, _ = w.conv
    side = _feature_size(input_size, w, cfg)
    return {
        "conv1": 3 * w.conv1_kernel**2,
        "conv2": c1 // 2 * 25,  # per column
        "conv3": c2 * 9,  # both columns
        "conv4": c3 // 2 * 9,
        "conv5": c4 // 2 * 9,
        "fc6": w.conv[4] * side * side,
        "fc7": w.fc,
        "fc8": w.fc,
    }


def init_gains(w: Widths, cfg: ModelConfig) -> dict[str, float]:
    """Per-layer multipliers of the init std that carry the paper's init over to a smaller net.

    The paper's N(0, 0.01) (§5) is tuned to the paper's fan-ins: a layer's output scale is
    0.01 * sqrt(fan-in) times its input's. alexnet-cifar's fan-ins are 4-16x smaller, and
    with a literal 0.01 its signal fades to ~2% of the bias-1 constants by conv4 and the net
    sits at chance (tests/test_train.py records it). Scaling each std by
    sqrt(paper fan-in / this fan-in) keeps every layer's forward gain equal to the paper net's.
    The gains compare two-column nets, so `columns=1` uses the same stds as `columns=2`
    (as the paper's one-GPU comparison net did), and for the paper's widths they are all 1.
    """
    if w == PAPER_WIDTHS:
        return dict.fromkeys(fan_ins(w, 224, cfg), 1.0)
    paper, ours = fan_ins(PAPER_WIDTHS, 224, cfg), fan_ins(w, cfg.input_size, cfg)
    return {name: math.sqrt(paper[name] / ours[name]) for name in paper}


def _init(cfg: ModelConfig, gains: dict[str, float]) -> dict[str, LayerHP]:
    """Paper §5: every weight N(0, 0.01); biases 1 in conv2, conv4, conv5, fc6, fc7, else 0.

    The `caffe` preset is bvlc_alexnet's workaround for bias 1 stalling at chance in
    many reimplementations: biases 0.1, fc6/fc7 std 0.005 (facts §7). `gains` scale the
    stds for a net narrower than the paper's (see `init_gains`).
    """
    if cfg.init == "paper":
        one, fc_std = 1.0, 0.01  # paper §5
    elif cfg.init == "caffe":
        one, fc_std = 0.1, 0.005  # Caffe bvlc_alexnet
    else:
        raise ConfigError(f"model.init={cfg.init!r}: choose paper or caffe")
    if cfg.bias_init is not None:
        one = cfg.bias_init
    wd = 5e-4  # paper §5: applied to every weight by the update rule, biases included

    def hp(name: str, std: float, bias: float) -> LayerHP:
        return LayerHP(init_std=std * gains[name], init_bias=bias, weight_decay=wd, bias_weight_decay=wd)

    return {
        "conv1": hp("conv1", 0.01, 0.0),  # paper §5
        "conv2": hp("conv2", 0.01, one),  # paper §5: bias 1 gives the ReLUs positive inputs
        "conv3": hp("conv3", 0.01, 0.0),
        "conv4": hp("conv4", 0.01, one),
        "conv5": hp("conv5", 0.01, one),
        "fc6": hp("fc6", fc_std, one),
        "fc7": hp("fc7", fc_std, one),
        "fc8": hp("fc8", 0.01, 0.0),
    }


def build_alexnet(cfg: ModelConfig, widths: Widths = PAPER_WIDTHS) -> PaperNet:
    if cfg.columns not in (1, 2):
        raise ConfigError(f"model.columns={cfg.columns}: choose 2 (the paper's net) or 1 (footnote 2)")
    g = cfg.columns  # groups of the per-column convolutions
    w = widths if g == 2 else widths.one_column()
    c1, c2, c3, c4, c5 = w.conv
    act = lambda: activation(cfg)  # noqa: E731
    side = _feature_size(cfg.input_size, w, cfg)
    if side < 1:
        raise ConfigError(f"model.input_size={cfg.input_size} is too small for this net")

    def lrn() -> LocalResponseNorm:
        return LocalResponseNorm(size=5, alpha=1e-4, beta=0.75, k=2.0, convention=cfg.lrn_convention)  # paper §3.3

    layers = [
        ("conv1", Conv2dCeil(3, c1, w.conv1_kernel, stride=w.conv1_stride, padding=w.conv1_padding)),  # paper §3.5
        ("relu1", act()),  # paper §3.1
        ("norm1", norm_switch(cfg, c1, lambda: ColumnwiseLRN(lrn(), g))),  # paper §3.3: LRN after ReLU, conv1 and conv2
        ("pool1", _pool(cfg, w.ceil_pool)),  # paper §3.4
        ("conv2", nn.Conv2d(c1, c2, 5, padding=2, groups=g)),  # paper §3.5: 5x5x48 per column
        ("relu2", act()),
        ("norm2", norm_switch(cfg, c2, lambda: ColumnwiseLRN(lrn(), g))),  # paper §3.3
        ("pool2", _pool(cfg, w.ceil_pool)),  # paper §3.4
        ("conv3", nn.Conv2d(c2, c3, 3, padding=1)),  # paper §3.5: 3x3x256, reads both columns
        ("relu3", act()),
        ("conv4", nn.Conv2d(c3, c4, 3, padding=1, groups=g)),  # paper §3.5: 3x3x192 per column
        ("relu4", act()),
        ("conv5", nn.Conv2d(c4, c5, 3, padding=1, groups=g)),  # paper §3.5: 3x3x192 per column
        ("relu5", act()),
        ("pool5", _pool(cfg, w.ceil_pool)),  # paper §3.4
        ("flatten", nn.Flatten()),
        ("fc6", nn.Linear(c5 * side * side, w.fc)),  # paper §3.5: reads both columns
        ("relu6", act()),
        ("drop6", nn.Dropout(cfg.dropout) if cfg.dropout > 0 else None),  # paper §4.2: p=0.5
        ("fc7", nn.Linear(w.fc, w.fc)),  # paper §3.5
        ("relu7", act()),
        ("drop7", nn.Dropout(cfg.dropout) if cfg.dropout > 0 else None),  # paper §4.2
        ("fc8", nn.Linear(w.fc, cfg.num_classes)),  # paper §3.5: feeds a softmax
    ]
    per_column = "per column" if g == 2 else ""
    both = "both" if g == 2 else ""
    role = {"conv1": both, "conv2": per_column, "conv3": both, "conv4": per_column, "conv5": per_column,
            "fc6": both, "fc7": both, "fc8": both}
    return PaperNet(layers, _init(cfg, init_gains(widths, cfg)), columns=g, column_role=role)


def build_alexnet_cifar(cfg: ModelConfig) -> PaperNet:
    return build_alexnet(cfg, CIFAR_WIDTHS)
