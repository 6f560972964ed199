"""Tests for repro.spec_file: the shipped ablation specs, a TOML round trip, and every kind of bad spec."""

from __future__ import annotations

import copy
import dataclasses
import math
import re
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from repro import config as rc
from repro import spec_file
from repro.errors import ConfigError
from repro.models import registry
from tests.fixtures.toml_writer import dumps

REPO = Path(__file__).resolve().parents[1]

FACTS = REPO.parent / "shared" / "reference" / "alexnet-facts.md"
SHIPPED = ["activation", "activation-19pct", "bias-init", "dropout", "gpus", "lrn", "lrn-vs-batchnorm", "pca-colour",
           "pooling", "precision", "precision-80sec", "ten-crop"]
NOT_THE_PAPER = "not in the paper"  # a claim's section starting so is the project's own check (precision)


# ----------------------------------------------------------------------------- the shipped specs


def test_shipped_specs_load():
    assert spec_file.names() == SHIPPED
    for name in SHIPPED:
        spec = spec_file.load(name)
        assert spec.name == name and set(spec.scales) == set(spec_file.SCALES)
        assert spec.baseline in spec.arms and len(spec.sha256) == 64
        for s in spec_file.SCALES:  # every arm makes a valid config at every scale
            for arm in spec.arms:
                cfg = spec.config(arm, s, seed=0, grid_value=(spec.grid(arm, s) or (None,))[0])
                assert cfg.model.name == spec.scales[s].model
        assert spec.claims, name


def test_shipped_quotes_are_exact():
    """Each claim's quote appears word for word in the facts file (markdown bold removed)."""
    if not FACTS.is_file():
        pytest.skip(f"{FACTS} not beside the repository")
    facts = " ".join(FACTS.read_text(encoding="utf-8").replace("**", "").split())
    for name in SHIPPED:
        for c in spec_file.load(name).claims:
            if not c.section.startswith(NOT_THE_PAPER):
                assert " ".join(c.quote.split()) in facts, (name, c.quote)


def test_shipped_smoke_scales_are_synthetic_and_small():
    for name in SHIPPED:
        spec = spec_file.load(name)
        for arm in spec.arms:
            cfg = spec.config(arm, "smoke", 0, (spec.grid(arm, "smoke") or (None,))[0])
            assert cfg.data.dataset == "synthetic" and cfg.data.synthetic_train <= 1024 and cfg.epochs <= 8


def test_key_specs():
    act = spec_file.load("activation")
    relu = act.config("relu", "cifar", 0, 0.002)
    tanh = act.config("tanh", "cifar", 0, 0.002)
    assert (relu.model.activation, tanh.model.activation) == ("relu", "tanh")
    assert relu.target_train_error == 0.25 and relu.optim.weight_decay == 0.0 and relu.model.dropout == 0.0
    assert relu.data.flip is False and relu.optim.lr == 0.002 and relu.model.name == "cifar-80sec"
    assert act.selection.key == "optim.lr" and act.claims[0].paper == 6.0 and act.claims[0].unit == "x"
    assert act.claims[0].band == pytest.approx((3.0, 12.0))  # 6x within a factor of 2: log-symmetric
    lrn = spec_file.load("lrn")
    assert lrn.config("none", "cifar", 0).model.norm == "none"
    assert lrn.config("lrn-gain", "cifar", 0).model.norm == "lrn-gain"  # the constant-gain control (protocol §6)
    assert lrn.config("lrn", "cifar", 0).model.name == "alexnet-cifar"
    assert "13%" in lrn.notes and "facts §5d" in lrn.notes  # the 13pct/11pct caveat (facts §8.4)
    assert [c.paper for c in lrn.claims_for("imagenet")] == [-1.4, -1.2]
    assert [(c.arm, c.against, c.test, c.kind, c.margin) for c in lrn.claims_for("cifar")] == [
        ("lrn", "none", "paired", "direction", 0.5), ("lrn", "lrn-gain", "paired", "direction", 0.5)]
    assert spec_file.load("gpus").config("one", "imagenet", 0).model.columns == 1
    assert {c.test for c in spec_file.load("gpus").claims} == {"welch"}


