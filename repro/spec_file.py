"""Ablation specs: `ablations/NAME.toml`, one file per ablation, data and not code.

A spec says what is compared (arms: config deltas), on what (per scale: model, data,
budget, seeds), and what the paper claims about it (value, unit, section, quote, source
row, tolerance). `repro ablate` expands it into runs; `repro report` checks the claims.

    title = "Local response normalization"      # required
    section = "§3.3"                            # the paper's section
    question = "Does LRN lower the error?"      # one line
    notes = "caveats, printed in the report"    # optional
    baseline = "none"                           # the arm effects are measured against
    metrics = ["test_error", "final_train_error"]   # shown per arm (see METRICS)
    target = 0.25                               # optional: train-error threshold for epochs_to_target
    converge_tol = 0.01                         # optional: epochs_to_converge's tolerance (absolute)

    [base]                                      # config deltas for every arm and scale
    "optim.weight_decay" = 0.0

    [arms.lrn]                                  # arms in file order; the keys of `set` are
    about = "the paper's net"                   # repro.config keys (`optim.lr` or `lr`)
    set = { "model.norm" = "lrn" }
    # grid = [0.01, 0.003]                      # only with [selection]: values tried per arm

    [arms.ten]                                  # an evaluation arm: trains nothing; its runs are
    about = "ten views"                         # the `of` arm's, its test_* values those runs'
    evaluate = { of = "lrn", views = 10 }       # test_*_10view (views 10) or _1view (views 1)

    [[claims]]                                  # effect = arm - against
    arm = "lrn"
    against = "none"
    metric = "test_error"
    test = "paired"                             # required: "paired" (per-seed differences) or "welch"
    unit = "pp"                                 # "pp": difference in percentage points; "x": ratio
    kind = "about"                              # "about": paper +- tolerance; "at-least": |effect| >=
    paper = -1.4                                # |paper| - tolerance; "direction": sign only (then
    tolerance = 1.0                             # `direction` = "lower" | "higher", no `paper`);
                                                # "no-effect": the claim is that nothing changes
                                                # (no `paper`; `margin` required)
    margin = 0.5                                # optional: smallest effect of interest ("no effect"
                                                # is the 90% interval inside +- margin; for "x"
                                                # claims a factor > 1: [1/margin, margin])
    section = "§3.3"                            # for "x" claims `tolerance` is a factor too:
    quote = "Top-1 −1.4%, top-5 −1.2%"          # [paper / tolerance, paper * tolerance]
    source = "ILSVRC (test set not stated)"     # which table row / test set
    scales = ["imagenet"]                       # optional: where the claim is checked (default all)

    [scales.smoke]                              # all three scales are required
    model = "cifar-11pct"
    seeds = 2
    extended = "from 5, after ..."              # optional: seeds raised after a look (printed)
    [scales.smoke.set]                          # data and budget for this scale
    "data.dataset" = "synthetic"
    "data.holdout" = 64
    epochs = 2
    [scales.smoke.arms.lrn]                     # optional per-scale arm deltas (set, grid)
    set = { "optim.lr" = 0.002 }

    [selection]                                 # optional: choose one setting per arm
    key = "optim.lr"                            # on the first seed from the arm's grid, then
    by = "epochs_to_target"                     # run the other seeds with it
    beyond_edge = true                          # optional: an edge choice tries one value past it

A run's config is built as: the scale's model defaults <- base <- scale.set <- arm.set
<- scale.arms.ARM.set <- the selected grid value <- seed <- command-line overrides.

Every problem is a one-line `ConfigError` naming the file, the key and what is wrong;
unknown keys are rejected at every level. Top-5 metrics are refused in claims checked at the
10-class scales (smoke, cifar). `check_scale` refuses, when a spec is expanded for a scale,
runs that adapt anything (a [selection] table, `optim.schedule = "plateau"`, a claim on a
holdout metric) where `data.holdout` is 0: the test set is never a validation stand-in.
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from repro import config as rc
from repro.errors import ConfigError, one_line

ABLATIONS_DIR = Path(__file__).resolve().parent.parent / "ablations"
SCALES = ("smoke", "cifar", "imagenet")
UNITS = ("pp", "x")
KINDS = ("about", "at-least", "direction", "no-effect")
DIRECTIONS = ("lower", "higher")
# What a selection grid minimises: epochs to the target (Figure 1), or the holdout error at the
# end of the recipe (an arm whose lr optimum moves, e.g. batch norm vs LRN vs none).
SELECT_BY = ("epochs_to_target", "final_holdout_error")

# Per-run numbers a spec may name; repro.records extracts them from a run directory.
METRICS: dict[str, str] = {
    "test_error": "top-1 test error (the final evaluation, with the run's data.test_views views)",
    "test_error_1view": "top-1 test error, centre crop only",
    "test_error_10view": "top-1 test error, 4 corners + centre and their flips, softmax averaged",
    "test_loss": "test loss (the final evaluation, with the run's data.test_views views)",
    "test_top5_error": "top-5 test error (ImageNet-scale claims only: 10 classes make it uninformative)",
    "final_train_error": "final top-1 training error, eval mode on the fixed training slice (data.train_eval)",
    "final_train_error_running": "final running training error (dropout and augmentation on, as cuda-convnet printed)",
    "final_holdout_error": "final top-1 holdout error",
    "best_holdout_error": "lowest top-1 holdout error over the evaluations",
    "holdout_loss_min": "lowest holdout loss over the evaluations",
    "epochs_to_target": "epochs until the eval-mode training error reaches the target (interpolated between "
                        "evaluations); a run that never does gives its epochs run, a lower bound",
    "gap": "overfitting gap: test error minus final eval-mode training error",
    "epochs_to_leave_chance": "epochs until the holdout loss first falls to 0.9 ln(classes) (chance is ln 10 = "
                              "2.30 on CIFAR-10), interpolated between evaluations; a run that never does (the "
                              "flat-loss trap) gives its epochs run",
    "epochs_to_converge": "first evaluation epoch whose eval-mode training error is within converge_tol of the "
                          "run's final one",
}
HOLDOUT_METRICS = ("final_holdout_error", "best_holdout_error", "holdout_loss_min", "epochs_to_leave_chance")
TOP5_METRICS = tuple(m for m in METRICS if "top5" in m)
TEN_CLASS_SCALES = ("smoke", "cifar")
TESTS = ("paired", "welch")
VIEW_METRICS = {"test_error": "test_error_{v}view", "test_loss": "test_loss_{v}view",
                "test_top5_error": "test_top5_error_{v}view"}  # what an evaluation arm reads


@dataclass(frozen=True)
class Evaluate:
    """An evaluation arm: the `of` arm's trained runs, evaluated with `views` test views."""

    of: str
    views: int


