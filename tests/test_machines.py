"""Reports say which machines trained their runs and whether that could move their effects (repro.machines)."""

from __future__ import annotations

from pathlib import Path

import pytest

from repro import machines, report, rundir, scorecard, spec_file, stats
from tests.fixtures.rundirs import make_manifest, make_run

# top-1 test errors per seed, four seeds an arm
ERRORS = {"lrn": [0.100, 0.110, 0.120, 0.105], "none": [0.130, 0.135, 0.150, 0.140],
          "lrn-gain": [0.125, 0.130, 0.145, 0.120]}


def _lrn(tmp_path: Path, where: dict[tuple[str, int], str], platforms: dict[tuple[str, int], str] | None = None
         ) -> tuple[Path, Path]:
    """lrn's three arms, seeds 0-3, on "Test CPU" unless `where` names another machine (and on
    platform "linux" unless `platforms` names another)."""
    spec = spec_file.load("lrn")
    results = tmp_path / "results"
    entries = [make_run(results, spec, "cifar", arm, seed, [(0.5, 0.5), (v, v)], test_error=v,
                        device_name=where.get((arm, seed), "Test CPU"),
                        platform=(platforms or {}).get((arm, seed), "linux"))
               for arm, vals in ERRORS.items() for seed, v in enumerate(vals)]
    make_manifest(results, spec, "cifar", entries, seeds=[0, 1, 2, 3])
    return results, tmp_path / "reports"


def _section(results: Path, reports: Path) -> str:
    text = report.write_report("lrn", results, reports).read_text(encoding="utf-8")
    return text.split("## Machines")[1].split("\n## ")[0] if "## Machines" in text else ""


def _pct(xs):
    return [100 * x for x in xs]


@pytest.mark.parametrize("seeds, text", [([], ""), ([3], "3"), ([0, 1, 2, 3, 4, 7, 9, 10], "0-4, 7, 9-10"),
                                         ([5, 1, 2, 1], "1-2, 5")])
def test_seeds_read_as_runs_of_consecutive_numbers(seeds, text):
    assert machines.seed_text(seeds) == text


EPYC_AVX2 = "Linux-6.18.44-fc-v1272-x86_64-with-glibc2.36"  # as two AMD EPYC sessions recorded it
EPYC_AVX512 = "Linux-6.18.44-fc-v1300-x86_64-with-glibc2.36"


def test_a_name_under_two_platforms_is_told_apart_by_what_differs():
    names = machines.tagged(["AMD EPYC", "AMD EPYC", "Xeon", "Xeon", float("nan"), "AMD EPYC"],
                            [EPYC_AVX2, EPYC_AVX512, EPYC_AVX2, EPYC_AVX2, None, None])
    assert names[:4] == ["AMD EPYC, platform …-v1272-…", "AMD EPYC, platform …-v1300-…", "Xeon", "Xeon"]
    assert names[5] == "AMD EPYC"  # no platform recorded: its name alone
    assert machines.distinct_parts(["a-b", "a-c", "d-b"]) == {"a-b": "a-b", "a-c": "a-c", "d-b": "d-b"}
    assert machines.distinct_parts(["x-1-y", "x-22-y"]) == {"x-1-y": "…-1-…", "x-22-y": "…-22-…"}


def test_one_name_on_two_platforms_is_two_machines(tmp_path):
    """lrn-gain's seeds 2 and 3 trained on an AMD EPYC of another platform (AVX-512, where the
    rest had AVX2 only): checked one against the other, as two machines would be."""
    on = {(arm, s): "AMD EPYC" for arm in ERRORS for s in range(4)}
    sec = _section(*_lrn(tmp_path, on, {("lrn-gain", 2): EPYC_AVX512, ("lrn-gain", 3): EPYC_AVX512}
                         | {k: EPYC_AVX2 for k in on if k not in {("lrn-gain", 2), ("lrn-gain", 3)}}))
    assert "| lrn-gain | cpu (AMD EPYC, platform …-v1300-…) | 2      | 2-3     |" in sec
    assert "cpu (AMD EPYC, platform …-v1300-…) vs cpu (AMD EPYC, platform …-v1272-…) | 2 / 2 |" in sec


