"""Which machines trained an ablation's analysed runs, and whether that could move its effects.

A campaign outlives a session, and sessions draw different machines (an Intel Xeon with
AVX-512 and AMX, an AMD EPYC with AVX2 only, an AMD EPYC with AVX-512). Their kernels round
differently, so a seed never trains to the same weights on two machines. A pair stays a pair
across machines all the same: its initial weights, data order and augmentation come from seeded
generators, not from kernels. What would matter is a machine that shifts the results on
average, and two views show it:

- each comparison's pairs, split by whether both runs trained on one machine, with the effect
  on each part;
- within an arm that has runs on two machines, the difference between them (Welch: the seeds
  differ as well, so the seed-to-seed spread is in it; with no machine effect its 95% interval
  covers zero 95% of the time).

Pure functions of the per-run table of repro.records.collect with its `machine` column (`labels`,
added once by repro.report.build over all of an ablation's runs, so that every section names a
run's machine alike); repro.report renders them.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pandas as pd

from repro.records import arm_values, paired_values
from repro.stats import Effect, measure


def label(device: str | None, device_name: str | None) -> str:
    """'cpu (AMD EPYC)': the device and, where recorded, its model name (a run not yet trained
    has neither: NaN in the per-run table)."""
    device, device_name = (x if isinstance(x, str) else None for x in (device, device_name))
    return (device or "?") + (f" ({device_name})" if device_name else "")


def tagged(names: Sequence, platforms: Sequence) -> list:
    """Each model name as a machine: where one name was recorded under more than one platform
    string, with the part of its platform that tells them apart ('AMD EPYC, platform …-v1272-…').
    A CPU's model name need not name its hardware: 'AMD EPYC' has come here both with AVX2 only
    and with AVX-512, whose kernels differ, and older records tell them apart by platform (the OS
    kernel build) alone. Names that are not strings (a run not yet trained) pass through."""
    def text(x) -> bool:
        return isinstance(x, str) and bool(x)

    seen: dict[str, set[str]] = {}
    for n, p in zip(names, platforms, strict=True):
        if text(n) and text(p):
            seen.setdefault(n, set()).add(p)
    tags = {n: distinct_parts(sorted(ps)) for n, ps in seen.items() if len(ps) > 1}
    return [f"{n}, platform {tags[n][p]}" if text(n) and n in tags and text(p) else n
            for n, p in zip(names, platforms, strict=True)]


def distinct_parts(platforms: Sequence[str]) -> dict[str, str]:
    """Each platform string without the '-'-separated parts that all of them share at the start
    and at the end ('…-v1272-…' of 'Linux-6.18.44-fc-v1272-x86_64-with-glibc2.36')."""
    parts = [p.split("-") for p in platforms]
    shortest = min(len(x) for x in parts)
    head = next((i for i in range(shortest) if len({x[i] for x in parts}) > 1), shortest)
    tail = next((i for i in range(shortest - head) if len({x[-1 - i] for x in parts}) > 1), shortest - head)
    out = {}
    for p, x in zip(platforms, parts, strict=True):
        middle = "-".join(x[head:len(x) - tail]) or "(none)"
        out[p] = ("…-" if head else "") + middle + ("-…" if tail else "")
    return out


def labels(frame: pd.DataFrame) -> list[str]:
    """Each row's machine label (columns device, device_name, platform), names `tagged` over all
    of the frame's rows: label a whole ablation's runs at once, or one run may be named two ways.
    A run that resumed on another machine (column `moves`, `records.moves`) names each in turn,
    'cpu (A), then cpu (B) from epoch 12': a machine of its own, paired with no single-machine run."""
    platforms = list(frame["platform"]) if "platform" in frame else [None] * len(frame)
    moved = list(frame["moves"]) if "moves" in frame else [()] * len(frame)
    later = [m for ms in moved for m in ms]
    names = tagged(list(frame["device_name"]) + [m[1] for m in later], platforms + [m[2] for m in later])
    rest = iter(names[len(frame):])
    out = []
    for device, name, ms in zip(frame["device"], names[:len(frame)], moved, strict=True):
        out.append(label(device, name) + "".join(f", then {label(m[0], next(rest))}{_from(m[3])}" for m in ms))
    return out


def _from(epoch: Any) -> str:
    return f" from epoch {epoch:g}" if isinstance(epoch, int | float) else ""


def analysed(runs: pd.DataFrame) -> pd.DataFrame:
    """The analysed runs (each with its `machine`)."""
    return runs[runs["in_analysis"]]


def by_count(labels: pd.Series) -> list[tuple[str, int]]:
    """Each distinct label with its count, most first (ties by name)."""
    return sorted(labels.value_counts().items(), key=lambda kv: (-kv[1], kv[0]))


def machines(runs: pd.DataFrame) -> list[str]:
    """The machines the analysed runs trained on, most runs first."""
    return [m for m, _ in by_count(analysed(runs)["machine"])]


def seed_text(seeds: Sequence[int]) -> str:
    """'0-4, 7, 9-10': the seeds as runs of consecutive numbers."""
    spans: list[list[int]] = []
    for s in sorted(set(seeds)):
        if spans and s == spans[-1][1] + 1:
            spans[-1][1] = s
        else:
            spans.append([s, s])
    return ", ".join(f"{a}" if a == b else f"{a}-{b}" for a, b in spans)


def split(runs: pd.DataFrame, arms: Sequence[str]) -> list[dict]:
    """One row per arm and machine with runs: arm, machine, n, seeds, and the rows themselves;
    each arm's machines in the ablation's order (most runs first), so its first is the reference
    wherever it has runs."""
    a = analysed(runs)
    order = machines(runs)
    out = []
    for arm in arms:
        mine = a[a["arm"] == arm]
        for m in sorted(set(mine["machine"]), key=order.index):
            on = mine[mine["machine"] == m]
            out.append({"arm": arm, "machine": m, "n": len(on), "seeds": seed_text([int(s) for s in on["seed"]]),
                        "runs": on})
    return out


def of_arm(runs: pd.DataFrame, arm: str) -> set[str]:
    """The machines an arm's analysed runs trained on."""
    a = analysed(runs)
    return set(a.loc[a["arm"] == arm, "machine"])


