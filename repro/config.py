"""Run configuration: frozen dataclasses, `key=value` overrides, and a stable identity hash.

One flow runs through `repro`:  spec -> RunConfig -> run directory -> records -> report.
This module is its lowest layer: it imports nothing from `repro` but repro.errors.
A `RunConfig` is the whole description of one training run. It is built in layers:

    dataclass defaults  <-  the model's own defaults (its paper or layer file: built by
    repro.models.registry.make_config)  <-  an ablation's base and arm  <-  `--set key=value`

Keys are either `section.field` (`optim.lr`, `model.columns`) or a bare field name that
only one section has (`lr`, `columns`). Unknown keys and values of the wrong type are
rejected with a one-line `ConfigError` that lists what is valid.

`identity()` is what makes two runs "the same run": everything that can change a result,
and nothing that only says where or how fast it runs (device, data path, threads). Its
hash names the run directory, so a finished run is never run twice.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from typing import Any

from repro.errors import ConfigError

ACTIVATIONS = ("relu", "tanh")
NORMS = ("lrn", "lrn-gain", "none", "batchnorm")
POOLINGS = ("overlapping", "non-overlapping")
LRN_CONVENTIONS = ("paper", "cuda-convnet", "caffe")
INITS = ("paper", "caffe")
DATASETS = ("cifar10", "imagenet", "folder", "synthetic")
OPTIMIZERS = ("paper-sgd", "sgd")
SCHEDULES = ("plateau", "step", "constant")


@dataclass(frozen=True)
class ModelConfig:
    """Which net, and the switches the ablations flip. Each switch applies wherever the
    layer it names exists (the 80sec net has no normalization layer to switch)."""

    name: str = "alexnet"
    num_classes: int = 1000
    input_size: int = 224  # paper §3.5 / footnote 4: 224 (227 also supported, see models/alexnet.py)
    activation: str = "relu"  # paper §3.1: ReLU; "tanh" for Figure 1
    norm: str = "lrn"  # paper §3.3; "none" removes it, "batchnorm" replaces it, "lrn-gain": alpha = 0 (its gain only)
    lrn_convention: str = "paper"  # what `alpha` means: see repro.layers.LocalResponseNorm
    pooling: str = "overlapping"  # paper §3.4: z=3, s=2; "non-overlapping": z=2, s=2
    columns: int = 2  # paper §3.2: two GPUs; 1 is footnote 2's one-GPU comparison net
    dropout: float = 0.5  # paper §4.2, on fc6 and fc7
    init: str = "paper"  # paper §5; "caffe" is bvlc_alexnet's (biases 0.1, fc6/fc7 std 0.005)
    bias_init: float | None = None  # overrides the preset's non-zero bias constant (paper: 1)


@dataclass(frozen=True)
class DataConfig:
    """Where images come from and how they are augmented (paper §2 and §4.1)."""

    dataset: str = "cifar10"
    data_dir: str | None = None  # not part of a run's identity
    subset: int | None = None  # use only the first N training images
    holdout: int = 0  # training images held out for everything adaptive (repro.data); 0: none, nothing adapts
    train_eval: int = 5000  # the fixed training slice evaluated in eval mode (the training error the paper plots)
    image_size: int | None = None  # stored size before cropping (ImageNet: 256); None: the data's own
    crop: int | None = None  # random training crop (paper: 224 of 256); None: the whole image
    flip: bool = False  # paper §4.1: horizontal reflections
    pca_noise: float = 0.0  # paper §4.1: std of the PCA colour alphas (0.1)
    test_views: int = 1  # headline test error: 1 centre crop; 10 corners + centre, flipped (paper §4.1)
    synthetic_train: int = 2048  # synthetic data only: images per split
    synthetic_test: int = 512
    synthetic_classes: int | None = None  # None: the model's num_classes


@dataclass(frozen=True)
class OptimConfig:
    """The paper's SGD (§5) and its learning-rate schedule."""

    optimizer: str = "paper-sgd"  # repro.optim.PaperSGD; "sgd" is torch.optim.SGD
    lr: float = 0.01  # paper §5
    momentum: float = 0.9  # paper §5
    weight_decay: float | None = None  # None: the model's own (alexnet 5e-4; per-layer wc in layer files)
    batch_size: int = 128  # paper §5
    schedule: str = "plateau"  # paper §5: divide by 10 when validation error stops improving
    milestones: tuple[int, ...] = ()  # "step": epochs after which the lr is multiplied by lr_factor
    lr_factor: float = 0.1
    patience: int = 1  # "plateau": epochs without improvement before a drop
    max_drops: int = 3  # paper §5: "three times prior to termination"


@dataclass(frozen=True)
class RuntimeConfig:
    """How and where a run executes. Only the numerics (`NUMERICS`) are part of its identity."""

    device: str = "auto"
    deterministic: bool = False
    channels_last: bool = True  # NHWC model and batches (faster here: `repro bench`); other rounding
    precision: str = "fp32"  # "bf16": forward under torch.autocast(bfloat16), CPU or CUDA; loss fp32
    compile: bool = False
    threads: int | None = None
    devices: str = ""  # "cuda:0,cuda:1": AlexNet's two columns on two devices (repro.placement); "": one device


