"""repro.stats: paired and Welch intervals, log ratios, seed counts, the four verdicts."""

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats as sps

from repro import stats
from repro.stats import CONTRADICTED, INCONCLUSIVE, NO_EFFECT, REPRODUCED

finite = st.floats(-50, 50, allow_nan=False, allow_infinity=False)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(finite, finite), min_size=2, max_size=12))
def test_paired_interval_is_scipys_one_sample_t_on_the_differences(pairs):
    a, b = np.array(pairs).T
    iv = stats.paired(a, b)
    d = a - b
    assert iv.estimate == pytest.approx(d.mean(), abs=1e-9)
    if np.ptp(d) > 1e-9:
        lo, hi = sps.t.interval(0.95, len(d) - 1, loc=d.mean(), scale=sps.sem(d))
        assert (iv.lo, iv.hi) == pytest.approx((lo, hi), rel=1e-6, abs=1e-9)
        lo90, hi90 = sps.t.interval(0.90, len(d) - 1, loc=d.mean(), scale=sps.sem(d))
        assert (iv.lo90, iv.hi90) == pytest.approx((lo90, hi90), rel=1e-6, abs=1e-9)


def test_pairing_removes_the_shared_seed_effect():
    """Runs that share a seed move together: the paired interval is far tighter than Welch's."""
    seed_effect = np.array([-2.0, -1.0, 0.0, 1.0, 2.0])
    a, b = 30 + seed_effect + 0.5 + np.array([0.01, -0.02, 0.0, 0.02, -0.01]), 30 + seed_effect
    p, w = stats.paired(a, b), stats.welch(a, b)
    assert p.lo > 0.4 and p.hi < 0.6
    assert w.lo < 0 < w.hi
    assert p.estimate == pytest.approx(w.estimate)


def test_welch_matches_scipy():
    a, b = [1.0, 2.0, 4.0, 3.5], [0.5, 0.7, 1.9]
    iv = stats.welch(a, b)
    r = sps.ttest_ind(a, b, equal_var=False).confidence_interval(0.95)
    assert (iv.lo, iv.hi) == pytest.approx((r.low, r.high), rel=1e-9)


def test_fewer_than_two_values_give_no_interval():
    assert not stats.paired([1.0], [2.0]).defined
    assert not stats.welch([1.0, 2.0], [2.0]).defined
    assert stats.paired([], []).n == 0
    with pytest.raises(ValueError):
        stats.paired([1.0, 2.0], [1.0])


def test_ratio_on_logs_is_a_geometric_mean_ratio():
    a, b = [12.0, 18.0, 24.0], [2.0, 3.0, 4.0]
    iv = stats.compare("paired", a, b, log=True)
    assert iv.estimate == pytest.approx(6.0)
    assert (iv.lo, iv.hi) == pytest.approx((6.0, 6.0))  # constant ratio: (almost) no spread on logs
    iv = stats.compare("welch", [10.0, 14.0, 20.0], [2.0, 3.0, 3.5], log=True)
    assert iv.lo < iv.estimate < iv.hi
    assert math.log(iv.estimate) == pytest.approx(np.mean(np.log([10, 14, 20])) - np.mean(np.log([2, 3, 3.5])))
    with pytest.raises(ValueError):
        stats.compare("paired", [0.0, 1.0], [1.0, 1.0], log=True)
    with pytest.raises(ValueError):
        stats.compare("bayes", [1.0], [1.0])


def test_seeds_needed_follows_the_protocol_table():
    # protocol §4: s = 0.5 pp, D = 1.0 pp, Welch -> ~6 per arm; s = 0.3, D = 0.4 -> ~10
    assert stats.seeds_needed(0.5, 1.0, "welch") in (5, 6, 7)
    assert stats.seeds_needed(0.3, 0.4, "welch") in (10, 11, 12)
    assert stats.seeds_needed(1.7, 0.4, "welch") > 250
    # pairing with sd of differences s_d needs about half of Welch's n at s = s_d
    assert stats.seeds_needed(0.5, 0.5, "paired") < stats.seeds_needed(0.5, 0.5, "welch")
    assert stats.seeds_needed(float("nan"), 1.0, "paired") is None
    assert stats.seeds_needed(0.5, 0.0, "paired") is None


def iv(lo, hi, lo90=None, hi90=None):
    lo90 = lo if lo90 is None else lo90
    hi90 = hi if hi90 is None else hi90
    return stats.Interval("paired", (lo + hi) / 2, lo, hi, lo90, hi90, 1.0, 5)


SIZE = (-2.4, -0.4)  # "-1.4 pp +- 1.0"
SIGN = (-math.inf, 0.0)  # "lower" (a sign-only reference, e.g. ImageNet's size at CIFAR scale)


@pytest.mark.parametrize("lo,hi,band,expect", [
    (-2.5, -0.5, SIZE, REPRODUCED),     # the paper's side, overlaps its band
    (0.5, 2.0, SIZE, CONTRADICTED),     # excludes zero on the other side
    (-9.0, -6.0, SIZE, CONTRADICTED),   # wholly outside the band
    (-0.2, 0.2, SIZE, CONTRADICTED),    # a tight null contradicts a stated size
    (-0.2, 0.2, SIGN, NO_EFFECT),       # inside +- 0.3 against a sign-only claim
    (-1.0, 0.2, SIGN, INCONCLUSIVE),    # includes zero, reaches past the margin
    (-9.0, -6.0, SIGN, REPRODUCED),
])
def test_four_verdicts(lo, hi, band, expect):
    v, reason = stats.verdict(iv(lo, hi), 0.0, -1, band, (-0.3, 0.3))
    assert v == expect, reason


