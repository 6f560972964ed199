"""`repro ablate NAME --dry-run`: time left per run, from the measured speed of finished runs."""

from pathlib import Path

import pytest

from repro import rundir, spec_file
from repro.ablate import _duration, _estimate_line
from repro.ablation import plan
from repro.models import make_config


def _finished(root: Path, model: str, epochs: float, wall: float, name: str, precision: str = "fp32",
              status: str = rundir.FINISHED) -> None:
    d = root / "other" / "arm" / name
    d.mkdir(parents=True)
    rundir.write_config(d, make_config(model, {"data.holdout": 64, "runtime.precision": precision}))
    rundir.write_summary(d, {"status": status, "epochs_run": epochs, "wall_seconds": wall})


def test_estimates_come_from_the_median_speed_of_finished_runs_of_the_same_model(tmp_path):
    spec = spec_file.load("lrn")
    results = tmp_path / "results"
    for i, (e, w) in enumerate([(10.0, 400.0), (10.0, 300.0), (20.0, 1000.0)]):  # 40, 30, 50 s/epoch
        _finished(results, "alexnet-cifar", e, w, f"{i}-abc")
    _finished(results, "cifar-80sec", 10.0, 10.0, "9-def")  # another model's speed is not used
    assert plan.measured_speed(results, "alexnet-cifar") == (40.0, 3)
    records = tmp_path / "reports" / "records"  # the same runs' records, and a copy in another ablation
    for i, (e, w) in enumerate([(10.0, 400.0), (10.0, 300.0), (20.0, 1000.0)]):
        _finished(records, "alexnet-cifar", e, w, f"{i}-abc")
    _finished(records / "copied", "alexnet-cifar", 10.0, 300.0, "1-abc")
    assert plan.measured_speed(rundir.Store(results, records), "alexnet-cifar") == (40.0, 3)  # each run once
    seeds = [0, 1]
    runs = plan.main_runs(spec, "cifar", seeds, {})
    partial = results / runs[1].rel  # half trained: 10 of its 30 epochs
    partial.mkdir(parents=True)
    rundir.write_metrics(partial, [{"epoch": 0.0}, {"epoch": 10.0}])
    rows = plan.dry_run_rows(spec, "cifar", seeds, {}, results)
    by_dir = {Path(r["dir"]).name: r for r in rows}
    assert by_dir[runs[0].rel.name]["estimate_s"] == 30 * 40.0
    assert by_dir[runs[1].rel.name]["estimate_s"] == 20 * 40.0
    line = _estimate_line(rows)
    total = (len(rows) - 1) * 30 * 40 + 20 * 40
    assert f"at most {total / 3600:.1f} h" in line and "40 s/epoch, median of 3" in line
    assert len(rows) == 6  # five 30-epoch runs and one with 20 left: two processes take three 30s each
    assert f"of one process, {3 * 30 * 40 / 3600:.1f} h with two at a time" in line
    assert "target" not in line  # lrn's runs train to their caps: no run stops early


def test_two_at_a_time_takes_the_longest_runs_first_and_never_less_than_the_longest():
    from repro.ablate import _two_at_a_time

    assert _two_at_a_time([600.0, 100.0, 100.0]) == 600.0  # one run longer than the rest together
    assert _two_at_a_time([300.0, 200.0, 200.0, 100.0]) == 400.0
    assert _two_at_a_time([60.0, 60.0, 60.0]) == 120.0  # three equal runs: two rounds


def test_a_grid_run_stopped_by_its_rival_measures_the_speed_too_a_diverged_one_does_not(tmp_path):
    results = tmp_path / "results"
    _finished(results, "alexnet-cifar", 10.0, 400.0, "0-abc")  # 40 s/epoch
    _finished(results, "alexnet-cifar", 6.0, 300.0, "1-abc", status=rundir.OUTRUN)  # 50 s/epoch, outrun
    _finished(results, "alexnet-cifar", 1.0, 1.0, "2-abc", status=rundir.DIVERGED)
    assert plan.measured_speed(results, "alexnet-cifar") == (45.0, 2)


def test_no_finished_run_means_no_estimate(tmp_path):
    rows = plan.dry_run_rows(spec_file.load("lrn"), "cifar", [0], {}, tmp_path / "results")
    assert all(r["estimate_s"] is None for r in rows)
    assert "unknown" in _estimate_line(rows)


