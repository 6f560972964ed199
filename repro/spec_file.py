"""Ablation specs: `ablations/NAME.toml`, one file per ablation, data and not code.

A spec says what is compared (arms: config deltas), on what (per scale: model, data,
budget, seeds), and what the paper claims about it (value, unit, section, quote, source
row, tolerance). `repro ablate` expands it into runs; `repro report` checks the claims.

    title = "Local response normalization"      # required
    section = "§3.3"                            # the paper's section
    question = "Does LRN lower the error?"      # one line
    notes = "caveats, printed in the report"    # optional
    baseline = "off"                            # the arm effects are measured against
    metrics = ["val_error", "val_top5_error"]   # shown per arm (see METRICS)
    target = 0.25                               # optional: train-error threshold for epochs_to_target

    [base]                                      # config deltas for every arm and scale
    "optim.weight_decay" = 0.0

    [arms.on]                                   # arms in file order; the keys of `set` are
    about = "the paper's net"                   # repro.config keys (`optim.lr` or `lr`)
    set = { "model.norm" = "lrn" }
    # grid = [0.01, 0.003]                      # only with [selection]: values tried per arm

    [[claims]]                                  # effect = arm - against
    arm = "on"
    against = "off"
    metric = "val_error"
    unit = "pp"                                 # "pp": difference in percentage points; "x": ratio
    kind = "about"                              # "about": paper +- tolerance; "at-least": |effect| >=
    paper = -1.4                                # |paper| - tolerance; "direction": sign only (then
    tolerance = 1.0                             # `direction` = "lower" | "higher", no `paper`)
    section = "§3.3"
    quote = "Top-1 −1.4%, top-5 −1.2%"          # exact, from shared/reference/alexnet-facts.md §2
    source = "ILSVRC (test set not stated)"     # which table row / test set
    scales = ["imagenet"]                       # optional: where the claim is checked (default all)

    [scales.smoke]                              # all three scales are required
    model = "cifar-11pct"
    seeds = 2
    [scales.smoke.set]                          # data and budget for this scale
    "data.dataset" = "synthetic"
    epochs = 2
    [scales.smoke.arms.on]                      # optional per-scale arm deltas (set, grid)
    set = { "optim.lr" = 0.002 }

    [selection]                                 # optional: choose one setting per arm
    key = "optim.lr"                            # on the first seed from the arm's grid, then
    by = "epochs_to_target"                     # run the other seeds with it

A run's config is built as: the scale's model defaults <- base <- scale.set <- arm.set
<- scale.arms.ARM.set <- the selected grid value <- seed <- command-line overrides.

Every problem is a one-line `ConfigError` naming the file, the key and what is wrong;
unknown keys are rejected at every level.
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
KINDS = ("about", "at-least", "direction")
DIRECTIONS = ("lower", "higher")
SELECT_BY = ("epochs_to_target",)

# Per-run numbers a spec may name; report.py extracts them from a run directory.
METRICS: dict[str, str] = {
    "train_error": "final top-1 training error (running, over the last epoch's batches)",
    "val_error": "final top-1 validation error",
    "val_top5_error": "final top-5 validation error",
    "best_val_error": "best top-1 validation error over the epochs",
    "test_error": "top-1 test error (the final evaluation; with test_views)",
    "test_top5_error": "top-5 test error (the final evaluation; with test_views)",
    "gap": "overfitting gap: final validation error minus final training error",
    "mean_train_error": "mean training error over the epochs run (how fast training falls)",
    "epochs_to_target": "first epoch whose training error is at or below the target",
}


@dataclass(frozen=True)
class Arm:
    name: str
    about: str = ""
    set: dict[str, Any] = field(default_factory=dict)
    grid: tuple[float, ...] = ()


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


@dataclass(frozen=True)
class Claim:
    arm: str
    against: str
    metric: str
    unit: str  # "pp" or "x"
    kind: str  # "about", "at-least", "direction"
    paper: float | None  # the paper's effect, arm - against (pp) or arm / against (x)
    direction: str | None  # "lower" / "higher", for kind="direction"
    tolerance: float
    section: str
    quote: str
    source: str
    note: str = ""
    scales: tuple[str, ...] = SCALES

    @property
    def null(self) -> float:
        """The value meaning "no effect"."""
        return 1.0 if self.unit == "x" else 0.0

    @property
    def side(self) -> int:
        """+1 if the paper says the arm's metric is higher than the other's, -1 if lower."""
        if self.kind == "direction":
            return 1 if self.direction == "higher" else -1
        return 1 if self.paper > self.null else -1

    @property
    def band(self) -> tuple[float, float]:
        """The effect sizes consistent with the paper, given the tolerance."""
        if self.kind == "direction":
            return (self.null, math.inf) if self.side > 0 else (-math.inf, self.null)
        if self.kind == "at-least":
            if self.side > 0:
                return (self.paper - self.tolerance, math.inf)
            return (-math.inf, self.paper + self.tolerance)
        return (self.paper - self.tolerance, self.paper + self.tolerance)

    def paper_text(self) -> str:
        """The paper's effect as a short string: '-1.4 pp (± 1.0)', '<= -1.0 pp', 'lower'."""
        u = " pp" if self.unit == "pp" else "x"
        if self.kind == "direction":
            return f"{self.direction} (sign only)"
        if self.kind == "at-least":
            rel = "≥" if self.side > 0 else "≤"
            return f"{rel} {self.paper:+g}{u} (tol {self.tolerance:g})" if self.unit == "pp" else \
                f"{rel} {self.paper:g}{u} (tol {self.tolerance:g})"
        val = f"{self.paper:+g}{u}" if self.unit == "pp" else f"{self.paper:g}{u}"
        return f"{val} ± {self.tolerance:g}"