# the paper arm of each ablation on the shared cifar recipe (issue 12)
SHARED_BASELINES = {"lrn": "lrn", "pooling": "overlapping", "gpus": "two", "pca-colour": "on", "dropout": "dropout",
                    "ten-crop": "centre", "precision": "fp32"}


def test_cifar_baselines_are_one_run():
    """The shared cifar baseline hashes equal across ablations, so it trains once (find_identical)."""
    cfgs = {n: spec_file.load(n).config(arm, "cifar", 0) for n, arm in SHARED_BASELINES.items()}
    assert len({c.hash() for c in cfgs.values()}) == 1, {n: c.hash() for n, c in cfgs.items()}
    c = cfgs["lrn"]
    assert (c.model.name, c.epochs, c.optim.schedule, c.optim.milestones, c.optim.lr) == \
        ("alexnet-cifar", 30, "step", (15, 23, 28), 0.01)
    assert (c.data.pca_noise, c.data.flip, c.data.holdout, c.data.train_eval) == (0.1, True, 5000, 5000)
    assert [spec_file.load(n).scales["cifar"].seeds for n in ("lrn", "pooling", "gpus")] == [15, 20, 5]
    assert spec_file.load("pca-colour").scales["cifar"].seeds >= 8  # issue 12.2: at least 8 (15 since 2026-12-03)


def test_bias_init_is_the_shared_recipes_first_epochs_evaluated_densely():
    """Protocol §6: the claim is about early learning, so 4 evaluations an epoch for 6 epochs,
    at the shared recipe's lr (constant until its first drop at epoch 15) and data."""
    shared = spec_file.load("lrn").config("lrn", "cifar", 0)
    one = spec_file.load("bias-init").config("one", "cifar", 0)
    assert (one.epochs, one.eval_every, one.optim.schedule, one.optim.lr) == (6, 0.25, "constant", 0.01)
    assert one.epochs < shared.optim.milestones[0] and one.optim.lr == shared.optim.lr
    assert (one.model, one.data) == (shared.model, shared.data)


def test_every_cifar_scale_holds_out_5000():
    for name in SHIPPED:
        spec = spec_file.load(name)
        for arm in spec.training_arms:
            cfg = spec.config(arm, "cifar", 0, (spec.grid(arm, "cifar") or (None,))[0])
            if name != "activation":  # Figure 1's subset: 5,000 train + 1,000 holdout
                assert cfg.data.holdout == 5000, name
            assert cfg.data.train_eval == 5000
        for s in spec_file.SCALES:
            spec.check_scale(s)  # nothing shipped adapts without a holdout


def test_ten_crop_is_an_evaluation_arm():
    spec = spec_file.load("ten-crop")
    assert spec.training_arms == ["centre"] and spec.arms["ten"].evaluate == spec_file.Evaluate("centre", 10)
    assert spec.trained_by("ten") == "centre" and spec.deltas("ten", "cifar") == spec.deltas("centre", "cifar")


# ----------------------------------------------------------------------------- round trip

IDENT = st.from_regex(r"[a-z][a-z0-9_-]{0,7}", fullmatch=True)
TEXT = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=20)
FINITE = dict(allow_nan=False, allow_infinity=False)
DELTAS = st.fixed_dictionaries({}, optional={
    "model.norm": st.sampled_from(rc.NORMS),
    "model.pooling": st.sampled_from(rc.POOLINGS),
    "model.activation": st.sampled_from(rc.ACTIVATIONS),
    "optim.lr": st.floats(1e-5, 1.0, **FINITE),
    "model.dropout": st.floats(0.0, 0.9, **FINITE),
    "data.flip": st.booleans(),
    "optim.milestones": st.lists(st.integers(1, 100), max_size=3),
    "epochs": st.integers(1, 50),
    "target_train_error": st.floats(0.01, 0.99, **FINITE),
})
GRID = st.lists(st.floats(1e-5, 1.0, **FINITE), min_size=1, max_size=3, unique=True)