def test_a_run_finished_by_another_ablation_shows_as_copy_and_costs_nothing(tmp_path):
    spec = spec_file.load("lrn")
    results = tmp_path / "results"
    runs = plan.main_runs(spec, "cifar", [0, 1], {})
    d = results / "pooling" / "overlapping" / runs[0].rel.name  # same seed and hash, another ablation
    d.mkdir(parents=True)
    rundir.write_config(d, runs[0].cfg)
    rundir.write_summary(d, {"status": rundir.FINISHED, "epochs_run": 30, "wall_seconds": 900.0})
    rows = plan.dry_run_rows(spec, "cifar", [0, 1], {}, results)
    by_dir = {Path(r["dir"]).name: r for r in rows}
    assert by_dir[runs[0].rel.name]["state"] == "copy" and by_dir[runs[0].rel.name]["estimate_s"] == 0.0
    assert by_dir[runs[1].rel.name]["state"] == "pending" and by_dir[runs[1].rel.name]["estimate_s"] == 30 * 30.0
    line = _estimate_line(rows)
    assert "1 run(s) marked copy" in line
    assert f"for {len(rows) - 1} run(s)" in line  # the copy is not counted as time left


def test_bf16_runs_are_estimated_from_bf16_runs_once_one_has_finished(tmp_path):
    spec = spec_file.load("precision")
    results = tmp_path / "results"
    _finished(results, "alexnet-cifar", 10.0, 400.0, "0-abc")  # fp32: 40 s/epoch
    by_arm = {r["arm"]: r for r in plan.dry_run_rows(spec, "cifar", [0], {}, results)}
    assert by_arm["bf16"]["estimate_s"] == 30 * 40.0  # no bf16 run yet: the model's speed
    _finished(results, "alexnet-cifar", 10.0, 200.0, "1-abc", precision="bf16")  # 20 s/epoch
    rows = plan.dry_run_rows(spec, "cifar", [0], {}, results)
    by_arm = {r["arm"]: r for r in rows}
    assert by_arm["bf16"]["estimate_s"] == 30 * 20.0
    assert by_arm["fp32"]["estimate_s"] == 30 * 40.0  # fp32 runs keep fp32's speed
    assert "alexnet-cifar (bf16, evaluated every 1 epochs): 20 s/epoch, median of 1" in _estimate_line(rows)


def test_runs_are_estimated_from_runs_evaluated_as_often_and_waiting_arms_are_not_counted(tmp_path):
    spec = spec_file.load("activation")  # cifar: evaluated every half epoch; main seeds wait for selection
    results = tmp_path / "results"
    _finished(results, "cifar-80sec", 10.0, 100.0, "0-abc")  # evaluated once an epoch: 10 s/epoch
    rows = plan.dry_run_rows(spec, "cifar", [0, 1, 2], {}, results)
    sel = [r for r in rows if r["stage"] == "selection"]
    assert sel and all(r["speed"] == (10.0, 1) and r["model"] == "cifar-80sec (fp32)" for r in sel)
    d = results / "other" / "arm" / "1-abc"  # one evaluated every half epoch, as these runs are: 30 s/epoch
    d.mkdir(parents=True)
    rundir.write_config(d, make_config("cifar-80sec", {"data.holdout": 64, "eval_every": 0.5}))
    rundir.write_summary(d, {"status": rundir.FINISHED, "epochs_run": 10.0, "wall_seconds": 300.0})
    rows = plan.dry_run_rows(spec, "cifar", [0, 1, 2], {}, results)
    assert all(r["speed"] == (30.0, 1) for r in rows if r["stage"] == "selection")
    line = _estimate_line(rows)
    assert "the main seeds of 2 arm(s) wait for their selection runs (not counted; " in line
    assert " at their caps)" in line and "about" not in line  # no selection run has crossed: the caps alone
    assert "runs that stop at a target take less" in line  # activation's runs stop at 25% training error
    assert "without a measured speed" not in line