def test_every_section_names_a_run_by_the_same_machine(tmp_path):
    """A run outside the analysis (here a selection-stage run) on the AVX-512 EPYC makes "AMD EPYC"
    two machines: the Machines section names the analysed EPYC runs as the provenance does, by
    platform, not by the name alone (labels made once over all of the ablation's runs)."""
    spec = spec_file.load("lrn")
    results, _ = _lrn(tmp_path, {("none", s): "AMD EPYC" for s in range(4)},
                      {("none", s): EPYC_AVX2 for s in range(4)})
    manifest = rundir.manifest_path(results, "lrn", "cifar")
    data = rundir.read_json(manifest)
    data["runs"].append(make_run(results, spec, "cifar", "lrn", 9, [(0.5, 0.5), (0.2, 0.2)], stage="selection",
                                 device_name="AMD EPYC", platform=EPYC_AVX512))
    rundir.write_manifest(manifest, data)
    text = report.write_report("lrn", results, tmp_path / "reports").read_text(encoding="utf-8")
    device = next(line for line in text.splitlines() if line.startswith("| device"))
    assert "cpu (AMD EPYC, platform …-v1272-…) (4 runs)" in device
    sec = text.split("## Machines")[1].split("\n## ")[0]
    assert "| none     | cpu (AMD EPYC, platform …-v1272-…) | 4      | 0-3     |" in sec
    assert "cpu (AMD EPYC) " not in sec and "cpu (AMD EPYC))" not in sec


def test_a_run_resumed_on_another_machine_is_named_by_both_and_pairs_with_neither(tmp_path):
    """A session ended mid-run and the next drew another machine with the checkpoint still
    there: the run's env notes the resume (repro.train); its label names both machines, in
    order, so it is a machine of its own and its pair counts as crossing machines."""
    results, reports = _lrn(tmp_path, {})
    d = next((results / "lrn" / "none").glob("3-*"))
    env = rundir.read_env(d)
    rundir.write_env(d, env | {"resumes": [env | {"from_epoch": 2},  # the same machine: not a move
                                           env | {"device_name": "Other CPU", "platform": "x", "from_epoch": 5}]})
    sec = _section(results, reports)
    assert "| none     | cpu (Test CPU), then cpu (Other CPU) from epoch 5 | 1      | 3       |" in sec
    assert "lrn vs none (top-1 test error): 3 pairs on one machine" in sec and "1 across machines" in sec


def test_one_machine_has_no_section(tmp_path):
    assert _section(*_lrn(tmp_path, {})) == ""


def test_an_arm_on_two_machines_is_checked_machine_against_machine(tmp_path):
    """lrn-gain's seeds 2 and 3 on another machine: a Welch check inside the arm, and lrn vs
    lrn-gain's pairs split into those on one machine and those across two, each with its effect."""
    results, reports = _lrn(tmp_path, {("lrn-gain", 2): "Other CPU", ("lrn-gain", 3): "Other CPU"})
    sec = _section(results, reports)
    assert "| lrn-gain | cpu (Test CPU)  | 2      | 0-1     |" in sec
    assert "| lrn-gain | cpu (Other CPU) | 2      | 2-3     |" in sec
    gain = ERRORS["lrn-gain"]
    check = stats.welch(_pct(gain[2:]), _pct(gain[:2]))
    assert (f"| lrn-gain | top-1 test error | cpu (Other CPU) vs cpu (Test CPU) | 2 / 2 | "
            f"{check.estimate:+.2f} pp [{check.lo:+.2f}, {check.hi:+.2f}]") in sec
    same = stats.paired(_pct(ERRORS["lrn"][:2]), _pct(gain[:2]))
    across = stats.paired(_pct(ERRORS["lrn"][2:]), _pct(gain[2:]))
    assert (f"- lrn vs lrn-gain (top-1 test error): 2 pairs on one machine, {same.estimate:+.2f} pp "
            f"[{same.lo:+.2f}, {same.hi:+.2f}]; 2 across machines, {across.estimate:+.2f} pp "
            f"[{across.lo:+.2f}, {across.hi:+.2f}]; one machine minus across, ") in sec
    d = [100 * (x - y) for x, y in zip(ERRORS["lrn"], gain, strict=True)]  # each pair's effect, pp
    between = stats.welch(d[:2], d[2:])  # a machine effect on the claim would show as a difference here
    assert (f"one machine minus across, {between.estimate:+.2f} pp [{between.lo:+.2f}, {between.hi:+.2f}] "
            "(Welch on the pairs' effects") in sec
    assert "- lrn vs none (top-1 test error): both runs of every pair on one machine." in sec