@dataclass(frozen=True)
class RunConfig:
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    runtime: RuntimeConfig = field(default_factory=RuntimeConfig)
    epochs: int = 90  # paper §5: "roughly 90 cycles"
    seed: int = 0
    target_train_error: float | None = None  # stop at the evaluation whose training error reaches this (Figure 1)
    eval_every: float = 1.0  # epochs between evaluations (0 < x <= 1; 0.25: four a epoch) (repro.evaluation)
    stall_steps: int = 300  # warn if the loss still sits near ln(classes) after this many steps

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def identity(self) -> dict[str, Any]:
        """Everything that can change a result; nothing that only says where it runs."""
        d = self.to_dict()
        numerics = {k: d["runtime"][k] for k, legacy in NUMERICS.items() if d["runtime"][k] != legacy}
        del d["runtime"]
        del d["data"]["data_dir"]
        if numerics:  # absent at fp32/NCHW, so runs from before these settings keep their names
            d["runtime"] = numerics
        return d

    def hash(self) -> str:
        blob = json.dumps(self.identity(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(blob.encode()).hexdigest()[:10]


# The runtime settings that change a result (rounding), with the values every run had before
# they were settings: identity() records them only where they differ from these.
NUMERICS: dict[str, Any] = {"precision": "fp32", "channels_last": False}
PRECISIONS = ("fp32", "bf16")
LEGACY_KEYS = ("runtime.bf16",)  # old config.json files: CUDA-only autocast, replaced by runtime.precision

SECTIONS: dict[str, type] = {
    "model": ModelConfig,
    "data": DataConfig,
    "optim": OptimConfig,
    "runtime": RuntimeConfig,
}
TOP_LEVEL = ("epochs", "seed", "target_train_error", "eval_every", "stall_steps")
CHOICES: dict[str, tuple[str, ...]] = {
    "model.activation": ACTIVATIONS,
    "model.norm": NORMS,
    "model.pooling": POOLINGS,
    "model.lrn_convention": LRN_CONVENTIONS,
    "model.init": INITS,
    "data.dataset": DATASETS,
    "optim.optimizer": OPTIMIZERS,
    "optim.schedule": SCHEDULES,
    "runtime.precision": PRECISIONS,
}


@functools.cache
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def all_keys() -> list[str]:
    """Every settable key, as `section.field` or a top-level field."""
    keys = [f"{s}.{f.name}" for s, cls in SECTIONS.items() for f in fields(cls)]
    return keys + list(TOP_LEVEL)


def canonical_key(key: str) -> str:
    """`lr` -> `optim.lr`; `optim.lr` -> itself; unknown or ambiguous -> ConfigError."""
    valid = all_keys()
    if key in valid:
        return key
    matches = [k for k in valid if k.split(".")[-1] == key]
    if len(matches) == 1:
        return matches[0]
    if len(matches) > 1:
        raise ConfigError(f"ambiguous key {key!r}: say one of {', '.join(matches)}")
    raise ConfigError(f"unknown key {key!r}; valid keys: {', '.join(valid)}")


def _coerce(key: str, hint: Any, value: Any) -> Any:
    """Convert a TOML value or a command-line string to the field's type."""
    args = typing.get_args(hint)
    optional = type(None) in args
    if optional:
        if value is None or (isinstance(value, str) and value.lower() in ("none", "null")):
            return None
        hint = next(a for a in args if a is not type(None))
    origin = typing.get_origin(hint)
    try:
        if origin is tuple:
            if isinstance(value, str):  # "15,23,28" or "[15, 23, 28]"
                value = [v for v in value.replace(" ", "").strip("[]()").split(",") if v]
            return tuple(int(v) for v in value)
        if hint is bool:
            if isinstance(value, bool):
                return value
            if isinstance(value, str) and value.lower() in ("true", "1", "yes", "on"):
                return True
            if isinstance(value, str) and value.lower() in ("false", "0", "no", "off"):
                return False
            raise ValueError
        if hint is int:
            if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
                raise ValueError
            return int(value)
        if hint is float:
            if isinstance(value, bool):
                raise ValueError
            return float(value)
        if hint is str:
            if not isinstance(value, str):
                raise ValueError
            if key in CHOICES and value not in CHOICES[key]:
                raise ConfigError(f"{key}={value!r} is not valid; choose from {', '.join(CHOICES[key])}")
            return value
    except (TypeError, ValueError):
        pass
    else:
        raise ConfigError(f"{key}: unsupported field type {hint}")
    name = getattr(hint, "__name__", str(hint))
    raise ConfigError(f"{key}={value!r} is not a valid {name}{' or none' if optional else ''}")


def flatten(nested: Mapping[str, Any], where: str = "") -> dict[str, Any]:
    """{"model": {"columns": 1}, "epochs": 3} -> {"model.columns": 1, "epochs": 3}."""
    flat: dict[str, Any] = {}
    for k, v in nested.items():
        if k in SECTIONS:
            if not isinstance(v, Mapping):
                raise ConfigError(f"{where}{k} must be a table of keys")
            flat.update({f"{k}.{kk}": vv for kk, vv in v.items()})
        else:
            flat[k] = v
    return flat


def apply(cfg: RunConfig, overrides: Mapping[str, Any]) -> RunConfig:
    """Return `cfg` with `overrides` ({key: value}, keys as in `canonical_key`) applied."""
    section_changes: dict[str, dict[str, Any]] = {s: {} for s in SECTIONS}
    top_changes: dict[str, Any] = {}
    for raw_key, value in flatten(overrides).items():
        key = canonical_key(raw_key)
        if "." in key:
            section, name = key.split(".")
            section_changes[section][name] = _coerce(key, _hints(SECTIONS[section])[name], value)
        else:
            top_changes[key] = _coerce(key, _hints(RunConfig)[key], value)
    parts = {s: replace(getattr(cfg, s), **ch) for s, ch in section_changes.items() if ch}
    return replace(cfg, **parts, **top_changes)


def parse_sets(items: list[str] | None) -> dict[str, str]:
    """`["lr=0.02", "columns=1"]` -> {"lr": "0.02", "columns": "1"}."""
    out: dict[str, str] = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--set expects key=value, got {item!r}")
        out[key.strip()] = value.strip()
    return out


def from_dict(d: Mapping[str, Any]) -> RunConfig:
    """Rebuild a RunConfig from `to_dict()` output (e.g. a run directory's config.json).
    Keys of older versions (`LEGACY_KEYS`) are dropped: they were never part of a hash."""
    return apply(RunConfig(), {k: v for k, v in flatten(d).items() if k not in LEGACY_KEYS})



# Ranges: (key, test, what the value must be). Checked by `validate`, before anything runs.
RANGES: tuple[tuple[str, Any, str], ...] = (
    ("epochs", lambda c: c.epochs >= 1, "at least 1"),
    ("seed", lambda c: c.seed >= 0, "at least 0"),
    ("eval_every", lambda c: 0 < c.eval_every <= 1, "in (0, 1] epochs"),
    ("stall_steps", lambda c: c.stall_steps >= 1, "at least 1"),
    ("target_train_error", lambda c: c.target_train_error is None or 0 <= c.target_train_error < 1,
     "a fraction in [0, 1)"),
    ("optim.lr", lambda c: c.optim.lr > 0, "positive"),
    ("optim.momentum", lambda c: 0 <= c.optim.momentum < 1, "in [0, 1)"),
    ("optim.weight_decay", lambda c: c.optim.weight_decay is None or c.optim.weight_decay >= 0, "at least 0"),
    ("optim.batch_size", lambda c: c.optim.batch_size >= 1, "at least 1"),
    ("optim.lr_factor", lambda c: 0 < c.optim.lr_factor <= 1, "in (0, 1]"),
    ("optim.patience", lambda c: c.optim.patience >= 0, "at least 0"),
    ("optim.max_drops", lambda c: c.optim.max_drops >= 0, "at least 0"),
    ("optim.milestones", lambda c: all(m >= 1 for m in c.optim.milestones), "epochs of at least 1"),
    ("model.dropout", lambda c: 0 <= c.model.dropout < 1, "in [0, 1)"),
    ("model.num_classes", lambda c: c.model.num_classes >= 2, "at least 2"),
    ("model.input_size", lambda c: c.model.input_size >= 1, "at least 1"),
    ("data.train_eval", lambda c: c.data.train_eval >= 1, "at least 1"),
    ("data.holdout", lambda c: c.data.holdout >= 0, "at least 0"),
    ("data.pca_noise", lambda c: c.data.pca_noise >= 0, "at least 0"),
    ("runtime.threads", lambda c: c.runtime.threads is None or c.runtime.threads >= 1, "at least 1"),
)


def validate(cfg: RunConfig) -> RunConfig:
    """`cfg` if every number lies in its range (`RANGES`) and nothing adapts without a holdout;
    else a one-line ConfigError. Protocol §1: the plateau schedule steps on the holdout error,
    so it needs `data.holdout` > 0 (the test set is never a stand-in)."""
    for key, ok, what in RANGES:
        if not ok(cfg):
            section, _, name = key.rpartition(".")
            value = getattr(getattr(cfg, section) if section else cfg, name)
            raise ConfigError(f"{key}={value!r} is out of range: must be {what}")
    if cfg.optim.schedule == "plateau" and cfg.data.holdout == 0:
        raise ConfigError("optim.schedule=plateau steps on the holdout error, and data.holdout=0 leaves none: "
                          "set data.holdout (e.g. 5000 for CIFAR-10) or use optim.schedule=step|constant")
    return cfg