@st.composite
def spec_dicts(draw) -> dict:
    arm_names = draw(st.lists(IDENT, min_size=2, max_size=3, unique=True))
    selection = draw(st.booleans())
    arms = {}
    for a in arm_names:
        arms[a] = {"about": draw(TEXT), "set": draw(DELTAS)}
        if selection:
            arms[a]["grid"] = draw(GRID)
    d: dict = {"title": draw(TEXT), "section": draw(TEXT), "question": draw(TEXT), "notes": draw(TEXT),
               "baseline": draw(st.sampled_from(arm_names)),
               "metrics": draw(st.lists(st.sampled_from(list(spec_file.METRICS)), min_size=1, max_size=3, unique=True)),
               "base": draw(DELTAS), "arms": arms}
    if draw(st.booleans()):
        d["target"] = draw(st.floats(0.01, 0.99, **FINITE))
    if selection:
        d["selection"] = {"key": "optim.lr", "by": "epochs_to_target"}
    claims = []
    for _ in range(draw(st.integers(0, 3))):
        arm, against = draw(st.permutations(arm_names))[:2]
        unit = draw(st.sampled_from(spec_file.UNITS))
        kind = draw(st.sampled_from(spec_file.KINDS))
        metric = draw(st.sampled_from([m for m in spec_file.METRICS if m not in spec_file.TOP5_METRICS]))
        c = {"arm": arm, "against": against, "metric": metric, "unit": unit, "test": draw(st.sampled_from(
             spec_file.TESTS)), "kind": kind, "section": draw(TEXT), "quote": draw(TEXT), "source": draw(TEXT),
             "tolerance": draw(st.floats(1 if unit == "x" else 0, 10, **FINITE))}
        if kind == "no-effect" or draw(st.booleans()):  # a no-effect claim requires its margin
            c["margin"] = draw(st.floats(1.01, 3, **FINITE) if unit == "x" else st.floats(0.01, 3, **FINITE))
        if kind == "no-effect":
            del c["tolerance"]  # neither paper, direction nor tolerance: the margin is its band
        elif kind == "direction":
            c["direction"] = draw(st.sampled_from(spec_file.DIRECTIONS))
        elif unit == "x":
            c["paper"] = draw(st.floats(0.01, 100, **FINITE).filter(lambda x: x != 1.0))
        else:
            c["paper"] = draw(st.floats(-50, 50, **FINITE).filter(lambda x: x != 0.0))
        if draw(st.booleans()):
            c["scales"] = draw(st.lists(st.sampled_from(spec_file.SCALES), min_size=1, unique=True))
        if draw(st.booleans()):
            c["note"] = draw(TEXT)
        claims.append(c)
    d["claims"] = claims
    scales = {}
    for s in spec_file.SCALES:
        sc = {"model": draw(st.sampled_from(list(registry.ENTRIES))), "seeds": draw(st.integers(1, 5)),
              "set": draw(DELTAS), "notes": draw(TEXT)}
        over = {}
        for a in draw(st.lists(st.sampled_from(arm_names), unique=True, max_size=2)):
            over[a] = {"set": draw(DELTAS)}
            if selection and draw(st.booleans()):
                over[a]["grid"] = draw(GRID)
        if over:
            sc["arms"] = over
        scales[s] = sc
    d["scales"] = scales
    return d


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(spec_dicts())
def test_round_trip(d):
    text = dumps(d)
    spec = spec_file.loads(text, "ablations/rt.toml")
    assert dataclasses.replace(spec, sha256="") == spec_file.parse(d, "ablations/rt.toml", "rt")
    # and the parsed spec says what the dict said
    assert list(spec.arms) == list(d["arms"]) and spec.baseline == d["baseline"]
    assert spec.metrics == tuple(d["metrics"]) and spec.title == d["title"].strip()
    for arm, raw in d["arms"].items():
        assert spec.arms[arm].set == raw["set"] and spec.arms[arm].about == raw["about"].strip()
        assert spec.arms[arm].grid == tuple(raw.get("grid", ()))
    for c, raw in zip(spec.claims, d["claims"], strict=True):
        assert (c.arm, c.against, c.metric, c.unit, c.kind) == (raw["arm"], raw["against"], raw["metric"],
                                                                raw["unit"], raw["kind"])
        assert c.paper == raw.get("paper") and c.tolerance == raw.get("tolerance", 0.0)
        assert c.quote == raw["quote"].strip()
        assert c.test == raw["test"] and c.margin == raw.get("margin")
        assert c.scales == tuple(raw.get("scales", spec_file.SCALES))
    for s, raw in d["scales"].items():
        assert spec.scales[s].model == raw["model"] and spec.scales[s].seeds == raw["seeds"]
        cfg = spec.config(d["baseline"], s, seed=3, grid_value=(spec.grid(d["baseline"], s) or (None,))[0])
        assert cfg.seed == 3 and cfg.model.name == raw["model"]
    if spec.selection:  # the grid value wins over every delta
        for a in spec.arms:
            for v in spec.grid(a, "smoke"):
                assert spec.config(a, "smoke", 0, v).optim.lr == v


