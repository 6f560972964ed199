"""The paper's CIFAR-10 nets: Krizhevsky's cuda-convnet (v1) layer files.

The paper's CIFAR-10 claims were measured on these (footnote 3: the net is "specified
precisely by the code and parameter files" of cuda-convnet). Each builder transcribes a
`layers-*.cfg` / `layer-params-*.cfg` pair (facts §5) layer by layer:

    cifar-80sec   conv32-maxpool-conv32-avgpool-conv64-avgpool-fc64-fc10   Figure 1's net
    cifar-18pct   as 80sec without fc64, with same-map rnorm after pool1 and pool2
    cifar-19pct   18pct without the rnorm layers (fc10 wc 3 instead of 1)
    cifar-11pct   conv64-pool-cmrnorm9-conv64-cmrnorm9-pool-local64-local32-fc10, 24x24 crops
    cifar-13pct   11pct without cmrnorm and with 32 filters in local3 (fc10 wc 0.004)

What the layer files fix and we keep: initW is a Gaussian std per layer; biases start at
0, learn at twice the weights' rate (epsB 0.002 vs epsW 0.001) and have no weight decay;
each layer has its own weight decay `wc`. Every map size is cuda-convnet's ceiling size
(pooling `ceil_mode=True`): 32 -> 16 -> 8 -> 4 and 24 -> 12 -> 6. `neuron=relu` on a pool
layer applies the activation after pooling. Locally connected layers have untied
weights and untied biases.

Switches: `activation` replaces every ReLU; `pooling` turns every 3/2 pool (max or avg)
into a 2/2 pool of the same kind, which gives the same map sizes; `norm` removes or
replaces (by BatchNorm) the net's normalization layers where it has any. These nets have
one column, no dropout and their own init, so `columns`, `dropout` and `init` do not
apply to them.
"""

from __future__ import annotations

from torch import nn

from repro.config import ModelConfig
from repro.errors import ConfigError
from repro.layers import LocallyConnected2d, LocalResponseNorm, SpatialResponseNorm
from repro.models.common import LayerHP, PaperNet, activation, norm_switch

EPS_B_MULT = 2.0  # layer files: epsB = 0.002 = 2 x epsW


def _hp(init_std: float, wc: float) -> LayerHP:
    return LayerHP(init_std=init_std, init_bias=0.0, weight_decay=wc, bias_weight_decay=0.0, bias_lr_mult=EPS_B_MULT)


def _pool(cfg: ModelConfig, kind: str) -> nn.Module:
    k = {"overlapping": 3, "non-overlapping": 2}.get(cfg.pooling)
    if k is None:
        raise ConfigError(f"model.pooling={cfg.pooling!r}: choose overlapping or non-overlapping")
    if kind == "max":
        return nn.MaxPool2d(k, stride=2, ceil_mode=True)
    # cuda-convnet divides by the clipped window size at the border: count_include_pad=False
    return nn.AvgPool2d(k, stride=2, ceil_mode=True, count_include_pad=False)


def _check(cfg: ModelConfig, input_size: int) -> None:
    if cfg.columns != 1:
        raise ConfigError(f"{cfg.name} has one column; model.columns applies to the AlexNet nets only")
    if cfg.init != "paper" or cfg.bias_init is not None:
        raise ConfigError(f"{cfg.name} takes its init from its layer file; model.init/bias_init do not apply")
    if cfg.dropout != 0:
        raise ConfigError(f"{cfg.name} has no dropout layers; model.dropout does not apply (set it to 0)")
    if cfg.input_size != input_size:
        raise ConfigError(f"{cfg.name} takes {input_size}x{input_size} inputs, not model.input_size={cfg.input_size}")