@dataclass(frozen=True)
class Arm:
    name: str
    about: str = ""
    set: dict[str, Any] = field(default_factory=dict)
    grid: tuple[float, ...] = ()
    evaluate: Evaluate | None = None


@dataclass(frozen=True)
class ScaleArm:
    """Per-scale changes to one arm."""

    set: dict[str, Any] = field(default_factory=dict)
    grid: tuple[float, ...] | None = None


@dataclass(frozen=True)
class Scale:
    name: str
    model: str
    seeds: int
    set: dict[str, Any] = field(default_factory=dict)
    arms: dict[str, ScaleArm] = field(default_factory=dict)
    notes: str = ""
    extended: str = ""  # seeds raised after a look at the results (a sequential extension): how and why


@dataclass(frozen=True)
class Claim:
    arm: str
    against: str
    metric: str
    unit: str  # "pp" or "x"
    kind: str  # "about", "at-least", "direction", "no-effect"
    paper: float | None  # the paper's effect, arm - against (pp) or arm / against (x)
    direction: str | None  # "lower" / "higher", for kind="direction"
    tolerance: float  # pp for "pp" claims; a factor >= 1 for "x" claims
    section: str
    quote: str
    source: str
    test: str = "paired"  # "paired" or "welch", declared before running
    margin: float | None = None  # smallest effect of interest: pp, or a factor > 1 for "x"
    note: str = ""
    scales: tuple[str, ...] = SCALES

    @property
    def null(self) -> float:
        """The value meaning "no effect"."""
        return 1.0 if self.unit == "x" else 0.0

    @property
    def side(self) -> int:
        """+1 if the paper says the arm's metric is higher than the other's, -1 if lower."""
        if self.kind == "no-effect":
            return 0  # neither: only "no effect" or "contradicted" (wholly outside the margin) apply
        if self.kind == "direction":
            return 1 if self.direction == "higher" else -1
        return 1 if self.paper > self.null else -1

    @property
    def sized(self) -> bool:
        """Whether the claim states a size ("about", "at-least"), not only a sign or no effect."""
        return self.kind in ("about", "at-least")

    @property
    def band(self) -> tuple[float, float]:
        """The effect sizes consistent with the paper, given the tolerance."""
        if self.kind == "no-effect":
            assert self.margin_band is not None  # the parser requires a margin
            return self.margin_band
        if self.kind == "direction":
            return (self.null, math.inf) if self.side > 0 else (-math.inf, self.null)
        if self.unit == "x":  # log-symmetric: a factor of `tolerance` either way
            lo, hi = self.paper / self.tolerance, self.paper * self.tolerance
        else:
            lo, hi = self.paper - self.tolerance, self.paper + self.tolerance
        if self.kind == "at-least":
            return (lo, math.inf) if self.side > 0 else ((0.0 if self.unit == "x" else -math.inf), hi)
        return (lo, hi)

    @property
    def margin_band(self) -> tuple[float, float] | None:
        """The effects too small to matter (around null), or None if no margin is declared."""
        if self.margin is None:
            return None
        return (1 / self.margin, self.margin) if self.unit == "x" else (-self.margin, self.margin)

    @property
    def reference(self) -> float | None:
        """The effect size to plan seeds for, on the interval's scale (pp, or log for "x"):
        the margin if declared, else the paper's value; None if neither."""
        size = self.margin if self.margin is not None else self.paper
        if size is None:
            return None
        return abs(math.log(size)) if self.unit == "x" else abs(size)

    def paper_text(self) -> str:
        """The paper's effect as a short string: '-1.4 pp (± 1.0)', '<= -1.0 pp', 'lower'."""
        if self.kind == "direction":
            return f"{self.direction} (sign only)"
        if self.kind == "no-effect":
            within = f"×/÷ {self.margin:g}" if self.unit == "x" else f"± {self.margin:g} pp"
            return f"no effect (within {within})"
        if self.unit == "x":
            val, tol = f"{self.paper:g}x", f"×/÷ {self.tolerance:g}"
        else:
            val, tol = f"{self.paper:+g} pp", f"± {self.tolerance:g}"
        if self.kind == "at-least":
            return f"{'≥' if self.side > 0 else '≤'} {val} ({tol})"
        return f"{val} {tol}"