# ----------------------------------------------------------------------------- bad specs


def _valid() -> dict:
    return {
        "title": "t", "section": "§1", "question": "q", "baseline": "off", "metrics": ["test_error"],
        "arms": {"on": {"about": "a", "set": {"model.norm": "lrn"}}, "off": {"set": {"model.norm": "none"}}},
        "claims": [{"arm": "on", "against": "off", "metric": "test_error", "test": "paired", "unit": "pp",
                    "paper": -1.4, "tolerance": 1.0, "section": "§3.3", "quote": "q", "source": "s"}],
        "scales": {s: {"model": "alexnet-cifar", "seeds": 2, "set": {"epochs": 2}} for s in spec_file.SCALES},
    }


def _set(d: dict, path: str, value) -> dict:
    d = copy.deepcopy(d)
    *parents, last = path.split("/")
    node = d
    for p in parents:
        node = node[int(p)] if isinstance(node, list) else node[p]
    if value is _DELETE:
        del node[last]
    else:
        node[last] = value
    return d


_DELETE = object()

BAD = [
    # (change as path=value, what the message must contain)
    ("titel", "t", r"\(top level\)|titel: unknown key"),
    ("title", _DELETE, r"title: missing"),
    ("title", 3, r"title: must be str"),
    ("arms/on/sett", {}, r"arms\.on\.sett: unknown key"),
    ("arms/on/set", {"model.nrom": "lrn"}, r"arms\.on\.set: unknown key 'model\.nrom'"),
    ("arms/on/set", {"model.norm": "group"}, r"arms\.on\.set: model\.norm='group' is not valid"),
    ("arms/on/set", {"optim.lr": "fast"}, r"arms\.on\.set: optim\.lr='fast' is not a valid float"),
    ("arms/on/set", {"seed": 3}, r"arms\.on\.set: seed: set by the runner"),
    ("arms/on/set", {"model.name": "alexnet"}, r"arms\.on\.set: model\.name: the model is chosen by scales"),
    ("arms", {"on": {}}, r"arms: needs at least two arms"),
    ("arms/on/grid", [0.1], r"arms\.on\.grid: needs a \[selection\]"),
    ("baseline", "both", r"baseline: 'both' is not an arm"),
    ("metrics", ["val_error"], r"metrics: 'val_error' is not valid"),  # no "val" any more
    ("metrics", [], r"metrics: must name at least one"),
    ("metrics", ["test_error", "test_error"], r"metrics: has duplicates"),
    ("claims/0/test", _DELETE, r"claims\[0\]\.test: missing \(required\): declare \"paired\" or \"welch\""),
    ("claims/0/test", "t-test", r"claims\[0\]\.test: 't-test' is not valid"),
    ("claims/0/margin", 0, r"claims\[0\]\.margin: 0 is not valid"),
    ("claims/0/metric", "test_top5_error", r"claims\[0\]\.metric: test_top5_error with 10 classes .*smoke/cifar"),
    ("arms/on/evaluate", {"of": "on", "views": 10}, r"arms\.on\.evaluate\.of: 'on' is not a training arm"),
    ("arms/on/evaluate", {"of": "off", "views": 5}, r"arms\.on\.evaluate\.views: 5 is not valid"),
    ("arms/on/evaluate", {"of": "off", "views": 10}, r"arms\.on\.evaluate: an evaluation arm trains nothing"),
    ("target", 25, r"target: 25\.0 is not valid"),
    ("claims/0/arm", "up", r"claims\[0\]\.arm: 'up' is not an arm"),
    ("claims/0/against", "on", r"claims\[0\]\.against: must differ"),
    ("claims/0/unit", "percent", r"claims\[0\]\.unit: 'percent' is not valid"),
    ("claims/0/kind", "roughly", r"claims\[0\]\.kind: 'roughly' is not valid"),
    ("claims/0/metric", "loss", r"claims\[0\]\.metric: 'loss' is not valid"),
    ("claims/0/quote", _DELETE, r"claims\[0\]\.quote: missing"),
    ("claims/0/tolerance", -1, r"claims\[0\]\.tolerance: -1\.0 is not valid"),
    ("claims/0/tolerance", float("nan"), r"claims\[0\]\.tolerance: nan is not valid"),
    ("claims/0/paper", 0.0, r"claims\[0\]\.paper: 0 means no effect"),
    ("claims/0/paper", True, r"claims\[0\]\.paper: must be int or float, got bool"),
    ("claims/0/direction", "lower", r"claims\[0\]\.direction: only with kind"),
    ("claims/0/kind", "direction", r"claims\[0\]\.paper: not used with kind"),
    ("claims/0/kind", "no-effect", r"claims\[0\]\.paper: not used with kind = \"no-effect\" \(its band"),
    ("claims/0/scales", ["tiny"], r"claims\[0\]\.scales: 'tiny' is not valid"),
    ("claims/0/colour", "red", r"claims\[0\]\.colour: unknown key"),
    ("scales/imagenet", _DELETE, r"scales\.imagenet: missing"),
    ("scales/huge", {"model": "alexnet", "seeds": 1}, r"scales\.huge: unknown key"),
    ("scales/smoke/model", "resnet", r"scales\.smoke\.model: unknown model 'resnet'"),
    ("scales/smoke/seeds", 0, r"scales\.smoke\.seeds: 0 is not valid"),
    ("scales/smoke/seeds", "3", r"scales\.smoke\.seeds: must be int, got str"),
    ("scales/smoke/set", {"epochs": 1.5}, r"scales\.smoke\.set: epochs=1\.5 is not a valid int"),
    ("scales/smoke/arms", {"middle": {}}, r"scales\.smoke\.arms\.middle: unknown key"),
    ("scales/smoke/arms", {"on": {"sett": {}}}, r"scales\.smoke\.arms\.on\.sett: unknown key"),
    ("selection", {"key": "optim.lrr"}, r"selection\.key: unknown key 'optim\.lrr'"),
    ("selection", {"key": "optim.lr", "by": "speed"}, r"selection\.by: 'speed' is not valid"),
    ("selection", {"key": "optim.lr"}, r"arms\.on\.grid: missing \(required with \[selection\]"),
]