@dataclass(frozen=True)
class WithinArm:
    """An arm's runs on `machine` against its runs on `reference`."""

    arm: str
    metric: str
    machine: str
    reference: str
    effect: Effect


def within_arm(runs: pd.DataFrame, arms: Sequence[str], metric: str, unit: str) -> list[WithinArm]:
    """For each arm with at least 2 runs on two machines: each other machine against the first of
    `split`'s order (the ablation's machine with most runs), on `metric` (Welch)."""
    out = []
    for arm in arms:
        rows = [r for r in split(runs, [arm]) if r["n"] >= 2]
        for other in rows[1:]:
            a, ac = arm_values(other["runs"], arm, metric)
            b, bc = arm_values(rows[0]["runs"], arm, metric)
            effect = measure("welch", a, b, unit, ac, bc)
            out.append(WithinArm(arm, metric, other["machine"], rows[0]["machine"], effect))
    return out


@dataclass(frozen=True)
class Pairs:
    """A paired comparison's pairs by machine: both runs on one machine, or on two; `between`,
    the first group's pairs against the second's (Welch on the per-pair differences, or ratios),
    where a machine effect on the claim would show."""

    same: Effect
    across: Effect
    between: Effect

    @property
    def mixed(self) -> bool:
        return self.same.n_arm > 0 and self.across.n_arm > 0


def pairs(runs: pd.DataFrame, arm: str, against: str, metric: str, unit: str) -> Pairs:
    """The paired effect of `arm` against `against` on the pairs that share a machine and on those
    that do not."""
    a = analysed(runs)
    where = {(r["arm"], int(r["seed"])): r["machine"] for _, r in a.iterrows()}
    pa, pb, seeds, _ = paired_values(runs, arm, against, metric)
    same = [where[(arm, s)] == where[(against, s)] for s in seeds]

    kept = [(x, y, k) for x, y, k in zip(pa, pb, same, strict=True) if not math.isnan(x + y)]
    on_same, across = ([(x, y) for x, y, k in kept if k == keep] for keep in (True, False))

    def part(group: list[tuple[float, float]]) -> Effect:
        return measure("paired", [x for x, _ in group], [y for _, y in group], unit)

    def per_pair(group: list[tuple[float, float]]) -> list[float]:  # what each pair measures
        return [x / y if unit == "x" else x - y for x, y in group]

    return Pairs(part(on_same), part(across), measure("welch", per_pair(on_same), per_pair(across), unit))
