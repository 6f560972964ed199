"""Statistics behind every verdict: intervals, equivalence, seed counts, the four verdicts.

Pure functions over plain floats and numpy arrays; `repro.report` renders what they return.
The rules are `../shared/reference/protocol.md` §3-§5:

* **paired** (arms share seeds, hence data order, augmentation and, where shapes agree,
  initial weights): a t interval on the mean of the per-seed differences d_s = a_s - b_s,
  n - 1 degrees of freedom.
* **welch** (shapes differ, so inits differ): Welch's t interval on the difference of means.
* A multiplicative metric (epochs to a target) is compared on logs; the interval is
  exponentiated back into a ratio.
* **no effect** is an equivalence result (TOST at 5%: the 90% interval lies wholly inside
  +- the smallest effect of interest declared before running).
* A **sign-flip** p beside each paired interval (Fisher's randomization test, exact: all 2^n
  sign patterns of the differences): the paired t's question, "is the mean difference zero?",
  without its normal assumption. With n pairs no p falls below 2 / 2^n (0.0625 at n = 5).
* A **censored** arm (lower bounds, e.g. epochs_to_target of a run that never reached its
  target) opens the interval on its side: a censored arm can only be larger, so hi = inf;
  a censored comparison arm, lo = -inf (0x for ratios). `measure` does this.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
from scipy.special import stdtrit  # Student t quantile; much lighter to import than scipy.stats

REPRODUCED, CONTRADICTED, NO_EFFECT, INCONCLUSIVE = "reproduced", "contradicted", "no effect", "inconclusive"
VERDICTS = (REPRODUCED, CONTRADICTED, NO_EFFECT, INCONCLUSIVE)
NOT_MEASURED = "not yet measured"  # fewer than 2 values in an arm: no verdict at all, not a weak one
TESTS = ("paired", "welch")


@dataclass(frozen=True)
class Interval:
    """A difference (on whatever scale the caller chose) with its 95% and 90% t intervals.

    `sd` is the spread the interval came from: of the per-seed differences (paired) or the
    pooled per-run standard deviation (welch); `n` the number of pairs (paired) or the
    smaller group (welch). NaN bounds mean "no interval" (fewer than two values)."""

    test: str
    estimate: float
    lo: float
    hi: float
    lo90: float
    hi90: float
    sd: float
    n: int

    @property
    def defined(self) -> bool:
        return not (math.isnan(self.lo) or math.isnan(self.hi))


NAN = math.nan


def _t(df: float, level: float) -> float:
    return float(stdtrit(df, 0.5 + level / 2))


def _interval(test: str, d: float, se: float, df: float, sd: float, n: int) -> Interval:
    if not math.isfinite(df) or df <= 0:
        return Interval(test, d, NAN, NAN, NAN, NAN, sd, n)
    t95, t90 = _t(df, 0.95), _t(df, 0.90)
    return Interval(test, d, d - t95 * se, d + t95 * se, d - t90 * se, d + t90 * se, sd, n)


def paired(a: Sequence[float], b: Sequence[float]) -> Interval:
    """mean(a_s - b_s) over the pairs s, with its t interval (n - 1 degrees of freedom)."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if a.shape != b.shape:
        raise ValueError(f"paired samples differ in length: {len(a)} vs {len(b)}")
    d = a - b
    n = len(d)
    if n == 0:
        return Interval("paired", NAN, NAN, NAN, NAN, NAN, NAN, 0)
    if np.ptp(d) == 0:  # no spread: exact, with no rounding noise from the mean
        x = float(d[0])
        return Interval("paired", x, x, x, x, x, 0.0, n) if n >= 2 else \
            Interval("paired", x, NAN, NAN, NAN, NAN, NAN, n)
    sd = float(d.std(ddof=1)) if n >= 2 else NAN
    return _interval("paired", float(d.mean()), sd / math.sqrt(n), n - 1, sd, n)