@dataclass(frozen=True)
class Selection:
    key: str  # canonical config key, e.g. "optim.lr"
    by: str = "epochs_to_target"

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
    sha256: str = ""  # of the file's text, recorded beside the runs

    def grid(self, arm: str, scale: str) -> tuple[float, ...]:
        """The values the selection stage tries for `arm` at `scale` (empty: no selection)."""
        if self.selection is None:
            return ()
        over = self.scales[scale].arms.get(arm)
        if over is not None and over.grid is not None:
            return over.grid
        return self.arms[arm].grid

    def deltas(self, arm: str, scale: str) -> dict[str, Any]:
        """base <- scale.set <- arm.set <- scale.arms.ARM.set, as one flat dict."""
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


TOP_KEYS = ("title", "section", "question", "notes", "baseline", "metrics", "target", "base", "arms", "claims",
            "scales", "selection")
ARM_KEYS = ("about", "set", "grid")
CLAIM_KEYS = ("arm", "against", "metric", "unit", "kind", "paper", "direction", "tolerance", "section", "quote",
              "source", "note", "scales")
SCALE_KEYS = ("model", "seeds", "set", "arms", "notes")
SCALE_ARM_KEYS = ("set", "grid")
SELECTION_KEYS = ("key", "by")


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
    scales = _parse_scales(top, path, arms, selection)
    claims = [_parse_claim(raw, path, f"claims[{i}]", arms) for i, raw in enumerate(top.get("claims", list, []))]
    if selection is not None:
        _check_grids(path, arms, scales)
    spec = AblationSpec(
        name=name, path=path, title=top.text("title"), section=top.text("section"), question=top.text("question"),
        baseline=baseline, metrics=metrics, arms=arms, scales=scales, claims=tuple(claims),
        base=top.deltas("base"), notes=top.text("notes", ""), target=target, selection=selection,
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
    selection = Selection(key=key, by=t.text("by", "epochs_to_target"))
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
        arms[arm_name] = Arm(arm_name, t.text("about", ""), t.deltas("set"), grid or ())
    return arms


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
        sarms_t = _Table(t.get("arms", dict, {}), path, f"scales.{s}.arms", tuple(arms))
        sarms = {}
        for arm_name, raw in sarms_t.data.items():
            at = _Table(raw, path, f"scales.{s}.arms.{arm_name}", SCALE_ARM_KEYS)
            grid = at.grid("grid")
            if grid is not None and selection is None:
                raise at.error("grid", "needs a [selection] table saying which key the grid sets")
            sarms[arm_name] = ScaleArm(at.deltas("set"), grid)
        scales[s] = Scale(s, model, seeds, t.deltas("set"), sarms, t.text("notes", ""))
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
    if kind == "direction":
        if "paper" in t.data:
            raise t.error("paper", "not used with kind = \"direction\" (say `direction` instead)")
        paper, direction = None, t.get("direction", str, choices=DIRECTIONS)
        tolerance = t.number("tolerance", 0.0, low=0.0)
    else:
        if "direction" in t.data:
            raise t.error("direction", f"only with kind = \"direction\" (kind is {kind!r})")
        paper, direction = t.number("paper"), None
        tolerance = t.number("tolerance", low=0.0)
        null = 1.0 if unit == "x" else 0.0
        if paper == null:
            raise t.error("paper", f"{paper:g} means no effect; use kind = \"direction\" or a non-null value")
        if unit == "x" and paper <= 0:
            raise t.error("paper", f"{paper:g} is not a valid ratio; must be > 0")
    claim_scales = t.strings("scales", SCALES, choices=SCALES)
    return Claim(
        arm=arm, against=against, metric=t.get("metric", str, choices=tuple(METRICS)), unit=unit, kind=kind,
        paper=paper, direction=direction, tolerance=tolerance, section=t.text("section"),
        quote=t.text("quote"), source=t.text("source"), note=t.text("note", ""), scales=claim_scales,
    )


def _check_grids(path: str, arms: Mapping[str, Arm], scales: Mapping[str, Scale]) -> None:
    """With [selection], every arm has a grid at every scale."""
    for arm_name in arms:
        for s in SCALES:
            over = scales[s].arms.get(arm_name)
            if not arms[arm_name].grid and not (over and over.grid):
                raise ConfigError(f"{path}: arms.{arm_name}.grid: missing (required with [selection]; "
                                  f"or give scales.{s}.arms.{arm_name}.grid)")


def _check_configs(spec: AblationSpec, path: str) -> None:
    """Every arm at every scale must make a valid config for its model (e.g. model-specific keys)."""
    for s in SCALES:
        for arm_name in spec.arms:
            for value in spec.grid(arm_name, s) or (None,):
                try:
                    spec.config(arm_name, s, seed=0, grid_value=value)
                except ConfigError as e:
                    raise ConfigError(f"{path}: scales.{s} + arms.{arm_name}: {e}") from None