@pytest.mark.parametrize("path,value,pattern", BAD, ids=[f"{p}={v!r}"[:40] for p, v, _ in BAD])
def test_bad_spec(path, value, pattern):
    d = _set(_valid(), path, value)
    with pytest.raises(ConfigError) as e:
        if any(isinstance(v, float) and math.isnan(v) for v in _floats(d)):
            spec_file.parse(d, "ablations/bad.toml", "bad")  # TOML has nan, but our writer refuses it
        else:
            spec_file.loads(dumps(d), "ablations/bad.toml")
    msg = str(e.value)
    assert msg.startswith("ablations/bad.toml: ") and "\n" not in msg, msg
    assert re.search(pattern, msg), msg


def _floats(d):
    if isinstance(d, dict):
        for v in d.values():
            yield from _floats(v)
    elif isinstance(d, list):
        for v in d:
            yield from _floats(v)
    elif isinstance(d, float):
        yield d


def test_valid_base_parses():
    spec = spec_file.loads(dumps(_valid()), "ablations/ok.toml")
    assert spec.name == "ok" and spec.claims[0].band == pytest.approx((-2.4, -0.4)) and spec.claims[0].side == -1


def test_ratio_claims_take_factors():
    d = _set(_set(_set(_valid(), "claims/0/unit", "x"), "claims/0/paper", 6.0), "claims/0/tolerance", 2.0)
    c = spec_file.loads(dumps(_set(d, "claims/0/margin", 1.2)), "ablations/ok.toml").claims[0]
    assert c.band == pytest.approx((3.0, 12.0)) and c.margin_band == pytest.approx((1 / 1.2, 1.2))
    assert c.paper_text() == "6x ×/÷ 2"
    for key, value, pattern in (("claims/0/tolerance", 0.5, r"tolerance: 0\.5 is not valid; must be a finite "
                                 r"number >= 1"), ("claims/0/margin", 0.9, r"margin: 0\.9 is not valid; a factor > 1")):
        with pytest.raises(ConfigError, match=pattern):
            spec_file.loads(dumps(_set(d, key, value)), "ablations/bad.toml")


