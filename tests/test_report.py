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

from repro import report, spec_file
from repro.errors import ReproError
from repro.report import effect_text
from repro.stats import CONTRADICTED, INCONCLUSIVE, REPRODUCED, measure, verdict, welch_interval
from tests.fixtures.rundirs import make_manifest, make_run

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
    ratio_band = (3.0, 9.0)  # 6x +- 3
    assert verdict(4.0, 8.0, 1.0, +1, ratio_band)[0] == REPRODUCED
    assert verdict(7.5, math.inf, 1.0, +1, ratio_band)[0] == REPRODUCED  # censored ">= 7.5x"
    assert verdict(9.5, math.inf, 1.0, +1, ratio_band)[0] == CONTRADICTED  # even the bound is too large
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
        verdict(1.0, 0.0, 0.0, -1, BAND)


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
    assert v in (REPRODUCED, CONTRADICTED, INCONCLUSIVE) and why
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
    assert effect_text(eff).startswith("-3.00 pp [")
    r = measure([30.0, 36.0, 40.0], [6.0, 6.0, 7.0], "x")
    gd, glo, ghi = welch_interval(np.log([30, 36, 40]), np.log([6, 6, 7]))
    assert (r.estimate, r.lo, r.hi) == pytest.approx((math.exp(gd), math.exp(glo), math.exp(ghi)))
    c = measure([30.0, 30.0, 30.0], [6.0, 5.0, 7.0], "x", a_censored=True)  # tanh hit its cap
    assert c.bound == "≥" and c.hi == math.inf and c.lo > 1 and effect_text(c).startswith("≥ 5.0")
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

LRN_ON = [0.100, 0.110, 0.120]  # final val/test errors per seed
LRN_OFF = [0.130, 0.135, 0.150]


