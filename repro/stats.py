"""Statistics for the reports: effects with 95% intervals, and the verdict rules.

Pure functions over plain floats and numpy arrays; nothing here reads files or renders
text (repro.report does both).

An effect of arm values `a` against `b` is either a difference of means in percentage
points ("pp"; the values are fractions) or a ratio of geometric means ("x"), with a 95%
Welch t interval (on log values for ratios). Censored values (lower bounds, e.g.
epochs_to_target of a run that never reached its target) open the interval on their side.

The verdict on a claim, from the effect's interval [lo, hi] (`verdict`):

    reproduced    the interval lies on the paper's side of "no effect" and overlaps the
                  paper's value +- tolerance;
    contradicted  the interval lies entirely on the other side of "no effect", or entirely
                  outside the paper's value +- tolerance;
    inconclusive  anything else: the interval includes "no effect", or there is none
                  (fewer than 2 finished runs in an arm).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

REPRODUCED, CONTRADICTED, INCONCLUSIVE = "reproduced", "contradicted", "inconclusive"


@dataclass(frozen=True)
class Effect:
    """A measured effect with its 95% interval; lo/hi are NaN when there is none."""

    unit: str  # "pp" or "x"
    estimate: float
    lo: float
    hi: float
    n_arm: int
    n_against: int
    bound: str = ""  # "≥" or "≤" when censored values make the estimate a bound; "?" if both

    @property
    def has_interval(self) -> bool:
        return not (math.isnan(self.lo) or math.isnan(self.hi))


def welch_interval(a: Sequence[float], b: Sequence[float], level: float = 0.95) -> tuple[float, float, float]:
    """mean(a) - mean(b) and its Welch t interval. NaN interval with fewer than 2 values in
    either group; a point interval when both groups have zero variance."""
    from scipy.special import stdtrit  # Student t quantile; much lighter to import than scipy.stats

    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if len(a) == 0 or len(b) == 0:
        return math.nan, math.nan, math.nan
    if np.ptp(a) == 0 and np.ptp(b) == 0:  # no spread: exact, with no rounding noise from the means
        d = float(a[0] - b[0])
        return (d, d, d) if len(a) >= 2 and len(b) >= 2 else (d, math.nan, math.nan)
    d = float(a.mean() - b.mean())
    if len(a) < 2 or len(b) < 2:
        return d, math.nan, math.nan
    va, vb = a.var(ddof=1) / len(a), b.var(ddof=1) / len(b)
    se = math.sqrt(va + vb)
    denom = va**2 / (len(a) - 1) + vb**2 / (len(b) - 1)
    df = (va + vb) ** 2 / denom if denom > 0 else min(len(a), len(b)) - 1  # Welch-Satterthwaite; underflow guard
    t = float(stdtrit(df, 0.5 + level / 2))
    return d, d - t * se, d + t * se


def measure(a: Iterable[float], b: Iterable[float], unit: str, a_censored: bool = False,
            b_censored: bool = False) -> Effect:
    """The effect of arm values `a` against `b`: mean difference in percentage points (values
    are fractions) or ratio of geometric means ("x"). A censored side (lower bounds) opens the
    interval: a censored arm can only be larger, so hi = ∞; a censored `b`, so lo = -∞ (or 0x)."""
    a = [x for x in a if not math.isnan(x)]
    b = [x for x in b if not math.isnan(x)]
    if unit == "pp":
        d, lo, hi = welch_interval([100 * x for x in a], [100 * x for x in b])
        open_lo, open_hi = -math.inf, math.inf
    else:
        if any(x <= 0 for x in a + b):
            return Effect(unit, math.nan, math.nan, math.nan, len(a), len(b))
        d, lo, hi = welch_interval(np.log(a), np.log(b)) if a and b else (math.nan,) * 3
        d, lo, hi = math.exp(d) if not math.isnan(d) else d, math.exp(lo), math.exp(hi)
        open_lo, open_hi = 0.0, math.inf
    if a_censored and not math.isnan(lo):
        hi = open_hi
    if b_censored and not math.isnan(lo):
        lo = open_lo
    bound = "?" if a_censored and b_censored else "≥" if a_censored else "≤" if b_censored else ""
    return Effect(unit, d, lo, hi, len(a), len(b), bound)


def verdict(lo: float, hi: float, null: float, side: int, band: tuple[float, float]) -> tuple[str, str]:
    """The verdict on a claim from the measured effect's interval [lo, hi].

    null: the effect meaning "no effect" (0 pp, 1x); side: +1 / -1, the paper's sign
    relative to null; band: the effects consistent with the paper (its value +- tolerance,
    or a half-line for "at least" and "direction" claims). Returns (verdict, reason)."""
    if lo is None or hi is None or math.isnan(lo) or math.isnan(hi):
        return INCONCLUSIVE, "no interval (needs at least 2 finished runs per arm)"
    if lo > hi:
        raise ValueError(f"interval [{lo}, {hi}] is reversed")
    blo, bhi = band
    if (side > 0 and hi < null) or (side < 0 and lo > null):
        return CONTRADICTED, "the interval excludes the paper's sign"
    if hi < blo or lo > bhi:
        return CONTRADICTED, "the interval excludes the paper's size (± tolerance)"
    if (side > 0 and lo > null) or (side < 0 and hi < null):
        return REPRODUCED, "same sign as the paper, excludes no effect, consistent with its size"
    return INCONCLUSIVE, "the interval includes no effect"


def mean_and_sd(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (NaN for fewer than 2 values; both NaN for none)."""
    arr = np.asarray(values, dtype=float)
    if len(arr) == 0:
        return math.nan, math.nan
    return float(arr.mean()), float(arr.std(ddof=1)) if len(arr) > 1 else math.nan
