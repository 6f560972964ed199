"""Pieces every net in `repro.models` shares.

A net is a `PaperNet`: an `nn.Sequential` whose children carry the paper's names
(conv1, norm1, pool1, ..., fc8), so `print(model)` reads like Figure 2 and `repro spec`
can walk it. Each net also carries a table of per-layer hyperparameters (init std, init
bias, weight decay, bias learning-rate multiplier) because Krizhevsky's CIFAR-10 layer
files set them per layer; the AlexNet paper sets them once for the whole net (§5).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from repro.config import ModelConfig
from repro.errors import ConfigError
from repro.layers import LocalResponseNorm


@dataclass(frozen=True)
class LayerHP:
    """One layer's hyperparameters, as a cuda-convnet layer-params file states them."""

    init_std: float
    init_bias: float = 0.0
    weight_decay: float = 0.0
    bias_weight_decay: float = 0.0
    bias_lr_mult: float = 1.0


def activation(cfg: ModelConfig) -> nn.Module:
    if cfg.activation == "relu":
        return nn.ReLU(inplace=True)  # paper §3.1
    if cfg.activation == "tanh":
        return nn.Tanh()  # Figure 1's comparison
    raise ConfigError(f"model.activation={cfg.activation!r}: choose relu or tanh")


class ColumnwiseLRN(nn.Module):
    """LRN applied to each column's maps separately.

    In the two-GPU net each GPU normalizes its own kernel maps (paper §3.2: the GPUs
    communicate only in certain layers, and LRN is not one of them), so the LRN window
    never crosses from one column's maps into the other's. With one column this is
    plain LRN.
    """

    def __init__(self, lrn: LocalResponseNorm, columns: int):
        super().__init__()
        self.lrn, self.columns = lrn, columns

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # one fused call with a block-diagonal window: no reshape, so channels_last stays as it is
        return self.lrn(x, groups=self.columns)  # paper §3.2: no window crosses between columns


def norm_switch(cfg: ModelConfig, channels: int, own: Callable[[], nn.Module]) -> nn.Module | None:
    """The `norm` switch: the net's own response normalization (`own()`), nothing, BatchNorm, or
    `lrn-gain`: the net's own layer with alpha = 0, which leaves only its constant gain k^-beta
    (2^-0.75 ~ 0.59 for the paper's LRN): the control that separates normalization from gain
    (protocol §6)."""
    if cfg.norm == "lrn":
        return own()
    if cfg.norm == "lrn-gain":
        layer = own()
        lrn = getattr(layer, "lrn", layer)  # ColumnwiseLRN wraps the layer
        if not hasattr(lrn, "alpha"):
            raise ConfigError(f"model.norm=lrn-gain: {type(lrn).__name__} has no alpha to zero")
        lrn.alpha = 0.0
        return layer
    if cfg.norm == "batchnorm":
        return nn.BatchNorm2d(channels)
    if cfg.norm == "none":
        return None
    raise ConfigError(f"model.norm={cfg.norm!r}: choose lrn, lrn-gain, none or batchnorm")


class Conv2dCeil(nn.Conv2d):
    """A convolution whose output size is cuda-convnet's: 1 + ceil((2p + in - k) / s).

    PyTorch floors. cuda-convnet lets the last window overhang the image and treats the
    overhang as zeros, which is how the paper's 224x224 input gives a 55x55 conv1 output
    with an 11x11 stride-4 kernel and no padding: 1 + ceil(213 / 4) = 55 (facts §8.1).
    We reproduce it by zero-padding the right and bottom edges by exactly the overhang.
    """

    def extra_pad(self, size: int) -> int:
        (k,), (s,), (p,) = self.kernel_size[:1], self.stride[:1], self.padding[:1]
        out = 1 + math.ceil((2 * p + size - k) / s)
        return max(0, (out - 1) * s + k - (size + 2 * p))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        ph, pw = self.extra_pad(x.shape[-2]), self.extra_pad(x.shape[-1])
        if ph or pw:
            x = F.pad(x, (0, pw, 0, ph))
        return super().forward(x)


class PaperNet(nn.Sequential):
    """A net whose layers carry the paper's names, with per-layer hyperparameters.

    `hparams` maps a parameterized layer's name to its `LayerHP`; `columns` is 2 for the
    two-GPU layout and 1 otherwise; `column_role` says, per layer, whether it works on
    each column's own maps ("per column") or on both ("both columns").
    """

    def __init__(self, layers: list[tuple[str, nn.Module | None]], hparams: dict[str, LayerHP],
                 columns: int = 1, column_role: dict[str, str] | None = None):
        super().__init__()
        for name, module in layers:
            if module is not None:
                self.add_module(name, module)
        self.hparams = hparams
        self.columns = columns
        self.column_role = column_role or {}
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Zero-mean Gaussian weights with each layer's std, constant biases (paper §5)."""
        for name, hp in self.hparams.items():
            layer = getattr(self, name)
            nn.init.normal_(layer.weight, mean=0.0, std=hp.init_std)
            nn.init.constant_(layer.bias, hp.init_bias)

    def optim_groups(self, weight_decay: float | None = None) -> list[dict]:
        """Parameter groups for the optimizer: per-layer weight decay and bias lr multiplier.

        `weight_decay=None` keeps each layer's own value; a number replaces every weight's
        decay, and every bias's where it is non-zero (the paper decays biases too; the layer
        files never do), which is how an ablation turns regularization off.
        Parameters outside `hparams` (BatchNorm affine terms) get no weight decay.
        """
        groups, seen = [], set()
        for name, hp in self.hparams.items():
            layer = getattr(self, name)
            wd = hp.weight_decay if weight_decay is None else weight_decay
            groups.append({"params": [layer.weight], "lr_mult": 1.0, "weight_decay": wd, "name": f"{name}.weight"})
            groups.append({"params": [layer.bias], "lr_mult": hp.bias_lr_mult,
                           "weight_decay": hp.bias_weight_decay if weight_decay is None or hp.bias_weight_decay == 0
                           else weight_decay, "name": f"{name}.bias"})
            seen.update({id(layer.weight), id(layer.bias)})
        rest = [p for p in self.parameters() if id(p) not in seen]
        if rest:
            groups.append({"params": rest, "lr_mult": 1.0, "weight_decay": 0.0, "name": "other"})
        return groups
