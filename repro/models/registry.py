"""Every net `repro` can build, with the defaults its paper or layer file gives it.

An entry's `defaults` are config overrides (see repro.config) applied before any user
setting: the model's size and class count, its data and augmentation, its optimizer
settings and schedule. `repro spec`, `repro train` and the ablation specs all start here,
through `make_config`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from torch import nn

from repro.config import ModelConfig, RunConfig, apply
from repro.errors import ConfigError
from repro.models import alexnet, cuda_convnet


@dataclass(frozen=True)
class ModelEntry:
    name: str
    build: Callable[[ModelConfig], nn.Module]
    summary: str
    defaults: dict[str, Any] = field(default_factory=dict)


# cuda-convnet layer files: epsW 0.001, momentum 0.9, batch 128, per-layer wc (facts §5)
_LAYER_FILE_OPTIM = {"optim.lr": 0.001, "optim.momentum": 0.9, "optim.batch_size": 128, "optim.schedule": "step"}
_CIFAR = {"model.num_classes": 10, "model.columns": 1, "model.dropout": 0.0, "data.dataset": "cifar10"}

ENTRIES: dict[str, ModelEntry] = {
    e.name: e
    for e in [
        ModelEntry(
            "alexnet", alexnet.build_alexnet,
            "The paper's net (§3.5, Figure 2): two columns, LRN, overlapping pooling, dropout; ImageNet.",
            {
                "model.num_classes": 1000, "model.input_size": 224,  # paper §3.5, footnote 4
                "data.dataset": "imagenet", "data.image_size": 256,  # paper §2
                "data.flip": True, "data.pca_noise": 0.1, "data.test_views": 10,  # paper §4.1
                "optim.lr": 0.01, "optim.schedule": "plateau", "optim.max_drops": 3,  # paper §5
                "data.holdout": 10000,  # what the plateau schedule reads: 10 training images per class
                "epochs": 90,  # paper §5: roughly 90 cycles
            },
        ),
        ModelEntry(
            "alexnet-cifar", alexnet.build_alexnet_cifar,
            "AlexNet's topology (5 conv + 3 FC, two columns, LRN, 3/2 pooling) sized for 24x24 CIFAR-10 crops"
            " on a CPU.",
            {
                "model.num_classes": 10, "model.input_size": 24, "data.dataset": "cifar10",
                "data.flip": True,  # paper §4.1: random crops (24 of 32) and reflections
                "optim.lr": 0.01, "optim.schedule": "plateau", "optim.patience": 2, "optim.max_drops": 3,
                "data.holdout": 5000,  # protocol §1: what the plateau schedule reads
                "epochs": 40,
            },
        ),
        ModelEntry(
            "cifar-80sec", cuda_convnet.build_80sec,
            "cuda-convnet layers-80sec: 3 conv + 2 FC, the four-layer net of Figure 1 (ReLU vs tanh).",
            _CIFAR | _LAYER_FILE_OPTIM | {"model.input_size": 32, "optim.milestones": (8,), "epochs": 10},
        ),
        ModelEntry(
            "cifar-18pct", cuda_convnet.build_18pct,
            "cuda-convnet layers-18pct: 3 conv with same-map rnorm + 1 FC.",
            _CIFAR | _LAYER_FILE_OPTIM | {"model.input_size": 32, "optim.milestones": (120, 130), "epochs": 140},
        ),
        ModelEntry(
            "cifar-19pct", cuda_convnet.build_19pct,
            "cuda-convnet layers-19pct: 18pct without rnorm.",
            _CIFAR | _LAYER_FILE_OPTIM | {"model.input_size": 32, "optim.milestones": (120, 130), "epochs": 140},
        ),
        ModelEntry(
            "cifar-11pct", cuda_convnet.build_11pct,
            "cuda-convnet layers-conv-local-11pct: 2 conv with cross-map LRN (size 9) + 2 locally connected + 1 FC.",
            _CIFAR | _LAYER_FILE_OPTIM | {
                "model.input_size": 24, "model.lrn_convention": "cuda-convnet", "data.flip": True,
                # params file: ~350 + ~150 epochs, then 10 at epsW/10 and 10 at epsW/100
                "optim.milestones": (500, 510), "epochs": 520,
            },
        ),
        ModelEntry(
            "cifar-13pct", cuda_convnet.build_13pct,
            "cuda-convnet layers-conv-local-13pct: 11pct without LRN and with 32 filters in local3.",
            _CIFAR | _LAYER_FILE_OPTIM | {
                "model.input_size": 24, "data.flip": True,
                # Methodology.md: ~100 + ~40 epochs, then 10 at epsW/10 and 10 at epsW/100
                "optim.milestones": (140, 150), "epochs": 160,
            },
        ),
    ]
}


def names() -> list[str]:
    return list(ENTRIES)


def get(name: str) -> ModelEntry:
    try:
        return ENTRIES[name]
    except KeyError:
        raise ConfigError(f"unknown model {name!r}; valid models: {', '.join(ENTRIES)}") from None


def build(cfg: ModelConfig) -> nn.Module:
    """The net `cfg` describes, initialized as its paper or layer file says."""
    return get(cfg.name).build(cfg)


def make_config(model: str, overrides: Mapping[str, Any] | None = None) -> RunConfig:
    """The model's own defaults (its paper or layer file), then `overrides`."""
    entry = get(model)
    cfg = apply(RunConfig(model=ModelConfig(name=model)), entry.defaults)
    cfg = apply(cfg, overrides or {})
    if cfg.model.name != model:
        raise ConfigError("model.name is chosen with --model, not --set")
    return cfg
