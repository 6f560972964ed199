"""Tests for repro.report: the statistics, the verdict logic, and reports built from hand-made run directories."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from repro import report, rundir, scorecard, spec_file, stats
from repro.ablation import plan
from repro.errors import ReproError
from repro.report import effect_text
from repro.stats import CONTRADICTED, INCONCLUSIVE, NO_EFFECT, REPRODUCED
from tests.fixtures.rundirs import make_manifest, make_run


def verdict(lo, hi, null, side, band, margin=None):
    """repro.stats.verdict on a 95% interval [lo, hi] (its 90% interval the same here)."""
    return stats.verdict(stats.Interval("paired", (lo + hi) / 2, lo, hi, lo, hi, 1.0, 5), null, side, band, margin)


def measure(a, b, unit, a_censored=False, b_censored=False, test="welch"):
    return stats.measure(test, a, b, unit, a_censored, b_censored)


def welch_interval(a, b):
    iv = stats.welch(a, b)
    return iv.estimate, iv.lo, iv.hi

REPO = Path(__file__).resolve().parents[1]

SETTINGS = settings(max_examples=100, deadline=None)
FINITE = dict(allow_nan=False, allow_infinity=False)

# ----------------------------------------------------------------------------- verdict: edge cases

BAND = (-2.4, -0.4)  # paper -1.4 pp, tolerance 1.0


@pytest.mark.parametrize("lo,hi,expected", [
    (-2.0, -1.0, REPRODUCED),       # inside the band, excludes 0
    (-3.0, -2.4, REPRODUCED),       # touches the band's edge
    (-0.5, -0.1, REPRODUCED),       # small but overlapping the band, excludes 0
    (-0.5, 0.5, INCONCLUSIVE),      # includes no effect
    (-3.0, 0.0, INCONCLUSIVE),      # touches 0: does not exclude it
    (0.1, 0.5, CONTRADICTED),       # the other sign
    (-5.0, -3.0, CONTRADICTED),     # right sign, much too large
    (-0.3, -0.1, CONTRADICTED),     # right sign, too small for the tolerance
    (0.0, 0.0, CONTRADICTED),       # identical arms, zero variance: no effect at all
    (-1.4, -1.4, REPRODUCED),       # zero variance, exactly the paper
    (math.nan, math.nan, INCONCLUSIVE),  # n = 1: no interval
    (-2.0, math.nan, INCONCLUSIVE),
    (-math.inf, -1.0, REPRODUCED),  # censored baseline: open to the left
    (-math.inf, math.inf, INCONCLUSIVE),
])
def test_verdict_edges(lo, hi, expected):
    assert verdict(lo, hi, 0.0, -1, BAND)[0] == expected


def test_verdict_ratio_and_direction_and_at_least():
    ratio_band = (3.0, 12.0)  # 6x within a factor of 2
    assert verdict(4.0, 8.0, 1.0, +1, ratio_band)[0] == REPRODUCED
    assert verdict(7.5, math.inf, 1.0, +1, ratio_band)[0] == REPRODUCED  # censored ">= 7.5x"
    assert verdict(12.5, math.inf, 1.0, +1, ratio_band)[0] == CONTRADICTED  # even the bound is too large
    assert verdict(0.5, 0.9, 1.0, +1, ratio_band)[0] == CONTRADICTED  # tanh faster
    assert verdict(0.8, 3.5, 1.0, +1, ratio_band)[0] == INCONCLUSIVE
    assert verdict(0.8, 1.3, 1.0, +1, ratio_band)[0] == CONTRADICTED  # wholly below 6x - 3
    assert verdict(1.2, 1.8, 1.0, +1, ratio_band)[0] == CONTRADICTED  # faster, but far from 6x
    lower = (-math.inf, 0.0)  # direction: lower
    assert verdict(-9.0, -0.01, 0.0, -1, lower)[0] == REPRODUCED
    assert verdict(-1.0, 1.0, 0.0, -1, lower)[0] == INCONCLUSIVE
    assert verdict(0.01, 1.0, 0.0, -1, lower)[0] == CONTRADICTED
    at_least = (-math.inf, -0.5)  # "by over 1%", tolerance 0.5
    assert verdict(-3.0, -2.0, 0.0, -1, at_least)[0] == REPRODUCED
    assert verdict(-0.4, -0.1, 0.0, -1, at_least)[0] == CONTRADICTED
    with pytest.raises(ValueError):
        stats.verdict(stats.Interval("paired", 0.5, 1.0, 0.0, 1.0, 0.0, 1.0, 3), 0.0, -1, BAND, None)


@SETTINGS
@given(st.floats(-3, 3, allow_nan=False), st.floats(0, 3, allow_nan=False), st.floats(0.05, 2, allow_nan=False))
def test_no_effect_is_the_90_interval_inside_the_margin(centre, half, margin):
    """With a margin, *no effect* is exactly TOST: the 90% interval inside +- margin, and only
    when the interval is not already reproduced or contradicted (sign-only claim)."""
    lo, hi = centre - half, centre + half
    v = verdict(lo, hi, 0.0, -1, (-math.inf, 0.0), (-margin, margin))[0]
    inside = -margin <= lo and hi <= margin
    if v == NO_EFFECT:
        assert inside
    elif inside:
        assert v in (REPRODUCED, CONTRADICTED)
    assert verdict(lo, hi, 0.0, -1, (-math.inf, 0.0), None)[0] != NO_EFFECT


# ----------------------------------------------------------------------------- verdict: properties

finite = st.floats(-100, 100, **FINITE)


@st.composite
def claims(draw):
    """(null, side, band) for 'about', 'at-least' and 'direction' claims, in pp or x."""
    null = draw(st.sampled_from([0.0, 1.0]))
    kind = draw(st.sampled_from(["about", "at-least", "direction"]))
    side = draw(st.sampled_from([-1, 1]))
    if kind == "direction":
        return null, side, ((null, math.inf) if side > 0 else (-math.inf, null))
    paper = null + side * draw(st.floats(0.01, 50, **FINITE))
    tol = draw(st.floats(0, 10, **FINITE))
    if kind == "at-least":
        return null, side, ((paper - tol, math.inf) if side > 0 else (-math.inf, paper + tol))
    return null, side, (paper - tol, paper + tol)


@st.composite
def intervals(draw):
    a, b = sorted([draw(finite), draw(finite)])
    return a, b


@SETTINGS
@given(claims(), intervals())
def test_verdict_definition(claim, iv):
    null, side, (blo, bhi) = claim
    lo, hi = iv
    v, why = verdict(lo, hi, null, side, (blo, bhi))
    same = lo > null if side > 0 else hi < null
    opposite = hi < null if side > 0 else lo > null
    overlaps = lo <= bhi and hi >= blo
    assert v in (REPRODUCED, CONTRADICTED, INCONCLUSIVE) and why  # no margin: never "no effect"
    assert (v == REPRODUCED) == (same and overlaps)
    assert (v == CONTRADICTED) == (opposite or not overlaps)
    if v == INCONCLUSIVE:
        assert lo <= null <= hi  # only an interval including "no effect" is left undecided


@SETTINGS
@given(claims(), intervals())
def test_verdict_mirror_symmetry(claim, iv):
    """Negating every effect (and the paper's sign) changes no verdict."""
    null, side, (blo, bhi) = claim
    lo, hi = iv
    assert verdict(lo, hi, null, side, (blo, bhi))[0] == verdict(-hi, -lo, -null, -side, (-bhi, -blo))[0]


@SETTINGS
@given(claims(), intervals(), st.floats(0, 50, **FINITE), st.floats(0, 50, **FINITE))
def test_widening_never_flips_to_contradicted(claim, iv, wl, wh):
    """A wider interval (less evidence) never turns a reproduced or inconclusive verdict into
    contradicted, and an inconclusive one stays inconclusive."""
    null, side, band = claim
    lo, hi = iv
    narrow = verdict(lo, hi, null, side, band)[0]
    wide = verdict(lo - wl, hi + wh, null, side, band)[0]
    if narrow in (REPRODUCED, INCONCLUSIVE):
        assert wide != CONTRADICTED
    if narrow == INCONCLUSIVE:
        assert wide == INCONCLUSIVE


@SETTINGS
@given(claims(), st.floats(-60, 60, **FINITE), st.integers(1, 6), st.integers(1, 6), st.floats(0, 1, **FINITE))
def test_zero_variance_arms(claim, delta, na, nb, base):
    """Synthetic arms with no spread: the interval is the point effect, so the verdict is
    decided by where the effect lies (n >= 2), or inconclusive (n = 1)."""
    null, side, (blo, bhi) = claim
    if null == 1.0:  # ratio claims: arms are positive numbers, the effect is a ratio
        a, b = [2.0 * math.exp(delta / 20)] * na, [2.0] * nb
        eff = measure(a, b, "x")
        d = eff.estimate
    else:
        a, b = [base + delta / 100] * na, [base] * nb
        eff = measure(a, b, "pp")
        d = eff.estimate
        assert d == pytest.approx(delta, abs=1e-9)
    v = verdict(eff.lo, eff.hi, null, side, (blo, bhi))[0]
    if min(na, nb) < 2:
        assert v == INCONCLUSIVE and math.isnan(eff.lo)
        return
    assert eff.lo == pytest.approx(d) and eff.hi == pytest.approx(d)
    point = verdict(d, d, null, side, (blo, bhi))[0]
    assert v == point


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # scipy on nearly identical samples
@settings(max_examples=50, deadline=None)
@given(st.lists(st.floats(0, 1, **FINITE), min_size=2, max_size=8),
       st.lists(st.floats(0, 1, **FINITE), min_size=2, max_size=8))
def test_welch_matches_scipy(a, b):
    from scipy import stats

    d, lo, hi = welch_interval(a, b)
    assert d == pytest.approx(np.mean(a) - np.mean(b), abs=1e-12)
    if np.ptp(a) == 0 and np.ptp(b) == 0:
        assert lo == hi == d
        return
    if np.var(a, ddof=1) / len(a) + np.var(b, ddof=1) / len(b) < 1e-12:
        return  # scipy's own arithmetic gets unstable here
    ci = stats.ttest_ind(a, b, equal_var=False).confidence_interval(0.95)
    assert lo == pytest.approx(ci.low, rel=1e-6, abs=1e-9) and hi == pytest.approx(ci.high, rel=1e-6, abs=1e-9)


def test_measure_units_and_censoring():
    eff = measure([0.10, 0.12, 0.11], [0.13, 0.14, 0.15], "pp")
    d, lo, hi = welch_interval([10, 12, 11], [13, 14, 15])
    assert (eff.estimate, eff.lo, eff.hi) == pytest.approx((d, lo, hi)) and eff.n_arm == 3
    paired = measure([0.10, 0.12, 0.11], [0.13, 0.14, 0.15], "pp", test="paired")
    p = stats.paired([10, 12, 11], [13, 14, 15])
    assert (paired.estimate, paired.lo, paired.hi, paired.test) == pytest.approx((p.estimate, p.lo, p.hi, "paired"))
    assert measure([0.1, math.nan], [0.2, 0.3], "pp", test="paired").n_arm == 1  # a NaN drops its pair
    assert effect_text(eff).startswith("-3.00 pp [")
    r = measure([30.0, 36.0, 40.0], [6.0, 6.0, 7.0], "x")
    gd, glo, ghi = welch_interval(np.log([30, 36, 40]), np.log([6, 6, 7]))
    assert (r.estimate, r.lo, r.hi) == pytest.approx((math.exp(gd), math.exp(glo), math.exp(ghi)))
    c = measure([30.0, 30.0, 30.0], [6.0, 5.0, 7.0], "x", a_censored=True)  # tanh hit its cap
    assert c.bound == "≥" and c.hi == math.inf and c.lo > 1 and effect_text(c).startswith("≥ 5.0")
    assert c.interval.hi90 == math.inf  # a censored side is open at 90% too: never "no effect"
    assert effect_text(c).endswith("∞)")
    b = measure([0.1, 0.2], [0.3, 0.4], "pp", b_censored=True)
    assert b.lo == -math.inf and b.bound == "≤"
    one = measure([0.1], [0.2, 0.3], "pp")
    assert math.isnan(one.lo) and "no interval" in effect_text(one)
    nan = measure([math.nan, 0.1, 0.2], [0.3, 0.4], "pp")  # missing values are dropped
    assert nan.n_arm == 2 and not math.isnan(nan.lo)
    same = measure([0.4, 0.4, 0.4], [0.4, 0.4], "pp")  # identical arms: exactly no effect, a point interval
    assert (same.estimate, same.lo, same.hi) == (0.0, 0.0, 0.0)
    empty = measure([], [0.1, 0.2], "pp")
    assert math.isnan(empty.estimate) and effect_text(empty).startswith("n/a")
    assert math.isnan(measure([0.0, 1.0], [1.0, 2.0], "x").estimate)  # a ratio needs positive values


# ----------------------------------------------------------------------------- reports from run directories

LRN_ON = [0.100, 0.110, 0.120]  # test errors per seed
LRN_OFF = [0.130, 0.135, 0.150]
LRN_GAIN = [0.125, 0.130, 0.145]  # the constant-gain control (alpha = 0)


def _lrn_fixture(tmp_path: Path, **kw) -> tuple[Path, Path]:
    spec = spec_file.load("lrn")
    results, reports = tmp_path / "results", tmp_path / "reports"
    entries = []
    for arm, finals in (("lrn", LRN_ON), ("none", LRN_OFF), ("lrn-gain", LRN_GAIN)):
        for seed, v in enumerate(finals):
            curve = [(0.6, 0.6), (0.4, 0.3), (v - 0.05, v)]
            entries.append(make_run(results, spec, "cifar", arm, seed, curve, test_error=v, wall_seconds=600.0,
                                    **kw.get(f"{arm}{seed}", {})))
    # an unfinished seed of each kind: listed, not used
    entries.append(make_run(results, spec, "cifar", "lrn", 3, [(0.6, 0.6)], status="partial"))
    entries.append(make_run(results, spec, "cifar", "none", 3, [], status="pending"))
    entries.append(make_run(results, spec, "cifar", "lrn-gain", 3, [], status="pending"))
    make_manifest(results, spec, "cifar", entries, seeds=[0, 1, 2, 3])
    return results, reports


def test_report_from_run_dirs(tmp_path):
    results, reports = _lrn_fixture(tmp_path)
    md = report.write_report("lrn", results, reports)
    text = md.read_text(encoding="utf-8")
    first = text.splitlines()[0]
    assert first.startswith("# Local response normalization") and "cifar scale" in first  # no smoke banner
    # provenance
    for s in ("cifar10 (sha256 abcdef012345…", "2.14.1+cpu", "0123456789", "cpu (Test CPU)", "0, 1, 2, 3",
              "90.0 min of training", "9 finished, 2 pending, 1 partial", "| epochs (cap)     | 30",
              "train 45,000, holdout 5,000, test 10,000, training-error slice 5,000", "c0de0000f00d (9 runs)",
              "fp32, channels_last True", "linearly interpolated", "newest finished 2026-01-01T01:00:00+00:00"):
        assert s in text, s
    assert "Warning" not in text
    # the claim rows (lrn vs none, lrn vs lrn-gain): a paired interval on the per-seed differences, Welch beside it
    claims = text.split("## Claims")[1].split("##")[0]
    for against, finals in (("none", LRN_OFF), ("lrn-gain", LRN_GAIN)):
        row = next(r for r in claims.splitlines() if f"lrn vs {against} " in r)
        p = stats.paired([100 * x for x in LRN_ON], [100 * x for x in finals])
        assert f"{p.estimate:+.2f} pp [{p.lo:+.2f}, {p.hi:+.2f}]" in row
        d, lo, hi = welch_interval([100 * x for x in LRN_ON], [100 * x for x in finals])
        assert f"{d:+.2f} pp [{lo:+.2f}, {hi:+.2f}]" in row  # the secondary Welch column
        assert "paired n=3" in row and "lower (sign only)" in row and "**reproduced**" in row
    assert "This ablation tests 2 claims at once" in text
    assert ("- lrn vs none (test_error): exact sign-flip test (all 8 sign patterns of the 3 differences; no normal "
            "assumption) p = 0.25: the interval's exclusion of no effect rests on the t distribution's normal "
            "assumption (with 3 pairs no p can fall below 0.25).") in text
    assert "-1.4 pp (ImageNet top-1) is the reference" in text  # the note says what the paper's number is
    # per-arm mean +- std and n
    on = np.array(LRN_ON) * 100
    assert f"{on.mean():.2f} ± {on.std(ddof=1):.2f}" in text
    arm_table = text.split("## Per arm")[1].split("##")[0]
    cells = {c[0]: c for c in ([x.strip() for x in r.strip().strip("|").split("|")]
                               for r in arm_table.splitlines() if r.startswith("| "))}
    assert cells["arm"][2] == "n" and [cells[a][2] for a in ("lrn", "none", "lrn-gain")] == ["3", "3", "3"]
    # CSV: every run, percentages, the new record's columns
    csv = pd.read_csv(reports / "lrn.csv")
    assert len(csv) == 12 and set(csv["status"]) == {"finished", "partial", "pending"}
    for col in ("ablation", "scale", "arm", "seed", "hash", "status", "in_analysis", "epochs_run", "test_error_pct",
                "final_train_error_pct", "final_train_error_running_pct", "final_holdout_error_pct", "gap_pp",
                "epochs_to_converge", "wall_seconds", "device", "torch", "git_revision", "code_fingerprint",
                "dataset_sha256"):
        assert col in csv.columns, col
    assert "epochs_to_leave_chance" in csv.columns
    assert not any(c.startswith("val") or "_val_" in c for c in csv.columns)  # holdout and test, never "val"
    used = csv[csv["in_analysis"]]
    assert len(used) == 9
    assert sorted(used.loc[used["arm"] == "lrn", "test_error_pct"]) == pytest.approx([10.0, 11.0, 12.0])
    # plots and sidecar
    for png in ("lrn-train.png", "lrn-holdout.png"):
        assert (reports / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert b"matplotlib" not in (reports / png).read_bytes()  # no version metadata
    assert "![training error per epoch](lrn-train.png)" in text
    side = json.loads((reports / "lrn.json").read_text())
    assert side["scale"] == "cifar" and [c["verdict"] for c in side["claims"]] == [REPRODUCED, REPRODUCED]
    assert str(tmp_path) not in text + (reports / "lrn.csv").read_text()  # no absolute paths


def test_report_is_a_pure_function_of_its_records(tmp_path):
    """Built twice (another day, another folder), the markdown, CSV and plots are byte-identical."""
    results, reports = _lrn_fixture(tmp_path / "a")
    report.write_report("lrn", results, reports)
    import shutil

    shutil.copytree(results, tmp_path / "b" / "results")
    report.write_report("lrn", tmp_path / "b" / "results", tmp_path / "b" / "reports")
    for name in ("lrn.md", "lrn.csv", "lrn.json", "lrn-train.png", "lrn-holdout.png"):
        assert (reports / name).read_bytes() == (tmp_path / "b" / "reports" / name).read_bytes(), name


def test_paired_claims_match_seeds_and_say_which_dropped(tmp_path):
    spec = spec_file.load("lrn")
    results, reports = tmp_path / "results", tmp_path / "reports"
    entries = [make_run(results, spec, "cifar", "lrn", s, [(0.2, 0.2)], test_error=0.10 + 0.01 * s) for s in (0, 1, 2)]
    entries += [make_run(results, spec, "cifar", "none", s, [(0.2, 0.2)], test_error=0.12 + 0.01 * s) for s in (0, 1)]
    make_manifest(results, spec, "cifar", entries, seeds=[0, 1, 2])
    _, _, _, rows = report.build("lrn", results, reports_dir=reports)
    eff = rows[0]["effect"]
    assert eff.test == "paired" and eff.interval.n == 2 and eff.dropped == (2,)
    assert eff.estimate == pytest.approx(-2.0) and (eff.lo, eff.hi) == pytest.approx((-2.0, -2.0))
    text = report.write_report("lrn", results, reports).read_text()
    assert "seed(s) 2 finished in only one arm and are left out of both" in text


def test_no_effect_and_seed_advice(tmp_path):
    """A tight null inside the margin is *no effect*; a wide one is inconclusive, with a seed count."""
    spec = spec_file.load("pooling")  # margin 0.3 pp, paired
    results, reports = tmp_path / "results", tmp_path / "reports"
    jitter = [0.0005, -0.0005, 0.0003, -0.0002, 0.0001]
    entries = []
    for s, j in enumerate(jitter):
        entries.append(make_run(results, spec, "cifar", "overlapping", s, [(0.2, 0.2)], test_error=0.15 + 0.01 * s + j))
        entries.append(make_run(results, spec, "cifar", "non-overlapping", s, [(0.2, 0.2)], test_error=0.15 + 0.01 * s))
    make_manifest(results, spec, "cifar", entries, seeds=list(range(5)))
    _, _, _, rows = report.build("pooling", results, reports_dir=reports)
    assert rows[0]["verdict"] == NO_EFFECT, rows[0]["why"]
    iv = rows[0]["effect"].interval  # the deciding 90% interval is printed, to three places
    assert rows[0]["why"] == (f"the 90% interval [{iv.lo90:+.3f}, {iv.hi90:+.3f}] lies inside the smallest effect "
                              "of interest (TOST, 5%)")
    spec_g = spec_file.load("gpus")  # welch, margin 0.5
    entries = [make_run(results, spec_g, "cifar", arm, s, [(0.2, 0.2)], test_error=v)
               for arm, vals in (("two", [0.10, 0.14, 0.12]), ("one", [0.11, 0.15, 0.12])) for s, v in enumerate(vals)]
    make_manifest(results, spec_g, "cifar", entries, seeds=[0, 1, 2])
    _, _, _, rows = report.build("gpus", results, reports_dir=reports)
    iv = rows[0]["effect"].interval
    assert rows[0]["verdict"] == INCONCLUSIVE and iv.test == "welch"
    n = stats.seeds_needed(iv.sd, 0.5, "welch")
    assert f"predicts {n} seeds per arm for 80% power against the margin" in rows[0]["advice"]
    text = report.write_report("gpus", results, reports).read_text()
    assert "welch n=3/3" in text and f"predicts {n} seeds per arm" in text
    assert "multiply-adds per image" in text and "`one` (alexnet-cifar, columns=1)" in text


def test_a_contradicted_claim_that_also_passes_the_equivalence_test_says_both(tmp_path):
    """pca-colour's claim is -1 pp ± 0.5 with a 0.5 pp margin: an effect near zero lies wholly outside
    the band (contradicted) and inside the margin (no effect); the reason says both."""
    spec = spec_file.load("pca-colour")
    results, reports = tmp_path / "results", tmp_path / "reports"
    jitter = [0.0005, -0.0005, 0.0003, -0.0002, 0.0001]
    entries = [make_run(results, spec, "cifar", arm, s, [(0.2, 0.2)], test_error=0.15 + 0.01 * s + (j if arm == "on"
                                                                                                  else 0.0))
               for s, j in enumerate(jitter) for arm in ("on", "off")]
    make_manifest(results, spec, "cifar", entries, seeds=list(range(5)))
    _, _, _, rows = report.build("pca-colour", results, reports_dir=reports)
    iv = rows[0]["effect"].interval
    assert rows[0]["verdict"] == CONTRADICTED
    assert rows[0]["why"].endswith(f"its 90% interval [{iv.lo90:+.3f}, {iv.hi90:+.3f}] also lies inside the smallest "
                                   "effect of interest, so it reads *no effect* as well")


def test_an_evaluation_arm_gets_no_welch_interval_and_paired_designs_get_paired_beside_welch(tmp_path):
    """ten-crop's `ten` arm re-evaluates `centre`'s own nets: not independent samples, so its claim
    has no Welch column and its other effects are paired only; lrn's other effects carry both."""
    spec = spec_file.load("ten-crop")
    results, reports = tmp_path / "results", tmp_path / "reports"
    entries = [make_run(results, spec, "cifar", "centre", s, [(0.3, 0.2)], test_error=0.25 + 0.01 * s,
                        test_10view=0.23 + 0.011 * s) for s in range(3)]
    entries += [make_run(results, spec, "cifar", "ten", s, [], status="pending") | {"evaluates": "centre"}
                for s in range(3)]
    make_manifest(results, spec, "cifar", entries, seeds=[0, 1, 2])
    text = report.write_report("ten-crop", results, reports).read_text(encoding="utf-8")
    claims = text.split("## Claims")[1].split("\n## ")[0]
    assert "welch [95% CI]" not in claims and "ten vs centre" in claims
    results, reports = _lrn_fixture(tmp_path / "lrn")
    other = report.write_report("lrn", results, reports).read_text(encoding="utf-8").split("### Other effects")[1]
    assert "| welch (95% CI)" in other and "| paired (95% CI)" in other


def test_the_scorecard_says_when_only_the_selection_stage_has_run(tmp_path):
    spec = spec_file.load("lrn-vs-batchnorm")
    results, reports = tmp_path / "results", tmp_path / "reports"
    entries = [make_run(results, spec, "cifar", "lrn", 1000, [(0.3, 0.26)], stage="selection", grid_value=lr,
                        device_name=cpu) for lr, cpu in ((0.005, "Test CPU"), (0.01, "Other CPU"))]
    entries += [make_run(results, spec, "cifar", "none", 1000, [], stage="selection", grid_value=0.01,
                         status="pending")]
    make_manifest(results, spec, "cifar", entries, seeds=[0, 1, 2, 3, 4])
    manifest = json.loads(rundir.manifest_path(results, "lrn-vs-batchnorm", "cifar").read_text())
    manifest["selection"] = {"key": "optim.lr", "by": "final_holdout_error", "chosen": {}}
    rundir.write_manifest(rundir.manifest_path(results, "lrn-vs-batchnorm", "cifar"), manifest)
    text = report.write_report("lrn-vs-batchnorm", results, reports).read_text(encoding="utf-8")
    selection = text.split("## Selection")[1].split("\n## ")[0]
    assert "| machine " in selection and "cpu (Other CPU)" in selection and "cpu (Test CPU)" in selection
    card = scorecard.write_scorecard(reports).read_text(encoding="utf-8")
    assert "| 2/3 selection " in card
    assert "superseded" not in card  # no report predates the protocol here


def test_the_answer_comes_first_one_line_per_claim_with_its_verdict(tmp_path):
    results, reports = _lrn_fixture(tmp_path)
    text = report.write_report("lrn", results, reports).read_text(encoding="utf-8")
    _, _, _, rows = report.build("lrn", results, reports_dir=reports)
    answer = text[:text.index("## Provenance")]
    assert "**Answer so far (9 of 12 runs finished):**" in answer
    for r in (r for r in rows if r["claim"] is not None):
        whose = "the paper" if r["claim"].section.startswith("§") else "the claim"  # lrn-gain: a control
        assert (f"- top-1 test error, {r['arm']} vs {r['against']}: {report.effect_text(r['effect'])} "
                f"(paired n=3; {whose}: lower (sign only)): **{r['verdict']}**.") in answer


def test_the_answer_counts_every_run_that_ended_outrun_and_diverged_included(tmp_path):
    """A selection run stopped as outrun, or a diverged run, is done: never trained again."""
    results, reports = _lrn_fixture(tmp_path)
    _, _, runs, rows = report.build("lrn", results, reports_dir=reports)
    pending = runs.index[runs["status"] == "pending"]
    runs.loc[pending[0], "status"], runs.loc[pending[1], "status"] = "outrun", "diverged"
    assert report._answer_lines(rows, runs)[0] == "**Answer so far (11 of 12 runs finished):**"


def test_a_claim_that_is_not_the_papers_says_so_where_the_papers_value_would_stand():
    precision = spec_file.load("precision").claims[0]  # the project's acceptance rule for bf16
    lrn = spec_file.load("lrn").claims[0]  # §3.3
    assert report._expected(precision) == "no effect (within ± 0.3 pp); not the paper's claim"
    assert report._expected(lrn) == "lower (sign only)"


def test_differing_fingerprints_are_flagged(tmp_path):
    results, reports = _lrn_fixture(tmp_path, none2={"fingerprint": "0dd0dd0dd0dd", "git": "fedcba9876543210"})
    text = report.write_report("lrn", results, reports).read_text()
    assert "c0de0000f00d (8 runs), 0dd0dd0dd0dd (1 run)" in text
    assert "> **Warning: 1 run(s) were trained by code whose fingerprint differs from the majority's " \
           "(c0de0000f00d): none/2 (0dd0dd0dd0dd)" in text
    assert "0123456789, fedcba9876" in text  # both revisions
    assert ("What differs: `git diff 0123456789 fedcba9876 -- repro/models repro/layers.py repro/optim.py "
            "repro/data repro/train.py repro/placement.py repro/distributed.py`.") in text


def test_runs_from_two_machines_say_how_many_each(tmp_path):
    results, reports = _lrn_fixture(tmp_path, none2={"device_name": "Other CPU"})
    text = report.write_report("lrn", results, reports).read_text()
    assert "| cpu (Test CPU) (8 runs), cpu (Other CPU) (1 run) " in text
    results, reports = _lrn_fixture(tmp_path / "one")
    assert "| cpu (Test CPU) " in report.write_report("lrn", results, reports).read_text()  # one machine: no count


def test_a_paired_claim_without_pairs_says_so_not_that_nothing_finished(tmp_path):
    """lrn has two finished runs and none one, of another seed: no pair yet, which the claim row
    says as pairs (an arm with runs is not 'no finished runs'); Welch's empty side says whose."""
    spec = spec_file.load("lrn")
    results, reports = tmp_path / "results", tmp_path / "reports"
    entries = [make_run(results, spec, "cifar", "lrn", s, [(0.3, 0.2)]) for s in (0, 1)]
    entries += [make_run(results, spec, "cifar", "none", 2, [(0.3, 0.25)])]
    make_manifest(results, spec, "cifar", entries, seeds=[0, 1, 2])
    text = report.write_report("lrn", results, reports).read_text(encoding="utf-8")
    row = next(r for r in text.split("## Claims")[1].splitlines() if "lrn vs none " in r)
    assert "n/a (no seed finished in both arms)" in row
    assert "needs at least 2 seeds finished in both arms (has 0)" in row
    gain = next(r for r in text.split("## Claims")[1].splitlines() if "lrn vs lrn-gain " in r)
    assert gain.count("n/a (no seed finished in both arms)") == 1  # paired column
    assert "n/a (an arm has no finished runs)" in gain  # the Welch column beside it: lrn-gain has none


def test_smoke_reports_go_elsewhere_and_the_scorecard_lists_only_real_data(tmp_path):
    spec = spec_file.load("pooling")
    results, reports = tmp_path / "results", tmp_path / "reports"
    entries = [make_run(results, spec, "smoke", arm, seed, [(0.5, 0.5), (0.4, v)], dataset="synthetic",
                        synthetic=True)
               for arm, vals in (("overlapping", [0.40, 0.40]), ("non-overlapping", [0.40, 0.40]))
               for seed, v in enumerate(vals)]
    make_manifest(results, spec, "smoke", entries, seeds=[0, 1])
    md = report.write_report("pooling", results, reports)
    assert md == results / "smoke-reports" / "pooling.md" and not reports.exists()
    lines = md.read_text(encoding="utf-8").splitlines()
    assert lines[0] == report.SMOKE_BANNER
    text = "\n".join(lines)
    # identical arms, zero variance: a point interval at 0, inside the margin: no effect
    assert "+0.00 pp [+0.00, +0.00]" in text and "**no effect**" in text
    lrn_results, _ = _lrn_fixture(tmp_path / "lrn")
    report.write_report("lrn", lrn_results, reports)
    card = scorecard.write_scorecard(reports).read_text(encoding="utf-8")
    assert "smoke" not in card.split("never here")[1]
    head, every = card.split("## Every claim")
    assert "## The four questions" in head  # the headline questions lead
    pooling_q = spec.question  # the smoke report's pooling is listed as not yet run, nothing measured
    assert [r for r in head.splitlines() if pooling_q in r][0].split("|")[3].strip() == "not yet run"
    assert "[pooling]" not in card and "`pooling`" in every.split("No real-data report yet:")[1]
    lrn_rows = [r for r in every.splitlines() if r.startswith("| [lrn]")]
    assert [r.split("|")[4].strip() for r in lrn_rows] == ["top-1 test error, lrn vs none",
                                                          "top-1 test error, lrn vs lrn-gain"]
    for lrn_row in lrn_rows:
        assert "| cifar " in lrn_row and "**reproduced**" in lrn_row and "paired" in lrn_row
    head_lrn = [r for r in head.splitlines() if "[lrn](lrn.md)" in r]
    assert len(head_lrn) == 2 and all("(campaign in progress)" in r for r in head_lrn)  # 9 of 12 runs done
    assert every.count("| [") == 2 and "2 claims from 1 real-data report" in card
    assert "2026-01-01T01:00:00+00:00" in card  # dated by its records, not the clock


def test_report_n1_is_not_yet_measured_and_says_so(tmp_path):
    """One run an arm gives no interval, so no verdict: 'inconclusive' would read as a measured null."""
    spec = spec_file.load("gpus")
    results, reports = tmp_path / "results", tmp_path / "reports"
    entries = [make_run(results, spec, "cifar", "two", 0, [(0.3, 0.2)]),
               make_run(results, spec, "cifar", "one", 0, [(0.3, 0.25)])]
    make_manifest(results, spec, "cifar", entries, seeds=[0])
    text = report.write_report("gpus", results, reports).read_text(encoding="utf-8")
    assert "**not yet measured**" in text and "**inconclusive**" not in text
    assert "has 1 vs 1" in text and "no interval" in text and "--seeds 2" in text
    assert "no measured spread yet" in text


def test_report_epochs_to_target_censoring_and_interpolation(tmp_path):
    """A run that never reaches the target contributes its epochs as a lower bound; a crossing
    is interpolated between the evaluations around it."""
    spec = spec_file.load("dropout")  # target = 0.4
    results, reports = tmp_path / "results", tmp_path / "reports"
    entries = []
    for seed in range(3):
        entries.append(make_run(results, spec, "cifar", "none", seed, [(0.6, 0.6), (0.35, 0.4), (0.2, 0.35)],
                                every=0.5))
        entries.append(make_run(results, spec, "cifar", "dropout", seed, [(0.7, 0.6), (0.6, 0.5), (0.5, 0.45)],
                                every=0.5))
    make_manifest(results, spec, "cifar", entries, seeds=[0, 1, 2])
    _, _, runs, rows = report.build("dropout", results, reports_dir=reports)
    none = runs[runs["arm"] == "none"]
    # 0.6 at epoch 0.5, 0.35 at epoch 1.0: 0.4 is crossed 4/5 of the way, at 0.9
    assert list(none["epochs_to_target"]) == pytest.approx([0.9] * 3) and none["target_reached"].all()
    drop = runs[runs["arm"] == "dropout"]
    assert list(drop["epochs_to_target"]) == [1.5] * 3 and not drop["target_reached"].any()
    assert list(none["epochs_to_converge"]) == [1.5] * 3  # the last evaluation: 0.35 -> 0.2 is no plateau
    text = report.write_report("dropout", results, reports).read_text(encoding="utf-8")
    assert "≥ 1.5 ± 0.0" in text and "every 0.5 epochs; crossing times" in text


def test_records_roots_and_old_records(tmp_path):
    """Runs are read from the committed records first, then results; an old-format record
    (val_error, no running training error) reads as NaN and does not crash the report."""
    results, reports = _lrn_fixture(tmp_path)
    import shutil

    shutil.move(results / "lrn", reports / "records" / "lrn")  # as in a fresh clone: only the records
    md = report.write_report("lrn", tmp_path / "empty", reports)
    assert "**reproduced**" in md.read_text()
    d = next((reports / "records" / "lrn" / "lrn").glob("0-*"))
    (d / "metrics.jsonl").write_text('{"epoch": 1, "train_error": 0.5, "val_error": 0.4}\n')
    summary = json.loads((d / "summary.json").read_text())
    (d / "summary.json").write_text(json.dumps({"status": "finished", "final_val_error": 0.4,
                                                "epochs_run": summary["epochs_run"]}))
    text = report.write_report("lrn", tmp_path / "empty", reports).read_text()
    assert "paired n=2" in text


def test_report_without_runs_is_one_line_error(tmp_path):
    with pytest.raises(ReproError) as e:
        report.write_report("lrn", tmp_path / "results", tmp_path / "reports")
    assert "no runs of lrn" in str(e.value) and "repro ablate lrn" in str(e.value) and "\n" not in str(e.value)
    with pytest.raises(ReproError, match="no runs of any ablation"):
        scorecard.write_reports("all", tmp_path / "results", tmp_path / "reports")
    spec = spec_file.load("lrn")
    results = tmp_path / "results"
    make_manifest(results, spec, "smoke", [make_run(results, spec, "smoke", "lrn", 0, [], status="pending")], [0])
    with pytest.raises(ReproError, match="no finished runs of lrn"):
        report.write_report("lrn", results, tmp_path / "reports")


def test_report_all_skips_ablations_without_runs(tmp_path):
    results, reports = _lrn_fixture(tmp_path)
    paths = scorecard.write_reports("all", results, reports)
    assert [p.name for p in paths] == ["lrn.md"] and (reports / "README.md").exists()


def test_report_picks_latest_scale_unless_told(tmp_path):
    results, reports = _lrn_fixture(tmp_path)
    spec = spec_file.load("lrn")
    entries = [make_run(results, spec, "smoke", arm, s, [(0.5, 0.5)], dataset="synthetic", synthetic=True)
               for arm in ("lrn", "none") for s in (0, 1)]
    make_manifest(results, spec, "smoke", entries, [0, 1], updated_at="2026-01-02T00:00:00+00:00")
    assert report.write_report("lrn", results, reports).read_text().startswith(report.SMOKE_BANNER)
    assert "cifar scale" in report.write_report("lrn", results, reports, scale="cifar").read_text().splitlines()[0]


def test_bias_init_measures_how_long_the_holdout_loss_sits_at_chance(tmp_path):
    """epochs_to_leave_chance: when the holdout loss first falls to 0.9 ln 10 (interpolated);
    a run that never does gives its epochs run. The report adds a holdout-loss plot."""
    spec = spec_file.load("bias-init")
    results, reports = tmp_path / "results", tmp_path / "reports"
    entries = []
    for seed in range(2):  # the fixture's holdout loss is twice its holdout error
        entries.append(make_run(results, spec, "cifar", "one", seed, [(0.9, 1.15), (0.9, 1.1), (0.9, 1.05)],
                                every=0.25))
        entries.append(make_run(results, spec, "cifar", "tenth", seed, [(0.8, 1.1), (0.6, 0.9), (0.5, 0.8)],
                                every=0.25))
        entries.append(make_run(results, spec, "cifar", "zero", seed, [(0.6, 0.9), (0.5, 0.8), (0.4, 0.7)],
                                every=0.25))
    make_manifest(results, spec, "cifar", entries, seeds=[0, 1])
    _, _, runs, _ = report.build("bias-init", results, reports_dir=reports)
    at = {a: list(runs.loc[runs["arm"] == a, "epochs_to_leave_chance"]) for a in ("one", "tenth", "zero")}
    assert at["one"] == [0.75, 0.75]  # never below 2.07: its epochs run
    assert at["tenth"] == pytest.approx([0.25 + 0.25 * (2.2 - 0.9 * math.log(10)) / 0.4] * 2)
    assert at["zero"] == [0.25, 0.25]  # below at its first evaluation
    text = report.write_report("bias-init", results, reports).read_text(encoding="utf-8")
    assert "epochs at chance loss" in text and "![holdout loss per epoch](bias-init-holdout-loss.png)" in text
    assert (reports / "bias-init-holdout-loss.png").is_file()
    lrn_text = report.write_report("lrn", *_lrn_fixture(tmp_path / "lrn")).read_text(encoding="utf-8")
    assert "holdout loss per epoch" not in lrn_text  # only for specs about the loss


@pytest.mark.parametrize("every,enough", [(0.5, True), (10.0, False)])
def test_figure_1s_cap_check_says_whether_twice_the_papers_ratio_fits_under_the_cap(tmp_path, every, enough):
    """Issue 11: tanh's cap must be at least 12x ReLU's crossing time (twice the paper's 6x)."""
    spec = spec_file.load("activation")  # cifar caps: relu 30 epochs, tanh 120
    cap = spec.config("tanh", "cifar", 0, 0.01).epochs
    results, reports = tmp_path / "results", tmp_path / "reports"
    entries = []
    for seed in range(2):
        entries.append(make_run(results, spec, "cifar", "relu", seed, [(0.6, 0.6), (0.2, 0.3)], every=every,
                                grid_value=0.002))
        entries.append(make_run(results, spec, "cifar", "tanh", seed, [(0.8, 0.8), (0.5, 0.6)], every=every,
                                grid_value=0.01))
    make_manifest(results, spec, "cifar", entries, seeds=[0, 1])
    text = report.write_report("activation", results, reports).read_text(encoding="utf-8")
    crossing = every + (0.6 - 0.25) / 0.4 * every  # relu: 0.6 at `every`, 0.2 at 2 * every
    line = next(x for x in text.splitlines() if x.startswith("Cap check (tanh vs relu)"))
    assert f"cap of {cap} epochs is {cap / crossing:.1f}x" in line and f"({crossing:.2f} epochs)" in line
    assert ("would still be measured" in line) == enough and ("raise it" in line) == (not enough)


def test_a_sequential_extension_is_flagged_beside_the_claims(tmp_path):
    """A scale's `extended` (seeds raised after a look at the results) is printed under the
    claims with what it does to the intervals; a spec without one prints nothing of the kind."""
    text = (REPO / "ablations" / "lrn.toml").read_text()
    assert 'extended = "from 5 to 15' in text
    spec = spec_file.loads(text.replace("[scales.smoke]\n", '[scales.smoke]\nextended = "from 1 to 2, after a look"\n'),
                           "ablations/lrn.toml", "lrn")
    assert spec.scales["smoke"].extended == "from 1 to 2, after a look"
    lines = report._extension_note(spec, "smoke")
    assert lines[0].startswith("> **Sequential extension:**") and "(from 1 to 2, after a look)" in lines[0]
    assert "coverage is somewhat below" in lines[0]
    assert report._extension_note(spec_file.load("pooling"), "cifar") == []
    assert "> **Sequential extension:** the seed count was raised" in (REPO / "reports" / "lrn.md").read_text()


def test_an_edited_spec_says_whether_it_still_plans_these_runs(tmp_path):
    """The manifest keeps the sha256 of the TOML its runs were planned with. Edited since, the
    provenance says whether the TOML as it stands still plans exactly these runs (an edit to
    its comments or wording) or how many runs the records lack; unedited, it says neither."""
    results, reports = _lrn_fixture(tmp_path)
    path = rundir.manifest_path(results, "lrn", "cifar")

    def ablation_row() -> str:
        text = report.write_report("lrn", results, reports).read_text(encoding="utf-8")
        return next(r for r in text.splitlines() if r.startswith("| ablation "))

    assert "edited" not in ablation_row()
    m = json.loads(path.read_text())
    rundir.write_manifest(path, {**m, "spec_sha256": "0" * 64})
    assert "edited since these runs, which it still plans: same config hashes" in ablation_row()
    rundir.write_manifest(path, {**m, "spec_sha256": "0" * 64, "seeds": [0, 1, 2, 3, 4]})
    assert "edited since these runs: it now plans 3 run(s) these records do not have" in ablation_row()
    assert plan.runs_not_in(spec_file.load("lrn"), {**m, "scale": "no-such-scale"}) is None


def test_a_ratio_of_epochs_to_target_is_remeasured_at_the_other_thresholds_every_run_reached(tmp_path):
    """Post hoc, beside a claim on epochs to 25%: the same paired ratio at 40, 35, 30%; none at
    20%, which the tanh runs (stopped at the target) never reached. Its 25% row is the claim's."""
    spec = spec_file.load("activation")
    results, reports = tmp_path / "results", tmp_path / "reports"
    entries = []
    for seed in range(3):  # relu crosses 40/35/30/25/20% at 1.5/1.75/2/2.5/3 epochs; tanh 40-25% at 2/2.5/3/4
        entries.append(make_run(results, spec, "cifar", "relu", seed, [(0.5, 0.5), (0.3, 0.3), (0.2, 0.3)],
                                grid_value=0.002))
        entries.append(make_run(results, spec, "cifar", "tanh", seed, [(0.6, 0.6), (0.4, 0.4), (0.3, 0.3),
                                                                       (0.25, 0.3)], grid_value=0.01))
    make_manifest(results, spec, "cifar", entries, seeds=[0, 1, 2])
    text = report.write_report("activation", results, reports).read_text(encoding="utf-8")
    section = text.split("## Other thresholds")[1].split("\n## ")[0]
    rows = {c[2]: c[5] for c in (x.split("|") for x in section.splitlines() if x.startswith("| tanh vs relu"))}
    assert [k.strip() for k in rows] == ["40%", "35%", "30%", "25% (the claim)"]  # 20%: tanh never got there
    assert [v.strip().split("x")[0] for v in rows.values()] == ["1.33", "1.43", "1.50", "1.60"]
    claim_row = next(x for x in text.splitlines() if x.startswith("| epochs to target, tanh vs relu"))
    assert rows[" 25% (the claim)          "].strip() in claim_row
    lrn_text = report.write_report("lrn", *_lrn_fixture(tmp_path / "lrn")).read_text(encoding="utf-8")
    assert "## Other thresholds" not in lrn_text  # no claim on epochs to a target


def test_a_scorecard_verdict_with_runs_still_to_come_is_marked_interim(tmp_path):
    results, reports = _lrn_fixture(tmp_path)  # 9 of 12 runs finished
    report.write_report("lrn", results, reports)
    rows = [r for r in scorecard.write_scorecard(reports).read_text(encoding="utf-8").splitlines()
            if r.startswith("| [lrn](lrn.md)")]
    assert len(rows) == 2 and all("(interim)" in r for r in rows)
    spec = spec_file.load("lrn")  # every run finished: a final reading
    results, reports = tmp_path / "done" / "results", tmp_path / "done" / "reports"
    entries = [make_run(results, spec, "cifar", arm, s, [(0.3, v)], test_error=v)
               for arm, vals in (("lrn", LRN_ON), ("none", LRN_OFF), ("lrn-gain", LRN_GAIN))
               for s, v in enumerate(vals)]
    make_manifest(results, spec, "cifar", entries, seeds=[0, 1, 2])
    report.write_report("lrn", results, reports)
    assert "(interim)" not in scorecard.write_scorecard(reports).read_text(encoding="utf-8")


def test_a_claim_whose_arms_are_done_is_final_while_another_arm_trains_on(tmp_path):
    """lrn's case: every lrn and lrn-gain seed finished, none's seed 3 still to train: lrn vs
    lrn-gain is final, lrn vs none interim (scorecard and the four questions alike)."""
    spec = spec_file.load("lrn")
    results, reports = tmp_path / "results", tmp_path / "reports"
    entries = [make_run(results, spec, "cifar", arm, s, [(0.3, v)], test_error=v)
               for arm, vals in (("lrn", LRN_ON + [0.11]), ("none", LRN_OFF), ("lrn-gain", LRN_GAIN + [0.13]))
               for s, v in enumerate(vals)]
    entries.append(make_run(results, spec, "cifar", "none", 3, [], status="pending"))
    make_manifest(results, spec, "cifar", entries, seeds=[0, 1, 2, 3])
    report.write_report("lrn", results, reports)
    card = scorecard.write_scorecard(reports).read_text(encoding="utf-8")
    head, every = card.split("## Every claim")
    rows = {r.split("|")[4].strip(): r for r in every.splitlines() if r.startswith("| [lrn](lrn.md)")}
    assert "(interim)" in rows["top-1 test error, lrn vs none"]
    assert "(interim)" not in rows["top-1 test error, lrn vs lrn-gain"]
    questions = {r.split("|")[2].strip(): r for r in head.splitlines() if "[lrn](lrn.md)" in r}
    assert "(campaign in progress)" in questions["lrn vs none"]
    assert "(campaign in progress)" not in questions["lrn vs lrn-gain"]


@pytest.mark.parametrize("d, says", [
    ([-0.5, -0.4, -0.6, -0.3, -0.5, -0.45, -0.55, -0.35, -0.5, -0.4, -0.6, -0.3],  # 2 / 2^12
     "p < 0.001: like the interval, it excludes no effect"),
    ([-0.5, 0.4, -0.6, 0.3, -0.5, 0.45, -0.55, 0.35], "p = 0.672: like the interval, it does not exclude no effect"),
    ([-1.0, -1.1, -0.9, -1.2, -0.8], "p = 0.0625: the interval's exclusion of no effect rests on the t "
                                     "distribution's normal assumption (with 5 pairs no p can fall below 0.0625)"),
    ([-0.1] * 7 + [-3.0],  # all one side, one far out: t's interval spans zero, the test does not
     "p = 0.00781: it excludes no effect where the t interval does not"),
])
def test_the_sign_flip_test_beside_a_paired_interval_says_whether_they_agree(d, says):
    from repro.report import _sign_flip_text

    e = stats.measure("paired", [x / 100 for x in d], [0.0] * len(d), "pp")
    assert _sign_flip_text(e, 0.0).endswith(says)


def test_the_scorecard_lists_verdicts_that_lean_on_the_t_intervals_normal_assumption(tmp_path):
    """lrn's fixture: 3 pairs, each claim's interval below zero, but no sign pattern test of 3
    pairs reaches p < 0.05 (its floor is 2 / 2^3); the sidecar carries the numbers."""
    results, reports = _lrn_fixture(tmp_path)
    report.write_report("lrn", results, reports)
    numbers = [c["numbers"] for c in json.loads((reports / "lrn.json").read_text())["claims"]]
    assert [(n["pairs"], n["sign_flip_p"], n["null"], n["sign_flip_floor"], n["leans_on_t"])
            for n in numbers] == [(3, 0.25, 0.0, 0.25, True)] * 2
    text = scorecard.write_scorecard(reports).read_text(encoding="utf-8")
    assert "lrn's lrn vs none, top-1 test error (3 pairs: p = 0.25, the smallest possible; interim)" in text
    assert "lrn's lrn vs lrn-gain, top-1 test error (3 pairs" in text