def test_no_effect_needs_a_declared_margin_and_uses_the_90_interval():
    assert stats.verdict(iv(-0.2, 0.2), 0.0, -1, SIGN, None)[0] == INCONCLUSIVE
    # 95% pokes past the margin, 90% inside: equivalence at 5% (TOST)
    assert stats.verdict(iv(-0.35, 0.35, -0.25, 0.25), 0.0, -1, SIGN, (-0.3, 0.3))[0] == NO_EFFECT
    assert stats.verdict(iv(-0.35, 0.35, -0.31, 0.25), 0.0, -1, SIGN, (-0.3, 0.3))[0] == INCONCLUSIVE


def test_ratio_verdicts_with_a_log_symmetric_band():
    band = (3.0, 12.0)  # 6x within a factor of 2
    assert stats.verdict(iv(4.0, 9.0), 1.0, 1, band, (1 / 1.1, 1.1))[0] == REPRODUCED
    assert stats.verdict(iv(1.3, 1.6), 1.0, 1, band, (1 / 1.1, 1.1))[0] == CONTRADICTED
    assert stats.verdict(iv(0.97, 1.04), 1.0, 1, band, (1 / 1.1, 1.1))[0] == CONTRADICTED  # also outside the band
    assert stats.verdict(iv(1.5, float("inf")), 1.0, 1, band, None)[0] == REPRODUCED  # censored: a lower bound


def test_undefined_interval_is_inconclusive():
    v, reason = stats.verdict(stats.paired([1.0], [0.0]), 0.0, -1, (-2, 0), (-0.3, 0.3))
    assert v == INCONCLUSIVE and "2 finished runs" in reason


def test_a_no_effect_claim_reads_no_effect_or_contradicted_never_reproduced():
    margin = (-0.3, 0.3)  # side 0: the claim is that nothing changes; its band is the margin
    assert stats.verdict(iv(-0.2, 0.25), 0.0, 0, margin, margin)[0] == NO_EFFECT
    assert stats.verdict(iv(0.4, 0.9), 0.0, 0, margin, margin)[0] == CONTRADICTED  # wholly past the margin
    assert stats.verdict(iv(-0.9, -0.35), 0.0, 0, margin, margin)[0] == CONTRADICTED
    assert stats.verdict(iv(0.1, 0.6), 0.0, 0, margin, margin)[0] == INCONCLUSIVE  # excludes 0, overlaps margin
    ratio = (1 / 1.05, 1.05)
    assert stats.verdict(iv(0.97, 1.03), 1.0, 0, ratio, ratio)[0] == NO_EFFECT
    assert stats.verdict(iv(1.1, 1.3), 1.0, 0, ratio, ratio)[0] == CONTRADICTED


@settings(max_examples=40, deadline=None)
@given(st.lists(st.integers(-300, 300).map(lambda x: x / 100), min_size=2, max_size=10))
def test_sign_flip_p_is_scipys_exact_randomization_test(d):
    """Differences in pp to two decimals, as the reports' are: the exact sign-flip p is
    scipy's permutation test over every sign pattern (its two-sided p: twice the nearer tail)."""
    ref = sps.permutation_test((np.array(d),), np.sum, permutation_type="samples", n_resamples=np.inf,
                               alternative="two-sided").pvalue
    assert stats.sign_flip_p(d) == pytest.approx(min(ref, 1.0), abs=1e-12)


def test_sign_flip_p_cannot_fall_below_two_over_two_to_the_n():
    for n in (2, 5, 8):
        assert stats.sign_flip_p([-0.5 - 0.1 * i for i in range(n)]) == 2 / 2**n  # all one side: the floor
    assert stats.sign_flip_p([1.0, -1.0]) == 1.0
    assert math.isnan(stats.sign_flip_p([1.0])) and math.isnan(stats.sign_flip_p([0.1] * 25))


def test_a_verdict_leans_on_t_only_where_the_interval_excludes_no_effect_and_the_test_does_not():
    five = stats.measure("paired", [-1.0, -1.1, -0.9, -1.2, -0.8], [0.0] * 5, "pp")  # p = 2 / 2^5
    assert five.excludes(0.0) and five.sign_flip_p == stats.sign_flip_floor(5) and five.leans_on_t(0.0)
    assert not five.excludes(-100.0) and not five.leans_on_t(-100.0)  # in pp: the interval covers -100
    six = stats.measure("paired", [-1.0, -1.1, -0.9, -1.2, -0.8, -1.05], [0.0] * 6, "pp")
    assert six.excludes(0.0) and not six.leans_on_t(0.0)  # 2 / 2^6 < 0.05: the test agrees
    assert not stats.measure("welch", [1.0, 1.1, 0.9], [0.0, 0.1, -0.1], "pp").leans_on_t(0.0)  # no test


def test_a_paired_effect_carries_its_sign_flip_p_and_a_bound_none():
    a, b = [0.20, 0.22, 0.25, 0.21, 0.24], [0.21, 0.24, 0.26, 0.23, 0.27]
    assert stats.measure("paired", a, b, "pp").sign_flip_p == 2 / 2**5
    assert stats.measure("paired", a, b, "x").sign_flip_p == 2 / 2**5  # on logs: the same signs here
    assert math.isnan(stats.measure("paired", a, b, "pp", a_censored=True).sign_flip_p)
    assert math.isnan(stats.measure("welch", a, b, "pp").sign_flip_p)