def test_a_model_with_no_finished_run_is_guessed_from_the_nearest_model_by_multiply_adds(tmp_path):
    from repro.layer_table import cost

    spec = spec_file.load("activation-19pct")  # cifar-19pct: no run of its own
    results = tmp_path / "results"
    _finished(results, "cifar-11pct", 10.0, 50.0, "0-abc")  # 24x24 input: not comparable, never used
    rows = plan.dry_run_rows(spec, "cifar", [0, 1, 2], {}, results)
    assert all(r["estimate_s"] is None for r in rows) and "unknown" in _estimate_line(rows)
    _finished(results, "cifar-80sec", 10.0, 100.0, "1-abc")  # 32x32 input: 10 s/epoch
    ratio = cost(make_config("cifar-19pct").model)[1] / cost(make_config("cifar-80sec").model)[1]
    assert ratio != 1.0
    rows = plan.dry_run_rows(spec, "cifar", [0, 1, 2], {}, results)
    sel = [r for r in rows if r["stage"] == "selection"]
    assert sel and all(r["speed"] == (10.0 * ratio, 1) for r in sel)
    assert all(r["model"].startswith("cifar-19pct (a guess: cifar-80sec (fp32) x ") for r in sel)
    _finished(results, "cifar-18pct", 10.0, 900.0, "2-abc")  # its multiply-adds are cifar-19pct's own
    rows = plan.dry_run_rows(spec, "cifar", [0, 1, 2], {}, results)
    assert all(r["speed"] == (90.0, 1) for r in rows if r["stage"] == "selection")
    _finished(results, "cifar-19pct", 10.0, 200.0, "3-abc")  # once its own run finishes, that is used
    rows = plan.dry_run_rows(spec, "cifar", [0, 1, 2], {}, results)
    assert all(r["speed"] == (20.0, 1) for r in rows if r["stage"] == "selection")


def test_runs_are_estimated_from_this_machines_runs_where_it_has_finished_some(tmp_path, monkeypatch):
    """One CPU model trained the same runs 2.5x slower than another: a machine's estimate comes
    from its own finished runs once there are some, else from every machine's. A machine is its
    name and platform: one name has come as two machines (AVX2 only, AVX-512)."""
    spec = spec_file.load("lrn")
    results = tmp_path / "results"
    monkeypatch.setattr(plan, "_device_here", lambda cfg: "This CPU")
    monkeypatch.setattr(plan, "_platform_here", lambda: "Linux-1-here")
    for i, (wall, device) in enumerate([(300.0, "Other CPU"), (400.0, "Other CPU"), (350.0, "Other CPU")]):
        _finished(results, "alexnet-cifar", 10.0, wall, f"{i}-abc")
        rundir.write_env(results / "other" / "arm" / f"{i}-abc", {"device_name": device, "platform": "Linux-1-here"})
    rows = plan.dry_run_rows(spec, "cifar", [0], {}, results)
    assert {r["estimate_s"] for r in rows} == {30 * 35.0}  # none here yet: every machine's runs
    assert "on this" not in _estimate_line(rows)
    _finished(results, "alexnet-cifar", 10.0, 200.0, "6-abc")  # this name on another platform: not here
    rundir.write_env(results / "other" / "arm" / "6-abc", {"device_name": "This CPU", "platform": "Linux-1-there"})
    rows = plan.dry_run_rows(spec, "cifar", [0], {}, results)
    assert {r["estimate_s"] for r in rows} == {30 * 32.5} and "on this" not in _estimate_line(rows)
    _finished(results, "alexnet-cifar", 10.0, 800.0, "7-abc")
    rundir.write_env(results / "other" / "arm" / "7-abc", {"device_name": "This CPU", "platform": "Linux-1-here"})
    rows = plan.dry_run_rows(spec, "cifar", [0], {}, results)
    assert {r["estimate_s"] for r in rows} == {30 * 80.0}
    assert "on this This CPU): 80 s/epoch, median of 1" in _estimate_line(rows)


def test_main_seeds_waiting_for_selection_are_priced_from_the_arms_fastest_crossing_so_far(tmp_path):
    """Not counted in the total (nothing is chosen yet), but said: about (seeds x the end of the
    epoch of the arm's fastest crossing so far), at most (seeds x the cap)."""
    spec = spec_file.load("activation")  # selection on seed 1000: seeds 0-2 are all main seeds
    results = tmp_path / "results"
    d = results / "other" / "arm" / "0-abc"  # cifar-80sec, evaluated every half epoch: 30 s/epoch
    d.mkdir(parents=True)
    rundir.write_config(d, make_config("cifar-80sec", {"data.holdout": 64, "eval_every": 0.5}))
    rundir.write_summary(d, {"status": rundir.FINISHED, "epochs_run": 10.0, "wall_seconds": 300.0})
    tanh = [r for r in plan.selection_runs(spec, "cifar", [0, 1, 2], {}) if r.arm == "tanh"]
    cap = tanh[0].cfg.epochs
    waits = {r["arm"]: r["waiting_s"] for r in plan.dry_run_rows(spec, "cifar", [0, 1, 2], {}, results)
             if r["grid"] == "after selection"}
    assert waits == {"relu": (3 * 30 * 30.0, 3 * 30 * 30.0), "tanh": (3 * cap * 30.0, 3 * cap * 30.0)}
    for r, crossing in zip(tanh[:2], (27.41, 30.36)):  # two grid values reached 25%: the faster counts
        (results / r.rel).mkdir(parents=True)
        rundir.write_summary(results / r.rel, {"status": rundir.TARGET_REACHED, "epochs_to_target": crossing,
                                               "epochs_run": crossing, "wall_seconds": 1.0})
    rows = plan.dry_run_rows(spec, "cifar", [0, 1, 2], {}, results)
    [tanh_row] = [r for r in rows if r["grid"] == "after selection" and r["arm"] == "tanh"]
    assert tanh_row["waiting_s"] == (3 * cap * 30.0, 3 * 28 * 30.0) and tanh_row["estimate_s"] is None
    assert f"about {(3 * 28 + 3 * 30) * 30 / 3600:.1f} h if each seed stops where" in _estimate_line(rows)