@dataclass(frozen=True)
class Selection:
    key: str  # canonical config key, e.g. "optim.lr"
    by: str = "epochs_to_target"
    seed: int | None = None  # the seed the grid trains on (not analysed); None: the first analysed seed
    # An arm whose declared grid chooses its lowest or highest value also tries one value past
    # that edge (the grid's step: 0.005 below [0.01, 0.02, ...]), once, before its main seeds.
    beyond_edge: bool = False

    @property
    def short(self) -> str:
        return self.key.split(".")[-1]


@dataclass(frozen=True)
class AblationSpec:
    name: str
    path: str
    title: str
    section: str
    question: str
    baseline: str
    metrics: tuple[str, ...]
    arms: dict[str, Arm]
    scales: dict[str, Scale]
    claims: tuple[Claim, ...] = ()
    base: dict[str, Any] = field(default_factory=dict)
    notes: str = ""
    target: float | None = None
    selection: Selection | None = None
    converge_tol: float = 0.01
    sha256: str = ""  # of the file's text, recorded beside the runs

    @property
    def training_arms(self) -> list[str]:
        """The arms that train (not evaluation arms), in file order."""
        return [a for a, arm in self.arms.items() if arm.evaluate is None]

    def trained_by(self, arm: str) -> str:
        """The arm whose runs `arm` reads: itself, or an evaluation arm's `of`."""
        ev = self.arms[arm].evaluate
        return arm if ev is None else ev.of

    def check_scale(self, scale: str, overrides: Mapping[str, Any] | None = None) -> None:
        """Refuse (one-line ConfigError) runs that adapt anything without a holdout at `scale`:
        a [selection] table, a plateau lr schedule, or a claim on a holdout metric."""
        for arm in self.training_arms:
            cfg = self.config(arm, scale, 0, (self.grid(arm, scale) or (None,))[0], overrides)
            if cfg.data.holdout > 0:
                continue
            why = ("its [selection] table chooses on training runs" if self.selection is not None else
                   "optim.schedule = \"plateau\" steps the lr on a validation error"
                   if cfg.optim.schedule == "plateau" else
                   next((f"a claim uses {c.metric}" for c in self.claims_for(scale) if c.metric in HOLDOUT_METRICS),
                        None))
            if why:
                raise ConfigError(f"{self.path}: scales.{scale} + arms.{arm}: {why}, but data.holdout is 0 "
                                  "(set \"data.holdout\" so nothing adapts on the test set)")

    def grid(self, arm: str, scale: str) -> tuple[float, ...]:
        """The values the selection stage tries for `arm` at `scale` (empty: no selection)."""
        if self.selection is None:
            return ()
        arm = self.trained_by(arm)
        over = self.scales[scale].arms.get(arm)
        if over is not None and over.grid is not None:
            return over.grid
        return self.arms[arm].grid

    def beyond(self, arm: str, scale: str, value: float) -> float | None:
        """With [selection] beyond_edge: the one value past the edge of `arm`'s grid where `value`
        sits, one geometric step of the grid beyond it (0.0025 below [0.005, 0.01, ...]; 0.08
        above [..., 0.02, 0.04]). None for a value inside the grid, or without the rule."""
        grid = sorted(self.grid(arm, scale))
        if self.selection is None or not self.selection.beyond_edge or len(grid) < 2 or grid[0] <= 0:
            return None
        if value == grid[0]:
            past = grid[0] * grid[0] / grid[1]
        elif value == grid[-1]:
            past = grid[-1] * grid[-1] / grid[-2]
        else:
            return None
        return float(f"{past:.12g}")  # 0.005 * 0.005 / 0.01 is 0.0025000000000000005: the config hash wants 0.0025

    def deltas(self, arm: str, scale: str) -> dict[str, Any]:
        """base <- scale.set <- arm.set <- scale.arms.ARM.set, as one flat dict (an evaluation
        arm's are its `of` arm's)."""
        arm = self.trained_by(arm)
        sc = self.scales[scale]
        over = sc.arms.get(arm, ScaleArm())
        out: dict[str, Any] = {}
        for d in (self.base, sc.set, self.arms[arm].set, over.set):
            out.update(_canonical(d))
        return out

    def config(
        self, arm: str, scale: str, seed: int, grid_value: float | None = None,
        overrides: Mapping[str, Any] | None = None,
    ) -> rc.RunConfig:
        """The RunConfig of one run (see the module docstring for the order of layers)."""
        d = self.deltas(arm, scale)
        if grid_value is not None:
            assert self.selection is not None
            d[self.selection.key] = grid_value
        d["seed"] = seed
        from repro.models.registry import make_config  # torch import: only once a config is built

        return make_config(self.scales[scale].model, {**d, **dict(overrides or {})})

    def claims_for(self, scale: str) -> list[Claim]:
        return [c for c in self.claims if scale in c.scales]