def test_an_arm_wholly_on_another_machine_is_flagged_as_confounded(tmp_path):
    """Every one of none's runs on another machine: lrn vs none cannot tell LRN from the machine,
    unless some arm has runs on both to measure a machine effect."""
    alone = {("none", s): "Other CPU" for s in range(4)}
    sec = _section(*_lrn(tmp_path / "a", alone))
    assert ("- lrn vs none (top-1 test error): every one of its 4 pairs crosses machines, **and no arm has runs "
            "on two machines: nothing here tells its effect from a machine effect**.") in sec
    checked = alone | {("lrn-gain", 2): "Other CPU", ("lrn-gain", 3): "Other CPU"}
    sec = _section(*_lrn(tmp_path / "b", checked))
    assert ("- lrn vs none (top-1 test error): every one of its 4 pairs crosses machines, so a machine effect "
            "would be part of its effect: the within-arm check above measures one.") in sec


def test_a_welch_claim_names_each_arms_machines(tmp_path):
    spec = spec_file.load("gpus")  # two vs one columns: Welch
    results = tmp_path / "results"
    entries = [make_run(results, spec, "cifar", arm, seed, [(0.5, 0.5), (v, v)], test_error=v, device_name=cpu)
               for arm, cpu, vals in (("two", "Test CPU", [0.25, 0.26]), ("one", "Other CPU", [0.29, 0.30]))
               for seed, v in enumerate(vals)]
    make_manifest(results, spec, "cifar", entries, seeds=[0, 1])
    text = report.write_report("gpus", results, tmp_path / "reports").read_text(encoding="utf-8")
    assert ("- two vs one (top-1 test error): its arms trained on different machines (cpu (Test CPU); "
            "cpu (Other CPU)), **and no arm has runs on two machines") in text


def test_a_claim_with_no_pair_yet_says_so(tmp_path):
    """pooling's case: the baseline's runs on two machines, no non-overlapping run yet: nothing to
    say of its pairs but that there are none (not "every pair on one machine")."""
    spec = spec_file.load("pooling")
    results = tmp_path / "results"
    entries = [make_run(results, spec, "cifar", "overlapping", s, [(0.5, 0.5), (0.25, 0.25)], test_error=0.25,
                        device_name=cpu) for s, cpu in enumerate(["Test CPU", "Test CPU", "Other CPU"])]
    entries += [make_run(results, spec, "cifar", "non-overlapping", s, [], status="pending") for s in range(3)]
    make_manifest(results, spec, "cifar", entries, seeds=[0, 1, 2])
    text = report.write_report("pooling", results, tmp_path / "reports").read_text(encoding="utf-8")
    assert "- overlapping vs non-overlapping (top-1 test error): no seed has finished in both arms yet." in text
    assert "every pair on one machine" not in text


def test_pairs_split_every_pair_once(tmp_path):
    results, reports = _lrn(tmp_path, {("none", 1): "Other CPU", ("lrn", 3): "Other CPU"})
    _, _, runs, _ = report.build("lrn", results, reports_dir=reports)
    p = machines.pairs(runs, "lrn", "none", "test_error", "pp")
    assert (p.same.n_arm, p.across.n_arm, p.mixed) == (2, 2, True)
    assert (p.between.n_arm, p.between.n_against, p.between.test) == (2, 2, "welch")
    assert p.between.estimate == pytest.approx(p.same.estimate - p.across.estimate)  # means of differences


def test_the_scorecard_gathers_every_reports_checks_and_crossed_claims(tmp_path):
    """The scorecard lists each report's within-arm checks and names the claims whose arms never
    share a machine; with every run on one machine it has no such section."""
    results, reports = _lrn(tmp_path / "one", {})
    report.write_report("lrn", results, reports)
    assert "## Machines" not in scorecard.write_scorecard(reports).read_text(encoding="utf-8")
    where = {("none", s): "Other CPU" for s in range(4)} | {("lrn-gain", 2): "Other CPU", ("lrn-gain", 3): "Other CPU"}
    results, reports = _lrn(tmp_path / "two", where)
    report.write_report("lrn", results, reports)
    card = scorecard.write_scorecard(reports).read_text(encoding="utf-8").split("## Machines")[1]
    gain = ERRORS["lrn-gain"]
    check = stats.welch(_pct(gain[:2]), _pct(gain[2:]))  # 6 runs on each machine: the reference is first by name
    assert (f"| [lrn](lrn.md) | lrn-gain | top-1 test error | cpu (Test CPU) vs cpu (Other CPU) | 2 / 2 | "
            f"{check.estimate:+.2f} pp [{check.lo:+.2f}, {check.hi:+.2f}]") in card
    assert "(read them beside the checks above): lrn's top-1 test error, lrn vs none." in card
    assert "lrn vs lrn-gain" not in card  # mixed pairs: in the report, not flagged here