def test_main_runs_that_stop_at_a_target_are_likely_to_stop_where_their_chosen_value_did(tmp_path):
    """At most: the cap (a main run may never reach the target). About: the end of the epoch in
    which the arm's fastest selection run reached it, less what the run has trained."""
    spec = spec_file.load("activation")
    results = tmp_path / "results"
    d = results / "other" / "arm" / "0-abc"  # cifar-80sec, evaluated every half epoch: 30 s/epoch
    d.mkdir(parents=True)
    rundir.write_config(d, make_config("cifar-80sec", {"data.holdout": 64, "eval_every": 0.5}))
    rundir.write_summary(d, {"status": rundir.FINISHED, "epochs_run": 10.0, "wall_seconds": 300.0})
    sel = plan.selection_runs(spec, "cifar", [0, 1, 2], {})
    winners = {"relu": (0.002, 7.86), "tanh": (0.0071, 27.41)}
    for r in sel:  # every grid run ended: the winner reached 25%, the rest were outrun
        value, crossing = winners[r.arm]
        status = rundir.TARGET_REACHED if r.grid_value == value else rundir.OUTRUN
        (results / r.rel).mkdir(parents=True)
        won = status == rundir.TARGET_REACHED  # `choose` reads the crossing from the metrics
        rundir.write_config(results / r.rel, r.cfg)
        rundir.write_metrics(results / r.rel, [{"epoch": 0.0, "train_error": 0.9, "train_error_running": 0.9},
                                               {"epoch": 30.0, "train_error": 0.24 if won else 0.3,
                                                "train_error_running": 0.3}])
        rundir.write_summary(results / r.rel, {"status": status, "wall_seconds": 30.0 * crossing,  # 30 s/epoch
                                               "epochs_run": crossing, "epochs_to_target": crossing if won else None})
    main = [r for r in plan.main_runs(spec, "cifar", [0, 1, 2], {}, {a: v for a, (v, _) in winners.items()})
            if r.arm == "tanh"]
    rundir.write_metrics(results / main[0].rel, [{"epoch": 0.0}, {"epoch": 10.0}])  # 10 epochs in
    rows = {r["dir"]: r for r in plan.dry_run_rows(spec, "cifar", [0, 1, 2], {}, results)}
    first, other = rows[str(results / main[0].rel)], rows[str(results / main[1].rel)]
    cap = main[0].cfg.epochs
    assert (first["estimate_s"], first["about_s"]) == pytest.approx(((cap - 10) * 30.0, (28 - 10) * 30.0))
    assert (other["estimate_s"], other["about_s"]) == pytest.approx((cap * 30.0, 28 * 30.0))
    line = _estimate_line(list(rows.values()))
    assert f"about {_duration((3 * 28 - 10 + 3 * 8) * 30.0)} if each main run stops where" in line