def welch(a: Sequence[float], b: Sequence[float]) -> Interval:
    """mean(a) - mean(b) with Welch's t interval (Welch-Satterthwaite degrees of freedom)."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    n = min(len(a), len(b))
    if n == 0:
        return Interval("welch", NAN, NAN, NAN, NAN, NAN, NAN, 0)
    d = float(a.mean() - b.mean())
    if np.ptp(a) == 0 and np.ptp(b) == 0:
        d = float(a[0] - b[0])
        return Interval("welch", d, d, d, d, d, 0.0, n) if n >= 2 else Interval("welch", d, NAN, NAN, NAN, NAN, NAN, n)
    if n < 2:
        return Interval("welch", d, NAN, NAN, NAN, NAN, NAN, n)
    va, vb = a.var(ddof=1) / len(a), b.var(ddof=1) / len(b)
    denom = va**2 / (len(a) - 1) + vb**2 / (len(b) - 1)
    df = (va + vb) ** 2 / denom if denom > 0 else n - 1  # underflow guard
    sd = math.sqrt((a.var(ddof=1) + b.var(ddof=1)) / 2)
    return _interval("welch", d, math.sqrt(va + vb), df, sd, n)


def compare(test: str, a: Sequence[float], b: Sequence[float], log: bool = False) -> Interval:
    """The declared test on a vs b; with `log`, on log values, returned as a ratio a / b."""
    if test not in TESTS:
        raise ValueError(f"test {test!r} is not one of {TESTS}")
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if log:
        if (a <= 0).any() or (b <= 0).any():
            raise ValueError("a ratio needs positive values")
        a, b = np.log(a), np.log(b)
    iv = paired(a, b) if test == "paired" else welch(a, b)
    if not log:
        return iv
    e = lambda x: math.exp(x) if not math.isnan(x) else NAN
    return Interval(iv.test, e(iv.estimate), e(iv.lo), e(iv.hi), e(iv.lo90), e(iv.hi90), iv.sd, iv.n)


SIGN_FLIP_MAX_N = 24  # 2^24 sign patterns, summed as two halves' outer sum: under a second


def sign_flip_p(d: Sequence[float]) -> float:
    """Two-sided p of an exact sign-flip test of a zero mean difference: the share of the 2^n
    ways of flipping the differences' signs whose sum lies at least as far from zero as the
    observed sum (the observed pattern and its mirror included, so p >= 2 / 2^n). NaN for
    fewer than 2 differences or more than SIGN_FLIP_MAX_N."""
    d = np.asarray(d, dtype=float)
    if not 2 <= len(d) <= SIGN_FLIP_MAX_N:
        return NAN

    def sums(x: np.ndarray) -> np.ndarray:  # the sum under every sign pattern of x
        signs = 1 - 2 * ((np.arange(2 ** len(x))[:, None] >> np.arange(len(x))) & 1)
        return signs @ x

    half = len(d) // 2
    every = np.add.outer(sums(d[:half]), sums(d[half:]))
    tie = 1e-9 * float(np.abs(d).sum())  # rounding in a sum must not break a tie with the observed
    return float(np.mean(np.abs(every) >= abs(float(d.sum())) - tie))


def sign_flip_floor(n: int) -> float:
    """The smallest p the two-sided sign-flip test can give with n pairs (every difference on one
    side): 2 / 2^n, which is 0.0625 at 5 pairs, so below 6 pairs no test of signs reaches 0.05."""
    return 2 / 2 ** n


def seeds_needed(sd: float, effect: float, test: str, alpha: float = 0.05, power: float = 0.8,
                 limit: int = 10_000) -> int | None:
    """Seeds per arm for a two-sided `alpha` test to detect `effect` with `power`, given the
    measured `sd` (of differences for paired, per run for welch): the smallest n with
    n >= k sd^2 (t_{1-alpha/2} + t_{power})^2 / effect^2, k = 1 (paired) or 2 (welch),
    t on n - 1 (paired) or 2n - 2 (welch) degrees of freedom. None if sd or effect is unusable."""
    if not (math.isfinite(sd) and math.isfinite(effect)) or effect == 0:
        return None
    if sd == 0:
        return 2
    k = 1 if test == "paired" else 2
    for n in range(2, limit + 1):
        df = n - 1 if test == "paired" else 2 * n - 2
        need = k * sd**2 * (_t(df, 1 - alpha) + float(stdtrit(df, power))) ** 2 / effect**2
        if n >= need:
            return n
    return None


def verdict(iv: Interval, null: float, side: int, band: tuple[float, float],
            margin: tuple[float, float] | None) -> tuple[str, str]:
    """The verdict on a claim from its measured interval (protocol §5).

    null: the value meaning "no effect" (0 pp, 1x); side: +1 / -1, the paper's sign relative
    to null; band: the effects consistent with the paper (its value +- tolerance; for ratios
    a log-symmetric band); margin: (lo, hi) of the smallest effect of interest around null,
    declared in the ablation's TOML, or None. Returns (verdict, reason)."""
    if not iv.defined:
        return INCONCLUSIVE, "no interval (needs at least 2 finished runs per arm)"
    lo, hi = iv.lo, iv.hi
    if lo > hi:
        raise ValueError(f"interval [{lo}, {hi}] is reversed")
    blo, bhi = band
    if (side > 0 and hi < null) or (side < 0 and lo > null):
        return CONTRADICTED, "the 95% interval excludes no effect on the other side of the paper's sign"
    if hi < blo or lo > bhi:
        return CONTRADICTED, "the 95% interval lies wholly outside the paper's band"
    if (side > 0 and lo > null) or (side < 0 and hi < null):
        return REPRODUCED, "the 95% interval is on the paper's side of no effect and overlaps its band"
    if margin is not None and margin[0] <= iv.lo90 and iv.hi90 <= margin[1]:
        return NO_EFFECT, "the 90% interval lies inside the smallest effect of interest (TOST, 5%)"
    return INCONCLUSIVE, "the 95% interval includes no effect" + (
        "" if margin is None else " and reaches past the smallest effect of interest")