def _lrn_fixture(tmp_path: Path) -> tuple[Path, Path]:
    spec = spec_file.load("lrn")
    results, reports = tmp_path / "results", tmp_path / "reports"
    entries = []
    for arm, finals in (("on", LRN_ON), ("off", LRN_OFF)):
        for seed, v in enumerate(finals):
            curve = [(0.6, 0.6), (0.4, 0.3), (v - 0.05, v)]
            entries.append(make_run(results, spec, "cifar", arm, seed, curve, test_error=v, wall_seconds=600.0))
    # an unfinished seed of each kind: listed, not used
    entries.append(make_run(results, spec, "cifar", "on", 3, [(0.6, 0.6)], status="partial"))
    entries.append(make_run(results, spec, "cifar", "off", 3, [], status="pending"))
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
              "60.0 min of training", "6 finished, 1 partial, 1 pending", "| epochs (cap)  | 8"):
        assert s in text, s
    # the claim row: effect and interval as computed by hand, with the paper's number beside it
    d, lo, hi = welch_interval([100 * x for x in LRN_ON], [100 * x for x in LRN_OFF])
    assert f"{d:+.2f} pp [{lo:+.2f}, {hi:+.2f}]" in text
    assert "-2 pp ± 1.5" in text and "**reproduced**" in text
    assert 'A "four-layer CNN" gets 13% test error without normalization and 11% with' in text
    assert "local3" in text  # the 13pct vs 11pct caveat is printed
    assert "-1.4" not in text.split("## Per arm")[0]  # ImageNet claims are not checked at the cifar scale
    # per-arm mean +- std and n
    on = np.array(LRN_ON) * 100
    assert f"{on.mean():.2f} ± {on.std(ddof=1):.2f}" in text
    arm_table = text.split("## Per arm")[1].split("##")[0]
    assert "| on    |" in arm_table and "| 3   |" in arm_table
    # CSV: every run, percentages
    csv = pd.read_csv(reports / "lrn.csv")
    assert len(csv) == 8 and set(csv["status"]) == {"finished", "partial", "pending"}
    for col in ("ablation", "scale", "arm", "seed", "hash", "status", "in_analysis", "epochs_run", "val_error_pct",
                "val_top5_error_pct", "test_error_pct", "gap_pp", "wall_seconds", "device", "torch", "git_revision",
                "dataset_sha256"):
        assert col in csv.columns, col
    used = csv[csv["in_analysis"]]
    assert len(used) == 6
    assert sorted(used.loc[used["arm"] == "on", "val_error_pct"]) == pytest.approx([10.0, 11.0, 12.0])
    # plots and sidecar
    for png in ("lrn-train.png", "lrn-val.png"):
        assert (reports / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "![training error per epoch](lrn-train.png)" in text
    side = json.loads((reports / "lrn.json").read_text())
    assert side["scale"] == "cifar" and side["claims"][0]["verdict"] == REPRODUCED


def test_report_smoke_banner_and_scorecard(tmp_path):
    spec = spec_file.load("pooling")
    results, reports = tmp_path / "results", tmp_path / "reports"
    entries = [make_run(results, spec, "smoke", arm, seed, [(0.5, 0.5), (0.4, v)], dataset="synthetic",
                        synthetic=True)
               for arm, vals in (("overlapping", [0.40, 0.40]), ("non-overlapping", [0.40, 0.40]))
               for seed, v in enumerate(vals)]
    make_manifest(results, spec, "smoke", entries, seeds=[0, 1])
    md = report.write_report("pooling", results, reports)
    lines = md.read_text(encoding="utf-8").splitlines()
    assert lines[0] == report.SMOKE_BANNER
    text = "\n".join(lines)
    # identical arms, zero variance: a point interval at 0, which the paper's -0.4 +- 0.5 includes
    assert "+0.00 pp [+0.00, +0.00]" in text and "**inconclusive**" in text
    _lrn_fixture_results, _ = _lrn_fixture(tmp_path / "lrn")
    report.write_report("lrn", _lrn_fixture_results, reports)
    card = report.write_scorecard(reports).read_text(encoding="utf-8")
    assert "[pooling](pooling.md)" in card and "smoke (not comparable)" in card
    lrn_row = next(r for r in card.splitlines() if r.startswith("| [lrn]"))
    assert "| cifar " in lrn_row and "**reproduced**" in lrn_row
    rows = [r for r in card.splitlines() if r.startswith("| [")]
    assert len(rows) == 2  # pooling's smoke claims: top-1 only (top-5 is an imagenet-scale claim); lrn: one


def test_report_n1_is_inconclusive_and_says_so(tmp_path):
    spec = spec_file.load("gpus")
    results, reports = tmp_path / "results", tmp_path / "reports"
    entries = [make_run(results, spec, "cifar", "two", 0, [(0.3, 0.2)]),
               make_run(results, spec, "cifar", "one", 0, [(0.3, 0.25)])]
    make_manifest(results, spec, "cifar", entries, seeds=[0])
    text = report.write_report("gpus", results, reports).read_text(encoding="utf-8")
    assert "**inconclusive**" in text and "no interval" in text and "--seeds 2" in text


def test_report_epochs_to_target_censoring(tmp_path):
    """A run that never reaches the target contributes its epochs as a lower bound."""
    spec = spec_file.load("dropout")  # target = 0.4
    results, reports = tmp_path / "results", tmp_path / "reports"
    entries = []
    for seed in range(3):
        entries.append(make_run(results, spec, "cifar", "none", seed, [(0.6, 0.6), (0.35, 0.4), (0.2, 0.35)]))
        entries.append(make_run(results, spec, "cifar", "dropout", seed, [(0.7, 0.6), (0.6, 0.5), (0.5, 0.45)]))
    make_manifest(results, spec, "cifar", entries, seeds=[0, 1, 2])
    _, _, runs, rows = report.build("dropout", results)
    none = runs[runs["arm"] == "none"]
    assert list(none["epochs_to_target"]) == [2.0] * 3 and none["target_reached"].all()
    drop = runs[runs["arm"] == "dropout"]
    assert list(drop["epochs_to_target"]) == [3.0] * 3 and not drop["target_reached"].any()
    eff = rows[0]["effect"]
    assert rows[0]["metric"] == "epochs_to_target" and eff.bound == "≥" and eff.hi == math.inf
    assert eff.estimate == pytest.approx(1.5)
    assert rows[0]["verdict"] == REPRODUCED  # >= 1.5x overlaps 2x +- 1
    text = report.write_report("dropout", results, reports).read_text(encoding="utf-8")
    assert "≥ 1.50x" in text and "≥ 3.0 ± 0.0" in text


def test_report_without_runs_is_one_line_error(tmp_path):
    with pytest.raises(ReproError) as e:
        report.write_report("lrn", tmp_path / "results", tmp_path / "reports")
    assert "no runs of lrn" in str(e.value) and "repro ablate lrn" in str(e.value) and "\n" not in str(e.value)
    with pytest.raises(ReproError, match="no runs of any ablation"):
        report.write_reports("all", tmp_path / "results", tmp_path / "reports")
    spec = spec_file.load("lrn")
    results = tmp_path / "results"
    make_manifest(results, spec, "smoke", [make_run(results, spec, "smoke", "on", 0, [], status="pending")], [0])
    with pytest.raises(ReproError, match="no finished runs of lrn"):
        report.write_report("lrn", results, tmp_path / "reports")


def test_report_all_skips_ablations_without_runs(tmp_path):
    results, reports = _lrn_fixture(tmp_path)
    paths = report.write_reports("all", results, reports)
    assert [p.name for p in paths] == ["lrn.md"] and (reports / "README.md").exists()


def test_report_picks_latest_scale_unless_told(tmp_path):
    results, reports = _lrn_fixture(tmp_path)
    spec = spec_file.load("lrn")
    entries = [make_run(results, spec, "smoke", arm, s, [(0.5, 0.5)], dataset="synthetic", synthetic=True)
               for arm in ("on", "off") for s in (0, 1)]
    make_manifest(results, spec, "smoke", entries, [0, 1], updated_at="2026-01-02T00:00:00+00:00")
    assert report.write_report("lrn", results, reports).read_text().startswith(report.SMOKE_BANNER)
    assert "cifar scale" in report.write_report("lrn", results, reports, scale="cifar").read_text().splitlines()[0]