def test_the_dry_run_says_where_finished_runs_trained_when_what_is_left_trains_elsewhere(tmp_path, monkeypatch):
    """pooling's case: its baseline is copied from runs another machine trained, and what is left
    would train here; the dry run names both (a copy's machine is its twin's)."""
    spec = spec_file.load("lrn")
    results = tmp_path / "results"
    monkeypatch.setattr(plan, "_device_here", lambda cfg: "This CPU")
    runs = plan.main_runs(spec, "cifar", [0], {})
    d = results / "pooling" / "overlapping" / runs[0].rel.name  # same seed and hash, another ablation
    d.mkdir(parents=True)
    rundir.write_config(d, runs[0].cfg)
    rundir.write_summary(d, {"status": rundir.FINISHED, "epochs_run": 30, "wall_seconds": 900.0})
    rundir.write_env(d, {"device": "cpu", "device_name": "Other CPU"})
    rows = plan.dry_run_rows(spec, "cifar", [0], {}, results)
    by_dir = {Path(r["dir"]).name: r for r in rows}
    assert by_dir[runs[0].rel.name]["machine"] == "Other CPU" and by_dir[runs[1].rel.name]["machine"] == "This CPU"
    assert plan.machines_line(rows) == ("machines: finished runs trained on Other CPU (1); what is left would "
                                        "train here, on This CPU: runs on different machines are compared in the "
                                        "report's Machines section")
    monkeypatch.setattr(plan, "_device_here", lambda cfg: "Other CPU")  # everything on one machine: nothing to say
    assert plan.machines_line(plan.dry_run_rows(spec, "cifar", [0], {}, results)) == ""
    rundir.write_env(d, {"device": "cpu", "device_name": "Other CPU", "platform": "Linux-1-there"})
    monkeypatch.setattr(plan, "_platform_here", lambda: "Linux-1-here")  # one name, two machines
    assert plan.machines_line(plan.dry_run_rows(spec, "cifar", [0], {}, results)) == (
        "machines: finished runs trained on Other CPU, platform …-there (1); what is left would train here, on "
        "Other CPU, platform …-here: runs on different machines are compared in the report's Machines section")


def test_the_dry_run_of_all_sums_waiting_arms_at_most_and_about_in_their_columns():
    """`repro ablate all --dry-run`'s table: a run's estimate and an arm's wait (both (at most,
    about)) add into the "at most" and "about" columns, not crossed."""
    from io import StringIO

    from rich.console import Console

    from repro.ablate import _print_summary
    from repro.ablation.execute import Outcome

    out = Outcome("x", "cifar", 3)
    out.plan = [{"state": "pending", "estimate_s": 3600.0, "about_s": 1800.0, "grid": "0.01"},
                {"state": "pending", "estimate_s": None, "about_s": None, "grid": "after selection",
                 "waiting_s": (7200.0, 3600.0), "waiting_runs": 2},
                {"state": "finished", "estimate_s": 0.0, "about_s": 0.0, "grid": "0.01"}]
    text = StringIO()
    _print_summary(Console(file=text, width=200), [out])
    assert "all: at most 3.0 h of one process" in text.getvalue()
    assert "about 1.5 h" in text.getvalue()
    for r in out.plan[:2]:  # no run left stops early: its cap is the estimate, no "about" beside it
        r["about_s"] = r["estimate_s"]
    r["waiting_s"] = (7200.0, 7200.0)
    text = StringIO()
    _print_summary(Console(file=text, width=200), [out])
    # three 1-hour runs (the waiting arm's two seeds are two runs): two processes take two rounds
    assert "all: at most 3.0 h of one process (2.0 h with two processes at a time)\n" in text.getvalue()


def test_an_arms_own_finished_runs_give_its_speed_before_other_arms_of_the_model(tmp_path):
    """lrn's `none` arm trains ~1.6x faster than the baseline (no LRN): once a run of its own
    net has finished, its runs are estimated from those, and the other arms keep the model's."""
    spec = spec_file.load("lrn")
    results = tmp_path / "results"
    _finished(results, "alexnet-cifar", 10.0, 500.0, "0-abc")  # the baseline's net: 50 s/epoch
    by_arm = {r["arm"]: r for r in plan.dry_run_rows(spec, "cifar", [0], {}, results)}
    assert by_arm["none"]["estimate_s"] == 30 * 50.0  # no run of its net yet: the model's (any switches)
    assert by_arm["none"]["model"] == "alexnet-cifar, any switches (fp32, evaluated every 1 epochs)"
    d = results / "other" / "none" / "1-def"
    d.mkdir(parents=True)
    rundir.write_config(d, make_config("alexnet-cifar", {"data.holdout": 64, "model.norm": "none"}))
    rundir.write_summary(d, {"status": rundir.FINISHED, "epochs_run": 10.0, "wall_seconds": 300.0})  # 30 s/epoch
    rows = plan.dry_run_rows(spec, "cifar", [0], {}, results)
    by_arm = {r["arm"]: r for r in rows}
    assert by_arm["none"]["estimate_s"] == 30 * 30.0
    assert by_arm["lrn"]["estimate_s"] == 30 * 50.0 and by_arm["lrn-gain"]["estimate_s"] == 30 * 40.0  # median
    line = _estimate_line(rows)
    assert "alexnet-cifar with norm=none (fp32, evaluated every 1 epochs): 30 s/epoch, median of 1" in line
    assert "alexnet-cifar (fp32, evaluated every 1 epochs): 50 s/epoch, median of 1" in line