@pytest.mark.parametrize("change,why", [
    ({"arms/on/set": {"model.norm": "lrn", "optim.schedule": "plateau"}}, r"optim\.schedule = \"plateau\""),
    ({"selection": {"key": "optim.lr"}, "arms/on/grid": [0.01], "arms/off/grid": [0.01]}, r"\[selection\] table"),
    ({"claims/0/metric": "best_holdout_error"}, r"a claim uses best_holdout_error"),
])
def test_adapting_without_a_holdout_is_refused_at_expansion(change, why):
    d = _valid()
    for k, v in change.items():
        d = _set(d, k, v)
    for s in spec_file.SCALES:
        d = _set(d, f"scales/{s}/set", {"epochs": 2, "optim.schedule": "step", "data.holdout": 0})
    spec = spec_file.loads(dumps(d), "ablations/adapt.toml")  # parses: checked per scale, when expanded
    with pytest.raises(ConfigError) as e:
        spec.check_scale("cifar")
    msg = str(e.value)
    assert msg.startswith("ablations/adapt.toml: scales.cifar + arms.") and "\n" not in msg, msg
    assert re.search(why, msg) and "data.holdout is 0" in msg, msg
    spec.check_scale("cifar", {"data.holdout": 100})  # with a holdout it is fine
    with pytest.raises(ConfigError, match="data.holdout is 0"):  # and a command-line override is checked too
        spec_file.load("pooling").check_scale("cifar", {"data.holdout": 0, "optim.schedule": "plateau"})


def test_model_specific_error_names_scale_and_arm():
    """A delta valid on its own but not with the scale's model is reported with both."""
    d = _set(_valid(), "arms/on/set", {"model.name": "alexnet"})
    with pytest.raises(ConfigError, match=r"arms\.on\.set: model\.name"):
        spec_file.parse(d, "ablations/bad.toml", "bad")


def test_toml_syntax_error_is_one_line():
    with pytest.raises(ConfigError) as e:
        spec_file.loads('title = "unterminated\n', "ablations/broken.toml")
    assert str(e.value).startswith("ablations/broken.toml: TOML syntax error:") and "\n" not in str(e.value)


def test_unknown_name_and_missing_path():
    with pytest.raises(ConfigError, match=r"unknown ablation 'lnr'; valid: activation, .* \(or all\)"):
        spec_file.load("lnr")
    with pytest.raises(ConfigError, match=r"no such ablation spec file"):
        spec_file.load("nowhere/x.toml")


def test_load_by_path(tmp_path):
    p = tmp_path / "mine.toml"
    p.write_text(dumps(_valid()), encoding="utf-8")
    assert spec_file.load(p).name == "mine"


def test_a_no_effect_claim_needs_a_margin_and_is_judged_only_against_it():
    for name, unit, margin in (("precision", "pp", 0.3), ("precision-80sec", "x", 1.05)):
        c = spec_file.load(name).claims[0]
        assert (c.kind, c.unit, c.margin, c.paper, c.side) == ("no-effect", unit, margin, None, 0)
        assert c.band == c.margin_band == ((1 / margin, margin) if unit == "x" else (-margin, margin))
        assert c.paper_text() == ("no effect (within ×/÷ 1.05)" if unit == "x" else "no effect (within ± 0.3 pp)")
    text = spec_file.resolve("precision").read_text().replace("margin = 0.3\n", "")
    with pytest.raises(ConfigError, match=r"claims\[0\]\.margin: required with kind = \"no-effect\""):
        spec_file.loads(text, "ablations/precision.toml", "precision")
