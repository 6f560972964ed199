"""The reports' figures: each paired claim's per-seed differences under its Claims section
(NAME-pairs.png), and every measured claim on the scorecard (claims.png)."""

from __future__ import annotations

import json

import pytest

from repro import report, scorecard, spec_file
from tests.fixtures.rundirs import make_manifest, make_run

LRN = {"lrn": [0.100, 0.110, 0.120], "none": [0.130, 0.135, 0.150], "lrn-gain": [0.125, 0.130, 0.145]}


def _lrn(tmp_path, elsewhere=()):
    """lrn's arms, seeds 0-2, on "Test CPU" but the (arm, seed) runs in `elsewhere`."""
    spec = spec_file.load("lrn")
    results = tmp_path / "results"
    entries = [make_run(results, spec, "cifar", arm, s, [(0.5, 0.5), (v, v)], test_error=v,
                        device_name="Other CPU" if (arm, s) in elsewhere else "Test CPU")
               for arm, vals in LRN.items() for s, v in enumerate(vals)]
    make_manifest(results, spec, "cifar", entries, seeds=[0, 1, 2])
    return results, tmp_path / "reports"


def _panels(results, reports, name="lrn"):
    _, _, runs, rows = report.build(name, results, reports_dir=reports)
    return [report._pairs_panel(runs, r) for r in rows if r["claim"] is not None]