def _small_conv(cfg: ModelConfig, spatial_rnorm: bool, fc64: bool, fc10_wc: float) -> PaperNet:
    """The 80sec / 18pct / 19pct family (32x32 input, no augmentation)."""
    _check(cfg, 32)
    act = lambda: activation(cfg)  # noqa: E731

    def rnorm(channels: int) -> nn.Module | None:
        if not spatial_rnorm:
            return None
        # layers-18pct: rnorm size=3 scale=5e-5 pow=0.75, same-map (spatial)
        return norm_switch(cfg, channels, lambda: SpatialResponseNorm(size=3, scale=5e-5, power=0.75))

    layers = [
        ("conv1", nn.Conv2d(3, 32, 5, padding=2)),  # conv 32@5x5 p2, no neuron
        ("pool1", _pool(cfg, "max")),
        ("relu1", act()),  # neuron=relu on pool1
        ("norm1", rnorm(32)),
        ("conv2", nn.Conv2d(32, 32, 5, padding=2)),
        ("relu2", act()),
        ("pool2", _pool(cfg, "avg")),
        ("norm2", rnorm(32)),
        ("conv3", nn.Conv2d(32, 64, 5, padding=2)),
        ("relu3", act()),
        ("pool3", _pool(cfg, "avg")),
        ("flatten", nn.Flatten()),
    ]
    hparams = {"conv1": _hp(1e-4, 0.004), "conv2": _hp(0.01, 0.004), "conv3": _hp(0.01, 0.004)}
    if fc64:
        layers += [("fc64", nn.Linear(64 * 4 * 4, 64)), ("relu64", act()), ("fc10", nn.Linear(64, cfg.num_classes))]
        hparams |= {"fc64": _hp(0.1, 0.03), "fc10": _hp(0.1, 0.03)}
    else:
        layers += [("fc10", nn.Linear(64 * 4 * 4, cfg.num_classes))]
        hparams |= {"fc10": _hp(0.01, fc10_wc)}
    return PaperNet(layers, hparams, columns=1, column_role={})


def build_80sec(cfg: ModelConfig) -> PaperNet:
    """layers-80sec.cfg: "26% error on CIFAR-10 in 80 seconds"; Figure 1's four-layer net."""
    return _small_conv(cfg, spatial_rnorm=False, fc64=True, fc10_wc=0.03)


def build_18pct(cfg: ModelConfig) -> PaperNet:
    """layers-18pct.cfg: "18% error on CIFAR-10 in 20 minutes"."""
    return _small_conv(cfg, spatial_rnorm=True, fc64=False, fc10_wc=1.0)


def build_19pct(cfg: ModelConfig) -> PaperNet:
    """layers-19pct.cfg: 18pct without rnorm layers and with fc10 wc=3."""
    return _small_conv(cfg, spatial_rnorm=False, fc64=False, fc10_wc=3.0)


def _conv_local(cfg: ModelConfig, cross_map_lrn: bool, local3: int, fc10_wc: float) -> PaperNet:
    """The conv-local 11pct / 13pct family (24x24 crops with reflections)."""
    _check(cfg, 24)
    act = lambda: activation(cfg)  # noqa: E731

    def cmrnorm(channels: int) -> nn.Module | None:
        if not cross_map_lrn:
            return None
        # cmrnorm size=9 scale=0.001 pow=0.75: (1 + 0.001/9 * sum)^0.75 under cuda-convnet's convention
        return norm_switch(cfg, channels, lambda: LocalResponseNorm(
            size=9, alpha=1e-3, beta=0.75, k=1.0, convention=cfg.lrn_convention))

    layers = [
        ("conv1", nn.Conv2d(3, 64, 5, padding=2)),
        ("relu1", act()),
        ("pool1", _pool(cfg, "max")),
        ("norm1", cmrnorm(64)),
        ("conv2", nn.Conv2d(64, 64, 5, padding=2)),
        ("relu2", act()),
        ("norm2", cmrnorm(64)),  # before pool2 in the layer file
        ("pool2", _pool(cfg, "max")),
        ("local3", LocallyConnected2d(64, local3, in_size=6, kernel_size=3, padding=1)),
        ("relu3", act()),
        ("local4", LocallyConnected2d(local3, 32, in_size=6, kernel_size=3, padding=1)),
        ("relu4", act()),
        ("flatten", nn.Flatten()),
        ("fc10", nn.Linear(32 * 6 * 6, cfg.num_classes)),
    ]
    hparams = {"conv1": _hp(1e-4, 0.0), "conv2": _hp(0.01, 0.0), "local3": _hp(0.04, 0.004),
               "local4": _hp(0.04, 0.004), "fc10": _hp(0.01, fc10_wc)}
    return PaperNet(layers, hparams, columns=1, column_role={})


def build_11pct(cfg: ModelConfig) -> PaperNet:
    """layers-conv-local-11pct.cfg: "11% error on CIFAR-10 in 75 minutes"."""
    return _conv_local(cfg, cross_map_lrn=True, local3=64, fc10_wc=0.01)


def build_13pct(cfg: ModelConfig) -> PaperNet:
    """layers-conv-local-13pct.cfg: "13% error on CIFAR-10 in 25 minutes"."""
    return _conv_local(cfg, cross_map_lrn=False, local3=32, fc10_wc=0.004)