# ----------------------------------------------------------------------------- loading


def names() -> list[str]:
    """The shipped ablations, `ablations/*.toml` stems, sorted."""
    return sorted(p.stem for p in ABLATIONS_DIR.glob("*.toml"))


def resolve(name_or_path: str | os.PathLike) -> Path:
    """A shipped ablation's file, or the given path if it names a .toml file."""
    s = str(name_or_path)
    if s.endswith(".toml") or os.sep in s:
        p = Path(s)
        if not p.is_file():
            raise ConfigError(f"{s}: no such ablation spec file")
        return p
    p = ABLATIONS_DIR / f"{s}.toml"
    if not p.is_file():
        raise ConfigError(f"unknown ablation {s!r}; valid: {', '.join(names())} (or all)")
    return p


def load(name_or_path: str | os.PathLike) -> AblationSpec:
    """Parse and validate a spec by name (`lrn`) or path (`ablations/lrn.toml`)."""
    path = resolve(name_or_path)
    return loads(path.read_text(encoding="utf-8"), _display(path), name=path.stem)


def loads(text: str, path: str = "<spec>", name: str | None = None) -> AblationSpec:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{path}: TOML syntax error: {one_line(e)}") from None
    spec = parse(data, path, name or Path(path).stem)
    return dataclasses.replace(spec, sha256=hashlib.sha256(text.encode()).hexdigest())