def test_each_paired_claim_draws_its_seeds_differences(tmp_path):
    results, reports = _lrn(tmp_path)
    text = report.write_report("lrn", results, reports).read_text(encoding="utf-8")
    assert "![each pair's difference, seed by seed](lrn-pairs.png)" in text
    assert (reports / "lrn-pairs.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    none, gain = _panels(results, reports)
    assert none.seeds == (0, 1, 2) and gain.seeds == (0, 1, 2)
    assert none.values == pytest.approx([100 * (a - b) for a, b in zip(LRN["lrn"], LRN["none"], strict=True)])
    assert none.estimate == pytest.approx(sum(none.values) / 3)
    assert none.lo < none.estimate < none.hi
    assert none.same_machine is None  # every run on one machine: nothing to tell apart
    assert none.paper is None and none.paper_band is None  # a sign-only claim: no band to draw
    assert none.margin_band == (-0.5, 0.5)
    assert "hollow" not in text and "diamond" not in text  # the caption names only marks the figure has


def test_a_pair_across_machines_is_told_apart(tmp_path):
    results, reports = _lrn(tmp_path, elsewhere={("none", 1)})
    none, gain = _panels(results, reports)
    assert none.same_machine == (True, False, True)
    assert gain.same_machine is None  # lrn vs lrn-gain: all six runs on one machine
    text = report.write_report("lrn", results, reports).read_text(encoding="utf-8")
    assert "A hollow dot marks a pair whose two runs trained on different machines." in text
    assert "diamond" not in text


def test_a_ratio_claim_draws_ratios_and_its_band_and_marks_bounds(tmp_path):
    """Figure 1: tanh over relu epochs to 25%, the paper's 6x ×/÷ 2 band; a tanh run that stopped
    at its cap before 25% gives a bound, marked."""
    spec = spec_file.load("activation")
    results = tmp_path / "results"
    relu = [(0.6, 0.6), (0.2, 0.3)]  # crosses 0.25 at epoch 1.875
    entries = [make_run(results, spec, "cifar", "relu", s, relu) for s in range(3)]
    tanh = {0: [(0.6, 0.6), (0.5, 0.5), (0.4, 0.5), (0.2, 0.3)], 1: [(0.6, 0.6), (0.5, 0.5), (0.3, 0.4)],
            2: [(0.6, 0.6), (0.5, 0.5), (0.4, 0.5), (0.2, 0.3)]}
    entries += [make_run(results, spec, "cifar", "tanh", s, c) for s, c in tanh.items()]
    make_manifest(results, spec, "cifar", entries, seeds=[0, 1, 2])
    (panel,) = _panels(results, tmp_path / "reports", "activation")
    assert panel.unit == "x" and panel.censored == (False, True, False)
    assert panel.values == pytest.approx([3.75 / 1.875, 3.0 / 1.875, 3.75 / 1.875])
    assert panel.paper == 6 and panel.paper_band == (3.0, 12.0)
    text = report.write_report("activation", results, tmp_path / "reports").read_text(encoding="utf-8")
    assert "activation-pairs.png" in text
    assert "A diamond marks a pair with a run stopped at its cap" in text and "hollow" not in text


def test_no_figure_without_two_pairs_or_for_welch(tmp_path):
    gpus = spec_file.load("gpus")  # two vs one columns: Welch
    results = tmp_path / "g" / "results"
    entries = [make_run(results, gpus, "cifar", arm, s, [(0.5, 0.5), (v, v)], test_error=v)
               for arm, v in (("two", 0.25), ("one", 0.30)) for s in range(2)]
    make_manifest(results, gpus, "cifar", entries, seeds=[0, 1])
    text = report.write_report("gpus", results, tmp_path / "g" / "reports").read_text(encoding="utf-8")
    assert "-pairs.png" not in text and not (tmp_path / "g" / "reports" / "gpus-pairs.png").exists()
    pooling = spec_file.load("pooling")  # the baseline's runs only: no pair yet
    results = tmp_path / "p" / "results"
    entries = [make_run(results, pooling, "cifar", "overlapping", s, [(0.5, 0.5), (0.25, 0.25)]) for s in range(2)]
    entries += [make_run(results, pooling, "cifar", "non-overlapping", s, [], status="pending") for s in range(2)]
    make_manifest(results, pooling, "cifar", entries, seeds=[0, 1])
    text = report.write_report("pooling", results, tmp_path / "p" / "reports").read_text(encoding="utf-8")
    assert "-pairs.png" not in text


def test_the_sidecar_carries_each_claims_numbers_as_strict_json(tmp_path):
    results, reports = _lrn(tmp_path)
    report.write_report("lrn", results, reports)
    _, _, _, rows = report.build("lrn", results, reports_dir=reports)
    side = json.loads((reports / "lrn.json").read_text(encoding="utf-8"),
                      parse_constant=lambda c: pytest.fail(f"{c} is not JSON"))
    none = side["claims"][0]["numbers"]
    e = rows[0]["effect"]
    assert none == {"unit": "pp", "estimate": pytest.approx(e.estimate), "lo": pytest.approx(e.lo),
                    "hi": pytest.approx(e.hi), "paper": None, "band": [None, 0.0],  # "lower": all of its side
                    "null": 0.0, "pairs": 3, "sign_flip_p": 0.25, "sign_flip_floor": 0.25, "leans_on_t": True}


def test_the_scorecard_draws_every_measured_claim_and_none_before(tmp_path):
    pooling = spec_file.load("pooling")  # one pair: an estimate but no interval, not measured, no figure
    results = tmp_path / "results"
    entries = [make_run(results, pooling, "cifar", "overlapping", s, [(0.5, 0.5), (0.25, 0.25)]) for s in range(2)]
    entries += [make_run(results, pooling, "cifar", "non-overlapping", 0, [(0.5, 0.5), (0.26, 0.26)]),
                make_run(results, pooling, "cifar", "non-overlapping", 1, [], status="pending")]
    make_manifest(results, pooling, "cifar", entries, seeds=[0, 1])
    reports = tmp_path / "reports"
    report.write_report("pooling", results, reports)
    assert "claims.png" not in scorecard.write_scorecard(reports).read_text(encoding="utf-8")
    assert not (reports / "claims.png").exists()
    lrn_results, _ = _lrn(tmp_path / "lrn")
    report.write_report("lrn", lrn_results, reports)
    card = scorecard.write_scorecard(reports).read_text(encoding="utf-8")
    assert "![every measured claim beside what it expects](claims.png)" in card
    assert (reports / "claims.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