@dataclass(frozen=True)
class Effect:
    """A claim's measured effect: in percentage points ("pp"; the values are fractions) or as a
    ratio ("x"), with its interval (censoring applied). n_arm / n_against: the values each arm
    contributed (for paired: the pairs, both the same); `dropped`: seeds without a partner."""

    unit: str
    interval: Interval
    n_arm: int
    n_against: int
    bound: str = ""  # "≥" or "≤" when censored values make the estimate a bound; "?" if both
    dropped: tuple[int, ...] = ()
    sign_flip_p: float = NAN  # paired, no bound: the exact sign-flip test's p (on logs for "x")

    @property
    def estimate(self) -> float:
        return self.interval.estimate

    @property
    def lo(self) -> float:
        return self.interval.lo

    @property
    def hi(self) -> float:
        return self.interval.hi

    @property
    def test(self) -> str:
        return self.interval.test

    @property
    def has_interval(self) -> bool:
        return self.interval.defined

    def excludes(self, null: float) -> bool:
        """Whether the 95% interval lies wholly on one side of `null` (no effect)."""
        return self.lo > null or self.hi < null

    def leans_on_t(self, null: float) -> bool:
        """The 95% interval excludes no effect, but the exact sign-flip test beside it (no normal
        assumption) does not reach p < 0.05: the exclusion rests on t's normal assumption."""
        return self.excludes(null) and not math.isnan(self.sign_flip_p) and self.sign_flip_p >= 0.05


def _open(iv: Interval, unit: str, a_censored: bool, b_censored: bool) -> Interval:
    """Open the interval on a censored side (both the 95% and the 90% bounds)."""
    if not iv.defined:
        return iv
    lo, hi, lo90, hi90 = iv.lo, iv.hi, iv.lo90, iv.hi90
    if a_censored:
        hi = hi90 = math.inf
    if b_censored:
        lo = lo90 = 0.0 if unit == "x" else -math.inf
    return Interval(iv.test, iv.estimate, lo, hi, lo90, hi90, iv.sd, iv.n)


def measure(test: str, a: Iterable[float], b: Iterable[float], unit: str, a_censored: bool = False,
            b_censored: bool = False) -> Effect:
    """The effect of arm values `a` against `b` under the declared `test`: mean difference in
    percentage points (values are fractions; "pp") or ratio of geometric means ("x", on logs).
    For "paired", `a` and `b` are the values of the same seeds in the same order (NaN pairs
    are dropped). A ratio with a non-positive value has no estimate."""
    a, b = [float(x) for x in a], [float(x) for x in b]
    if test == "paired":
        keep = [(x, y) for x, y in zip(a, b, strict=True) if not (math.isnan(x) or math.isnan(y))]
        a, b = [x for x, _ in keep], [y for _, y in keep]
    else:
        a, b = [x for x in a if not math.isnan(x)], [x for x in b if not math.isnan(x)]
    empty = Interval(test, NAN, NAN, NAN, NAN, NAN, NAN, min(len(a), len(b)))
    if unit == "x" and any(x <= 0 for x in a + b):
        return Effect(unit, empty, len(a), len(b))
    if not a or not b:
        return Effect(unit, empty, len(a), len(b))
    if unit == "pp":
        iv = compare(test, [100 * x for x in a], [100 * x for x in b])
    else:
        iv = compare(test, a, b, log=True)
    bound = "?" if a_censored and b_censored else "≥" if a_censored else "≤" if b_censored else ""
    f = np.log if unit == "x" else np.asarray
    p = sign_flip_p(f(a) - f(b)) if test == "paired" and not bound else NAN  # a bound's difference is no value
    return Effect(unit, _open(iv, unit, a_censored, b_censored), len(a), len(b), bound, sign_flip_p=p)

