"""Tests for repro.config: `key=value` overrides, type coercion, round trips and the run hash."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import typing
from dataclasses import dataclass
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from repro import config
from repro.config import (
    CHOICES,
    SECTIONS,
    TOP_LEVEL,
    RunConfig,
    all_keys,
    apply,
    flatten,
    from_dict,
    parse_sets,
)
from repro.errors import ConfigError
from repro.models import ENTRIES, make_config

REPO = Path(__file__).resolve().parents[1]
SETTINGS = settings(max_examples=25, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])

# RunConfig().hash(), computed once (repro 0.1.0). Changing any default of a field that is part
# of a run's identity (every field except runtime.* and data.data_dir) changes this value, and
# with it the name of every run directory: update it only on purpose. 8665a47b02 since
# runtime.channels_last became the default (issue 10); fp32/NCHW configs kept 3d1ae486e4.
# 80db9a465c (fp32/NCHW: 5cc613d799) since the evidence protocol (issue 9) added data.train_eval
# and eval_every to every run's identity: runs from before it were measured differently.
DEFAULT_HASH = "80db9a465c"
LEGACY_HASH = "5cc613d799"
# The run committed in reports/runs before the protocol change, and the hash written with it.
OLD_RUN, OLD_RUN_HASH = "cifar-80sec-cifar10-10ep", "b8aeb2654a"


def _hint(key: str):
    if "." in key:
        section, name = key.split(".")
        return typing.get_type_hints(SECTIONS[section])[name]
    return typing.get_type_hints(RunConfig)[key]


def _get(cfg: RunConfig, key: str):
    if "." in key:
        section, name = key.split(".")
        return getattr(getattr(cfg, section), name)
    return getattr(cfg, key)


# runtime.precision and runtime.channels_last change a run's rounding: they are part of its identity
NUMERICS_KEYS = [f"runtime.{k}" for k in config.NUMERICS]
IDENTITY_KEYS = [k for k in all_keys() if (not k.startswith("runtime.") or k in NUMERICS_KEYS) and k != "data.data_dir"]
NON_IDENTITY_KEYS = [k for k in all_keys() if k not in IDENTITY_KEYS]


# --------------------------------------------------------------------------- keys


def test_bare_and_dotted_keys():
    cfg = apply(RunConfig(), {"lr": "0.02", "model.columns": "1", "seed": 7, "flip": "true"})
    assert cfg.optim.lr == 0.02 and cfg.model.columns == 1 and cfg.seed == 7 and cfg.data.flip is True
    cfg2 = apply(RunConfig(), {"optim.lr": 0.02, "columns": 1, "seed": "7", "data.flip": True})
    assert cfg2 == cfg
    # nested tables (TOML form) flatten to the same keys
    nested = {"optim": {"lr": 0.02}, "model": {"columns": 1}, "seed": 7, "data": {"flip": True}}
    assert apply(RunConfig(), nested) == cfg
    # untouched fields keep their defaults; the input is not mutated
    assert cfg.optim.momentum == 0.9 and cfg.model.name == "alexnet"
    assert RunConfig().optim.lr == 0.01


def test_every_key_is_settable_bare_and_dotted():
    assert len(all_keys()) == len(set(all_keys()))
    assert set(TOP_LEVEL) <= set(all_keys())
    for key in all_keys():
        bare = key.split(".")[-1]
        assert config.canonical_key(key) == key
        assert config.canonical_key(bare) == key  # no field name is shared by two sections today


@pytest.mark.parametrize("key", ["learning_rate", "optim.learning_rate", "model.lr", "", "opt.lr", "runtime.lr"])
def test_unknown_key_lists_valid_keys(key):
    with pytest.raises(ConfigError) as e:
        apply(RunConfig(), {key: "1"})
    msg = str(e.value)
    assert "\n" not in msg and "unknown key" in msg
    for k in all_keys():
        assert k in msg


def test_ambiguous_key(monkeypatch):
    @dataclass(frozen=True)
    class Extra:
        lr: float = 0.0

    monkeypatch.setitem(SECTIONS, "extra", Extra)
    with pytest.raises(ConfigError) as e:
        apply(RunConfig(), {"lr": "0.5"})
    msg = str(e.value)
    assert "ambiguous" in msg and "optim.lr" in msg and "extra.lr" in msg and "\n" not in msg
    assert config.canonical_key("optim.lr") == "optim.lr"  # the dotted form still works


def test_section_must_be_a_table():
    for bad in ({"model": 3}, {"runtime": "1"}):
        with pytest.raises(ConfigError) as e:
            apply(RunConfig(), bad)
        assert "table" in str(e.value)
    assert flatten({"model": {"columns": 1}, "epochs": 3}) == {"model.columns": 1, "epochs": 3}


# --------------------------------------------------------------------------- coercion


@pytest.mark.parametrize("key,value,expected", [
    ("epochs", "12", 12), ("epochs", 12, 12), ("epochs", 12.0, 12), ("columns", " 1", 1),
    ("lr", "1e-3", 1e-3), ("lr", 1, 1.0), ("lr", "0.5", 0.5), ("momentum", 0, 0.0),
    ("flip", "true", True), ("flip", "True", True), ("flip", "1", True), ("flip", "yes", True), ("flip", "on", True),
    ("flip", "false", False), ("flip", "0", False), ("flip", "no", False), ("flip", "OFF", False),
    ("flip", False, False),
    ("bias_init", "none", None), ("bias_init", "None", None), ("bias_init", "null", None), ("bias_init", None, None),
    ("bias_init", "0.1", 0.1), ("weight_decay", "0", 0.0), ("subset", "none", None), ("subset", "100", 100),
    ("data_dir", "none", None), ("data_dir", "/tmp/x", "/tmp/x"), ("target_train_error", "0.25", 0.25),
    ("milestones", "8,16", (8, 16)), ("milestones", "8", (8,)), ("milestones", "", ()),
    ("milestones", " 8 , 16 ", (8, 16)), ("milestones", [8, 16], (8, 16)), ("milestones", (120, 130), (120, 130)),
    ("activation", "tanh", "tanh"), ("device", "cuda:1", "cuda:1"),
])
def test_coercion(key, value, expected):
    got = _get(apply(RunConfig(), {key: value}), config.canonical_key(key))
    assert got == expected and type(got) is type(expected)


@pytest.mark.parametrize("key,value", [
    ("epochs", "twelve"), ("epochs", "1.5"), ("epochs", 1.5), ("epochs", True), ("epochs", "none"), ("epochs", None),
    ("lr", "fast"), ("lr", True), ("lr", None), ("flip", "maybe"), ("flip", 2), ("flip", "none"),
    ("columns", "2.0"), ("milestones", "a,b"), ("milestones", "8;16"), ("activation", 1), ("activation", None),
    ("subset", "ten"), ("bias_init", "one"), ("flip", 1),  # TOML has real booleans; ints are not bools
])
def test_bad_values_are_one_line_config_errors(key, value):
    with pytest.raises(ConfigError) as e:
        apply(RunConfig(), {key: value})
    assert "\n" not in str(e.value) and config.canonical_key(key) in str(e.value)


@pytest.mark.parametrize("key", sorted(CHOICES))
def test_choices_are_validated(key):
    for choice in CHOICES[key]:
        assert _get(apply(RunConfig(), {key: choice}), key) == choice
    with pytest.raises(ConfigError) as e:
        apply(RunConfig(), {key: "no-such-choice"})
    assert all(c in str(e.value) for c in CHOICES[key])


def test_choices_match_the_modules_that_use_them():
    from repro import layers

    assert CHOICES["model.lrn_convention"] == layers.LRN_CONVENTIONS
    assert CHOICES["model.activation"] == ("relu", "tanh")
    assert CHOICES["model.norm"] == ("lrn", "lrn-gain", "none", "batchnorm")
    assert CHOICES["model.pooling"] == ("overlapping", "non-overlapping")


# --------------------------------------------------------------------------- parse_sets


def test_parse_sets():
    assert parse_sets(["lr=0.02", "columns=1"]) == {"lr": "0.02", "columns": "1"}
    assert parse_sets([" lr = 0.02 ", "milestones=8,16", "x=a=b"]) == {"lr": "0.02", "milestones": "8,16", "x": "a=b"}
    assert parse_sets(["bias_init="]) == {"bias_init": ""}
    assert parse_sets(None) == {} and parse_sets([]) == {}
    assert parse_sets(["lr=1", "lr=2"]) == {"lr": "2"}  # the last one wins
    for bad in ("lr", "=0.1", " =1", ""):
        with pytest.raises(ConfigError):
            parse_sets([bad])


# --------------------------------------------------------------------------- round trip


def _value_strategy(key: str):
    hint = _hint(key)
    args = typing.get_args(hint)
    optional = type(None) in args
    if optional:
        hint = next(a for a in args if a is not type(None))
    if key in CHOICES:
        s = st.sampled_from(CHOICES[key])
    elif hint is bool:
        s = st.booleans()
    elif hint is int:
        s = st.integers(-(10**9), 10**9)
    elif hint is float:
        s = st.floats(allow_nan=False, allow_infinity=False)
    elif hint is str:
        # an optional str spelled "none"/"null" reads back as None (see the report on data_dir)
        s = st.text(max_size=12).filter(lambda t: not optional or t.strip().lower() not in ("none", "null"))
    elif typing.get_origin(hint) is tuple:
        s = st.lists(st.integers(0, 10**6), max_size=4).map(tuple)
    else:
        raise AssertionError(f"no strategy for {key}: {hint}")
    return st.one_of(st.none(), s) if optional else s


@st.composite
def run_configs(draw) -> RunConfig:
    values = {k: draw(_value_strategy(k)) for k in all_keys()}
    sections = {
        s: cls(**{f.name: values[f"{s}.{f.name}"] for f in dataclasses.fields(cls)}) for s, cls in SECTIONS.items()
    }
    return RunConfig(**sections, **{k: values[k] for k in TOP_LEVEL})


@SETTINGS
@given(cfg=run_configs())
def test_round_trip_through_dict_and_json(cfg):
    assert from_dict(cfg.to_dict()) == cfg
    # what a run directory's config.json holds: tuples become lists, and come back as tuples
    again = from_dict(json.loads(json.dumps(cfg.to_dict())))
    assert again == cfg and again.hash() == cfg.hash()


@SETTINGS
@given(cfg=run_configs())
def test_apply_of_to_dict_is_identity(cfg):
    assert apply(cfg, cfg.to_dict()) == cfg
    assert apply(cfg, {}) == cfg


# --------------------------------------------------------------------------- hash


def _other_value(key: str, current):
    """A valid value for `key` that differs from `current`."""
    hint = _hint(key)
    args = typing.get_args(hint)
    if type(None) in args:
        if current is not None:
            return None
        hint = next(a for a in args if a is not type(None))
    if key in CHOICES:
        return next(c for c in CHOICES[key] if c != current)
    if hint is bool:
        return not current
    if hint is int:
        return (current or 0) + 1
    if hint is float:
        return (current or 0.0) + 0.5
    if hint is str:
        return (current or "") + "x"
    if typing.get_origin(hint) is tuple:
        return (*(current or ()), 99)
    raise AssertionError(key)


def test_default_hash_is_pinned():
    assert RunConfig().hash() == DEFAULT_HASH
    assert apply(RunConfig(), {"channels_last": False}).hash() == LEGACY_HASH
    assert RunConfig().hash() == RunConfig().hash()
    assert len(DEFAULT_HASH) == 10


def test_hash_is_stable_across_processes():
    code = "from repro.config import RunConfig; print(RunConfig().hash())"
    for seed in ("0", "12345"):  # str hashing is randomized per process unless pinned
        env = dict(os.environ, PYTHONHASHSEED=seed)
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
        assert out.stdout.strip() == DEFAULT_HASH


@pytest.mark.parametrize("key", IDENTITY_KEYS)
def test_every_identity_field_changes_the_hash(key):
    base = RunConfig()
    changed = apply(base, {key: _other_value(key, _get(base, key))})
    assert changed != base and changed.hash() != base.hash()


@pytest.mark.parametrize("key", NON_IDENTITY_KEYS)
def test_runtime_and_data_dir_do_not_change_the_hash(key):
    base = RunConfig()
    changed = apply(base, {key: _other_value(key, _get(base, key))})
    assert changed != base and changed.hash() == base.hash()
    assert changed.identity() == base.identity()


@SETTINGS
@given(a=st.integers(0, 2**63), b=st.integers(0, 2**63))
def test_hash_changes_with_seed(a, b):
    ha, hb = apply(RunConfig(), {"seed": a}).hash(), apply(RunConfig(), {"seed": b}).hash()
    assert (ha == hb) == (a == b)


@SETTINGS
@given(cfg=run_configs(), data=st.data())
def test_hash_ignores_runtime_for_any_config(cfg, data):
    other = data.draw(run_configs())
    data_dir = other.data.data_dir
    numerics = {k: getattr(cfg.runtime, k) for k in config.NUMERICS}
    runtime = dataclasses.replace(other.runtime, **numerics)
    moved = dataclasses.replace(cfg, runtime=runtime, data=dataclasses.replace(cfg.data, data_dir=data_dir))
    assert moved.hash() == cfg.hash()
    assert set(cfg.identity().get("runtime", {})) <= set(config.NUMERICS) and "data_dir" not in cfg.identity()["data"]


def test_numerics_enter_the_identity_only_where_they_differ_from_fp32_nchw():
    """Runs from before runtime.precision / channels_last keep their hashes (and directories)."""
    legacy = apply(RunConfig(), {"runtime.precision": "fp32", "runtime.channels_last": False})
    assert "runtime" not in legacy.identity()
    bf16 = apply(legacy, {"runtime.precision": "bf16"})
    assert bf16.identity()["runtime"] == {"precision": "bf16"} and bf16.hash() != legacy.hash()
    both = apply(bf16, {"runtime.channels_last": True, "runtime.threads": 3})
    assert both.identity()["runtime"] == {"precision": "bf16", "channels_last": True}


def test_old_config_json_with_bf16_key_reads_back_with_its_recorded_hash():
    old = RunConfig().to_dict()
    del old["runtime"]["precision"]
    old["runtime"] |= {"bf16": True, "channels_last": False}  # what repro wrote before runtime.precision
    legacy = from_dict(old)
    assert legacy.runtime.precision == "fp32" and legacy.hash() == apply(RunConfig(), {"channels_last": False}).hash()
    stored = sorted((REPO / "reports" / "runs").glob("*/config.json"))
    for path in stored:  # every committed record reads back into a RunConfig
        c = json.loads(path.read_text())
        cfg = from_dict(c["config"])
        assert isinstance(cfg, RunConfig) and cfg.model.name == c["config"]["model"]["name"], path
        if path.parent.name == OLD_RUN:
            # Made before the protocol change (issue 9): its config has no data.train_eval or eval_every, so it
            # reads back with today's defaults and cannot keep its hash; its record keeps the hash written then.
            assert c["hash"] == OLD_RUN_HASH and cfg.hash() != OLD_RUN_HASH
            assert json.loads((path.parent / "summary.json").read_text())["hash"] == OLD_RUN_HASH
        else:  # runs recorded since keep the names they were stored under
            assert cfg.hash() == c["hash"], path
    assert OLD_RUN in [p.parent.name for p in stored]


@pytest.mark.parametrize("value", ["fp16", "BF16", "float32", ""])
def test_precision_choices_are_one_line_errors(value):
    with pytest.raises(ConfigError, match="runtime.precision.*fp32, bf16") as e:
        apply(RunConfig(), {"precision": value})
    assert "\n" not in str(e.value)


# --------------------------------------------------------------------------- make_config


def test_make_config_applies_the_registry_defaults():
    c = make_config("cifar-80sec")
    assert c.model.name == "cifar-80sec" and c.model.num_classes == 10 and c.model.input_size == 32
    assert c.model.columns == 1 and c.model.dropout == 0.0
    assert c.optim.lr == 0.001 and c.optim.milestones == (8,) and c.optim.schedule == "step"
    assert c.optim.momentum == 0.9 and c.optim.batch_size == 128 and c.epochs == 10
    assert c.data.dataset == "cifar10"
    a = make_config("alexnet")
    assert (a.model.num_classes, a.model.input_size, a.model.columns) == (1000, 224, 2)
    assert a.data.dataset == "imagenet" and a.data.image_size == 256 and a.data.flip and a.data.test_views == 10
    assert a.optim.lr == 0.01 and a.optim.schedule == "plateau" and a.optim.max_drops == 3 and a.epochs == 90
    assert make_config("cifar-11pct").model.lrn_convention == "cuda-convnet"
    assert make_config("cifar-18pct").optim.milestones == (120, 130)


def test_make_config_overrides_come_after_the_defaults():
    c = make_config("cifar-80sec", {"lr": "0.01", "optim.milestones": "3,6"})
    assert c.optim.lr == 0.01 and c.optim.milestones == (3, 6) and c.model.num_classes == 10
    assert make_config("cifar-80sec").hash() != make_config("cifar-18pct").hash()


def test_make_config_rejects_bad_model_and_name_override():
    with pytest.raises(ConfigError) as e:
        make_config("resnet")
    assert "resnet" in str(e.value) and "alexnet" in str(e.value) and "cifar-80sec" in str(e.value)
    with pytest.raises(ConfigError):
        make_config("alexnet", {"model.name": "cifar-80sec"})
    with pytest.raises(ConfigError):
        make_config("alexnet", {"no_such_key": 1})


def test_every_registry_entry_has_valid_defaults():
    for name, entry in ENTRIES.items():
        cfg = make_config(name)
        for key, value in entry.defaults.items():
            got = _get(cfg, key)
            assert got == (tuple(value) if isinstance(value, (list, tuple)) else value), (name, key)


# --------------------------------------------------------------------------- validate

VALID = apply(RunConfig(), {"data.holdout": 5000})  # the defaults, with the holdout the plateau schedule reads
# Per RANGES key: values just outside its range, and values on its edge that are fine.
OUT_OF_RANGE: dict[str, list] = {
    "epochs": [0, -1], "seed": [-1], "eval_every": [0.0, -0.25, 1.5], "stall_steps": [0],
    "target_train_error": [1.0, -0.1], "optim.lr": [0.0, -0.01], "optim.momentum": [1.0, -0.1],
    "optim.weight_decay": [-1e-4], "optim.batch_size": [0], "optim.lr_factor": [0.0, 1.5], "optim.patience": [-1],
    "optim.max_drops": [-1], "optim.milestones": [(0,), (3, 0)], "model.dropout": [1.0, -0.1],
    "model.num_classes": [1], "model.input_size": [0], "data.train_eval": [0], "data.holdout": [-1],
    "data.pca_noise": [-0.1], "runtime.threads": [0],
}
IN_RANGE: dict[str, list] = {
    "epochs": [1], "seed": [0], "eval_every": [1.0, 1e-3], "stall_steps": [1], "target_train_error": [0.0, None],
    "optim.lr": [1e-9], "optim.momentum": [0.0], "optim.weight_decay": [0.0, None], "optim.batch_size": [1],
    "optim.lr_factor": [1.0], "optim.patience": [0], "optim.max_drops": [0], "optim.milestones": [(1,), ()],
    "model.dropout": [0.0], "model.num_classes": [2], "model.input_size": [1], "data.train_eval": [1],
    "data.holdout": [1], "data.pca_noise": [0.0], "runtime.threads": [1, None],
}
RANGE_KEYS = [key for key, _, _ in config.RANGES]


def test_validate_passes_a_valid_config_through():
    assert config.validate(VALID) is VALID


@pytest.mark.parametrize("key", RANGE_KEYS)
def test_validate_rejects_out_of_range_values(key):
    for value in OUT_OF_RANGE[key]:
        cfg = apply(VALID, {key: value})
        with pytest.raises(ConfigError) as e:
            config.validate(cfg)
        msg = str(e.value)
        assert "\n" not in msg and msg.startswith(f"{key}=") and "out of range" in msg, (value, msg)


@pytest.mark.parametrize("key", RANGE_KEYS)
def test_validate_accepts_values_on_the_edge_of_the_range(key):
    for value in IN_RANGE[key]:
        cfg = apply(VALID, {key: value})
        assert config.validate(cfg) is cfg, value


def test_every_range_has_test_values():
    assert set(OUT_OF_RANGE) == set(IN_RANGE) == set(RANGE_KEYS)
    assert all(k in all_keys() for k in RANGE_KEYS)


def test_validate_refuses_plateau_without_a_holdout():
    """Protocol §1: the plateau schedule steps on the holdout error; without one it would need the test set."""
    cfg = apply(VALID, {"data.holdout": 0})
    assert cfg.optim.schedule == "plateau"
    with pytest.raises(ConfigError) as e:
        config.validate(cfg)
    msg = str(e.value)
    assert "\n" not in msg and "optim.schedule=plateau" in msg and "data.holdout" in msg
    for schedule in ("step", "constant"):  # nothing adapts: no holdout needed
        other = apply(cfg, {"optim.schedule": schedule})
        assert config.validate(other) is other


@pytest.mark.parametrize("name", sorted(ENTRIES))
def test_every_registry_entry_validates(name):
    """Every model's own defaults can be trained as they are (alexnet and alexnet-cifar: with their holdouts)."""
    cfg = make_config(name)
    assert config.validate(cfg) is cfg
    if cfg.optim.schedule == "plateau":
        assert cfg.data.holdout > 0