def _display(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def _canonical(d: Mapping[str, Any]) -> dict[str, Any]:
    """Flatten `{"model": {"norm": ...}}` and map `lr` to `optim.lr`."""
    return {rc.canonical_key(k): v for k, v in rc.flatten(d).items()}


class _Table:
    """One TOML table being checked: typed getters that raise with file and key."""

    def __init__(self, data: Any, path: str, where: str, allowed: tuple[str, ...]):
        self.path, self.where = path, where
        if not isinstance(data, dict):
            raise self.error("", f"must be a table, got {type(data).__name__}")
        for k in data:
            if k not in allowed:
                raise self.error(k, f"unknown key; valid: {', '.join(allowed)}")
        self.data = data

    def error(self, key: str, problem: str) -> ConfigError:
        where = ".".join(p for p in (self.where, key) if p) or "(top level)"
        return ConfigError(f"{self.path}: {where}: {problem}")

    def get(self, key: str, kind: type | tuple[type, ...], default: Any = ..., *, choices: tuple = ()) -> Any:
        if key not in self.data:
            if default is ...:
                raise self.error(key, "missing (required)")
            return default
        v = self.data[key]
        ok = isinstance(v, kind) and not (isinstance(v, bool) and bool not in _as_tuple(kind))
        if not ok:
            want = " or ".join(t.__name__ for t in _as_tuple(kind))
            raise self.error(key, f"must be {want}, got {type(v).__name__} {v!r}")
        if choices and v not in choices:
            raise self.error(key, f"{v!r} is not valid; choose {', '.join(choices)}")
        return v

    def number(self, key: str, default: Any = ..., *, low: float | None = None) -> float | None:
        if key not in self.data and default is not ...:
            return default
        v = float(self.get(key, (int, float)))
        if not math.isfinite(v) or (low is not None and v < low):
            at_least = f" >= {low:g}" if low is not None else ""
            raise self.error(key, f"{v!r} is not valid; must be a finite number{at_least}")
        return v

    def text(self, key: str, default: Any = ...) -> str:
        v = self.get(key, str, default)
        return v.strip() if isinstance(v, str) else v

    def strings(self, key: str, default: Any = ..., *, choices: tuple = ()) -> tuple[str, ...]:
        if key not in self.data and default is not ...:
            return default
        v = self.get(key, list)
        for x in v:
            if not isinstance(x, str):
                raise self.error(key, f"must be a list of strings, got {x!r}")
            if choices and x not in choices:
                raise self.error(key, f"{x!r} is not valid; choose from {', '.join(choices)}")
        if len(set(v)) != len(v):
            raise self.error(key, "has duplicates")
        return tuple(v)

    def grid(self, key: str) -> tuple[float, ...] | None:
        v = self.get(key, list, None)
        if v is None:
            return None
        if not v or any(isinstance(x, bool) or not isinstance(x, (int, float)) or not math.isfinite(x) for x in v):
            raise self.error(key, f"must be a non-empty list of numbers, got {v!r}")
        if len(set(v)) != len(v):
            raise self.error(key, "has duplicates")
        return tuple(float(x) for x in v)

    def deltas(self, key: str) -> dict[str, Any]:
        """A table of config deltas, checked by applying it to a default RunConfig."""
        v = self.get(key, dict, {})
        where = ".".join(p for p in (self.where, key) if p)
        try:
            flat = _canonical(v)
            rc.apply(rc.RunConfig(), flat)
        except ConfigError as e:
            raise ConfigError(f"{self.path}: {where}: {e}") from None
        for k in flat:
            if k == "seed":
                raise ConfigError(f"{self.path}: {where}: seed: set by the runner (scales.*.seeds, --seeds), not here")
            if k == "model.name":
                raise ConfigError(f"{self.path}: {where}: model.name: the model is chosen by scales.*.model")
        return flat


def _as_tuple(kind: type | tuple[type, ...]) -> tuple[type, ...]:
    return kind if isinstance(kind, tuple) else (kind,)


TOP_KEYS = ("title", "section", "question", "notes", "baseline", "metrics", "target", "converge_tol", "base", "arms",
            "claims", "scales", "selection")
ARM_KEYS = ("about", "set", "grid", "evaluate")
EVALUATE_KEYS = ("of", "views")
CLAIM_KEYS = ("arm", "against", "metric", "test", "unit", "kind", "paper", "direction", "tolerance", "margin",
              "section", "quote", "source", "note", "scales")
SCALE_KEYS = ("model", "seeds", "set", "arms", "notes", "extended")
SCALE_ARM_KEYS = ("set", "grid")
SELECTION_KEYS = ("key", "by", "seed", "beyond_edge")


def parse(data: Mapping[str, Any], path: str = "<spec>", name: str = "spec") -> AblationSpec:
    """Validate a parsed TOML document and build the spec (see the module docstring)."""
    top = _Table(dict(data), path, "", TOP_KEYS)
    selection = _parse_selection(top, path)
    arms = _parse_arms(top, path, selection)
    baseline = top.text("baseline", next(iter(arms)))
    if baseline not in arms:
        raise top.error("baseline", f"{baseline!r} is not an arm; arms: {', '.join(arms)}")
    metrics = top.strings("metrics", choices=tuple(METRICS))
    if not metrics:
        raise top.error("metrics", "must name at least one metric")
    target = top.number("target", None)
    if target is not None and not 0 < target < 1:
        raise top.error("target", f"{target!r} is not valid; a training-error fraction in (0, 1)")
    converge_tol = top.number("converge_tol", 0.01, low=0.0)
    scales = _parse_scales(top, path, arms, selection)
    claims = [_parse_claim(raw, path, f"claims[{i}]", arms) for i, raw in enumerate(top.get("claims", list, []))]
    if selection is not None:
        _check_grids(path, arms, scales)
    spec = AblationSpec(
        name=name, path=path, title=top.text("title"), section=top.text("section"), question=top.text("question"),
        baseline=baseline, metrics=metrics, arms=arms, scales=scales, claims=tuple(claims),
        base=top.deltas("base"), notes=top.text("notes", ""), target=target, selection=selection,
        converge_tol=converge_tol,
    )
    _check_configs(spec, path)
    return spec


def _parse_selection(top: _Table, path: str) -> Selection | None:
    if "selection" not in top.data:
        return None
    t = _Table(top.data["selection"], path, "selection", SELECTION_KEYS)
    key = t.text("key")
    try:
        key = rc.canonical_key(key)
    except ConfigError as e:
        raise t.error("key", str(e)) from None
    seed = t.data.get("seed")
    if seed is not None and (not isinstance(seed, int) or isinstance(seed, bool) or seed < 0):
        raise t.error("seed", f"{seed!r} is not valid; a seed is a whole number >= 0")
    beyond = t.data.get("beyond_edge", False)
    if not isinstance(beyond, bool):
        raise t.error("beyond_edge", f"{beyond!r} is not valid; write true or false")
    selection = Selection(key=key, by=t.text("by", "epochs_to_target"), seed=seed, beyond_edge=beyond)
    if selection.by not in SELECT_BY:
        raise t.error("by", f"{selection.by!r} is not valid; choose {', '.join(SELECT_BY)}")
    return selection


def _parse_arms(top: _Table, path: str, selection: Selection | None) -> dict[str, Arm]:
    arms_t = _Table(top.get("arms", dict), path, "arms", tuple(top.data["arms"]))
    if len(arms_t.data) < 2:
        raise top.error("arms", "needs at least two arms")
    arms: dict[str, Arm] = {}
    for arm_name, raw in arms_t.data.items():
        t = _Table(raw, path, f"arms.{arm_name}", ARM_KEYS)
        grid = t.grid("grid")
        if grid is not None and selection is None:
            raise t.error("grid", "needs a [selection] table saying which key the grid sets")
        evaluate = _parse_evaluate(t, path, arm_name, arms_t.data)
        if evaluate is not None and ("set" in t.data or grid is not None):
            raise t.error("evaluate", "an evaluation arm trains nothing: no `set` or `grid` beside it")
        arms[arm_name] = Arm(arm_name, t.text("about", ""), t.deltas("set"), grid or (), evaluate)
    if not any(a.evaluate is None for a in arms.values()):
        raise top.error("arms", "needs at least one arm that trains (without `evaluate`)")
    return arms


def _parse_evaluate(t: _Table, path: str, arm_name: str, all_arms: Mapping[str, Any]) -> Evaluate | None:
    if "evaluate" not in t.data:
        return None
    e = _Table(t.data["evaluate"], path, f"arms.{arm_name}.evaluate", EVALUATE_KEYS)
    of = e.text("of")
    raw = all_arms.get(of)
    if of == arm_name or raw is None or (isinstance(raw, dict) and "evaluate" in raw):
        raise e.error("of", f"{of!r} is not a training arm; training arms: "
                            f"{', '.join(a for a, r in all_arms.items() if 'evaluate' not in r)}")
    views = e.get("views", int)
    if views not in (1, 10):
        raise e.error("views", f"{views} is not valid; choose 1 or 10")
    return Evaluate(of, views)


def _parse_scales(top: _Table, path: str, arms: Mapping[str, Arm], selection: Selection | None) -> dict[str, Scale]:
    scales_t = _Table(top.get("scales", dict), path, "scales", SCALES)
    scales: dict[str, Scale] = {}
    for s in SCALES:
        if s not in scales_t.data:
            raise scales_t.error(s, "missing (every spec defines smoke, cifar and imagenet)")
        t = _Table(scales_t.data[s], path, f"scales.{s}", SCALE_KEYS)
        model = t.text("model")
        from repro.models import registry  # torch import: only once a spec is read this far

        if model not in registry.ENTRIES:
            raise t.error("model", f"unknown model {model!r}; valid: {', '.join(registry.ENTRIES)}")
        seeds = t.get("seeds", int)
        if seeds < 1:
            raise t.error("seeds", f"{seeds} is not valid; at least 1")
        sarms_t = _Table(t.get("arms", dict, {}), path, f"scales.{s}.arms",
                         tuple(a for a in arms if arms[a].evaluate is None))
        sarms = {}
        for arm_name, raw in sarms_t.data.items():
            at = _Table(raw, path, f"scales.{s}.arms.{arm_name}", SCALE_ARM_KEYS)
            grid = at.grid("grid")
            if grid is not None and selection is None:
                raise at.error("grid", "needs a [selection] table saying which key the grid sets")
            sarms[arm_name] = ScaleArm(at.deltas("set"), grid)
        scales[s] = Scale(s, model, seeds, t.deltas("set"), sarms, t.text("notes", ""), t.text("extended", ""))
    return scales


def _parse_claim(raw: Any, path: str, where: str, arms: Mapping[str, Arm]) -> Claim:
    t = _Table(raw, path, where, CLAIM_KEYS)
    arm, against = t.text("arm"), t.text("against")
    for key, v in (("arm", arm), ("against", against)):
        if v not in arms:
            raise t.error(key, f"{v!r} is not an arm; arms: {', '.join(arms)}")
    if arm == against:
        raise t.error("against", "must differ from arm")
    kind = t.get("kind", str, "about", choices=KINDS)
    unit = t.get("unit", str, choices=UNITS)
    if "test" not in t.data:
        raise t.error("test", "missing (required): declare \"paired\" or \"welch\" before running")
    test = t.get("test", str, choices=TESTS)
    margin = t.number("margin", None, low=0.0)
    if margin is not None and (margin == 0 or (unit == "x" and margin <= 1)):
        raise t.error("margin", f"{margin:g} is not valid; " + ("a factor > 1 for unit \"x\"" if unit == "x"
                                                                 else "must be > 0 (percentage points)"))
    if kind == "no-effect":
        for key in ("paper", "direction", "tolerance"):
            if key in t.data:
                raise t.error(key, "not used with kind = \"no-effect\" (its band is the margin)")
        if margin is None:
            raise t.error("margin", "required with kind = \"no-effect\": the smallest effect that would matter")
        paper, direction, tolerance = None, None, 0.0
    elif kind == "direction":
        if "paper" in t.data:
            raise t.error("paper", "not used with kind = \"direction\" (say `direction` instead)")
        paper, direction = None, t.get("direction", str, choices=DIRECTIONS)
        tolerance = t.number("tolerance", 0.0, low=0.0)
    else:
        if "direction" in t.data:
            raise t.error("direction", f"only with kind = \"direction\" (kind is {kind!r})")
        paper, direction = t.number("paper"), None
        tolerance = t.number("tolerance", low=1.0 if unit == "x" else 0.0)
        null = 1.0 if unit == "x" else 0.0
        if paper == null:
            raise t.error("paper", f"{paper:g} means no effect; use kind = \"direction\" or a non-null value")
        if unit == "x" and paper <= 0:
            raise t.error("paper", f"{paper:g} is not a valid ratio; must be > 0")
    claim_scales = t.strings("scales", SCALES, choices=SCALES)
    metric = t.get("metric", str, choices=tuple(METRICS))
    ten = [s for s in claim_scales if s in TEN_CLASS_SCALES]
    if metric in TOP5_METRICS and ten:
        raise t.error("metric", f"{metric} with 10 classes says almost nothing; keep it out of the "
                                f"{'/'.join(ten)} scales (scales = [\"imagenet\"])")
    return Claim(
        arm=arm, against=against, metric=metric, unit=unit, kind=kind,
        paper=paper, direction=direction, tolerance=tolerance, section=t.text("section"),
        quote=t.text("quote"), source=t.text("source"), test=test, margin=margin, note=t.text("note", ""),
        scales=claim_scales,
    )


def _check_grids(path: str, arms: Mapping[str, Arm], scales: Mapping[str, Scale]) -> None:
    """With [selection], every arm has a grid at every scale."""
    for arm_name in (a for a in arms if arms[a].evaluate is None):
        for s in SCALES:
            over = scales[s].arms.get(arm_name)
            if not arms[arm_name].grid and not (over and over.grid):
                raise ConfigError(f"{path}: arms.{arm_name}.grid: missing (required with [selection]; "
                                  f"or give scales.{s}.arms.{arm_name}.grid)")


def _check_configs(spec: AblationSpec, path: str) -> None:
    """Every arm at every scale must make a valid config for its model (e.g. model-specific keys)."""
    for s in SCALES:
        for arm_name in spec.training_arms:
            for value in spec.grid(arm_name, s) or (None,):
                try:
                    spec.config(arm_name, s, seed=0, grid_value=value)
                except ConfigError as e:
                    raise ConfigError(f"{path}: scales.{s} + arms.{arm_name}: {e}") from None
