"""[selection] beyond_edge: an arm whose declared grid chooses its lowest or highest value also
tries one value a step past that edge, once, before its main seeds run."""

from pathlib import Path

import pytest

from repro import rundir, spec_file
from repro.ablation import plan
from repro.errors import ConfigError
from tests.fixtures import fake_trainer
from tests.fixtures.ablating import run_ablation

# final holdout error per (norm, lr): lrn leads its declared grid [0.005, 0.01] at the high edge
# (its 0.005 at chance: the net did not learn)
# and wins again one step past it (0.02: an edge still, but the rule applies once); batchnorm
# leads at the low edge and loses the step below it (0.0025); none's grid [0.005, 0.01, 0.02]
# chooses inside it, so it tries nothing more.
HOLDOUT = {("lrn", 0.005): 0.895, ("lrn", 0.01): 0.25, ("lrn", 0.02): 0.20, ("lrn", 0.04): 0.10,
           ("batchnorm", 0.0025): 0.26, ("batchnorm", 0.005): 0.20, ("batchnorm", 0.01): 0.25,
           ("none", 0.005): 0.30, ("none", 0.01): 0.22, ("none", 0.02): 0.27}


def _spec_text(rule: str = "beyond_edge = true") -> str:
    text = spec_file.resolve("lrn-vs-batchnorm").read_text()
    text = text.replace('by = "final_holdout_error"', f'by = "final_holdout_error"\n{rule}', 1)
    none = "[scales.smoke.arms.none]\ngrid = [0.005, 0.01]"
    lrn = "grid = [0.0025, 0.005, 0.01, 0.02, 0.04]"  # its grid as declared, before the edge rule added 0.0025
    assert none in text and lrn in text
    text = text.replace(lrn, "grid = [0.005, 0.01, 0.02, 0.04]")
    return text.replace(none, "[scales.smoke.arms.none]\ngrid = [0.005, 0.01, 0.02]")


def _spec(tmp_path: Path, rule: str = "beyond_edge = true") -> spec_file.AblationSpec:
    path = tmp_path / "lrn-vs-batchnorm.toml"
    path.write_text(_spec_text(rule))
    return spec_file.load(str(path))


def _finish(results: Path, run: plan.Run, holdout: float | None = None) -> None:
    d = results / run.rel
    d.mkdir(parents=True)
    rundir.write_config(d, run.cfg)
    rundir.write_summary(d, {"status": rundir.FINISHED, "epochs_run": run.cfg.epochs, "final_train_error": 0.1,
                             "final_holdout_error": holdout or HOLDOUT[run.cfg.model.norm, run.grid_value]})


def _grid(runs, arm):
    return [r.grid_value for r in runs if r.arm == arm]


def test_the_value_past_an_edge_is_one_geometric_step_of_the_grid(tmp_path):
    spec = _spec(tmp_path)
    assert spec.beyond("lrn", "cifar", 0.005) == 0.0025 and spec.beyond("lrn", "cifar", 0.04) == 0.08
    assert spec.beyond("none", "cifar", 0.005) == 0.0025  # 0.005 * 0.005 / 0.01 rounds to 0.0025 exactly
    assert spec.beyond("none", "smoke", 0.02) == 0.04
    assert spec.beyond("none", "cifar", 0.01) is None  # inside the grid
    assert _spec(tmp_path, "beyond_edge = false").beyond("none", "cifar", 0.005) is None


def test_a_finished_grid_that_chose_an_edge_adds_one_run_past_it_and_chooses_only_after_it(tmp_path):
    spec, results = _spec(tmp_path), tmp_path / "results"
    declared = plan.selection_runs(spec, "smoke", [0, 1], {})
    assert plan.selection_runs(spec, "smoke", [0, 1], {}, results) == declared  # nothing finished: nothing added
    for r in declared:
        _finish(results, r)
    sel = plan.selection_runs(spec, "smoke", [0, 1], {}, results)
    assert _grid(sel, "lrn") == [0.005, 0.01, 0.02] and _grid(sel, "batchnorm") == [0.005, 0.01, 0.0025]
    assert _grid(sel, "none") == [0.005, 0.01, 0.02]
    past = sel[2]
    assert past.rel == Path("lrn-vs-batchnorm", "lrn", "lr-0.02", f"1000-{past.hash}") and past.cfg.optim.lr == 0.02
    assert plan.choose(spec, sel, results) == {"lrn": None, "batchnorm": None, "none": 0.01}  # wait for the step
    assert plan.total_runs(spec, [0, 1], sel) == 9 + 3 * 2
    assert [r.grid_value for r in plan.only_runs(spec, "smoke", [0, 1], {}, results, ["lrn/lr-0.02/1000"])] == [0.02]
    for r in sel:
        if r not in declared:
            _finish(results, r)
    again = plan.selection_runs(spec, "smoke", [0, 1], {}, results)
    assert _grid(again, "lrn") == [0.005, 0.01, 0.02]  # once: 0.02 won at the new edge, 0.04 is not tried
    assert plan.choose(spec, again, results) == {"lrn": 0.02, "batchnorm": 0.005, "none": 0.01}
    m = plan.manifest(spec, "smoke", [0, 1], {}, plan.choose(spec, again, results), results)
    assert {(r["arm"], r["grid_value"]) for r in m["runs"] if r["stage"] == "selection"} >= {("lrn", 0.02),
                                                                                          ("batchnorm", 0.0025)}


def test_without_the_rule_an_edge_choice_stands(tmp_path):
    spec, results = _spec(tmp_path, ""), tmp_path / "results"
    declared = plan.selection_runs(spec, "smoke", [0, 1], {})
    for r in declared:
        _finish(results, r)
    assert plan.selection_runs(spec, "smoke", [0, 1], {}, results) == declared
    assert plan.choose(spec, declared, results) == {"lrn": 0.01, "batchnorm": 0.005, "none": 0.01}


def test_an_ablation_trains_the_step_past_the_edge_before_the_main_seeds_and_reports_it(tmp_path):
    spec_path = tmp_path / "lrn-vs-batchnorm.toml"
    spec_path.write_text(_spec_text())
    trained = []

    def trainer(cfg, out, **kw):
        trained.append((cfg.model.norm, cfg.optim.lr, cfg.seed))
        s = fake_trainer.run(cfg, out, **kw) | {"final_holdout_error": HOLDOUT[cfg.model.norm, cfg.optim.lr]}
        rundir.write_summary(out, s)
        return s

    [out] = run_ablation(str(spec_path), scale="smoke", quiet=True, trainer=trainer,
                         results_dir=tmp_path / "results", reports_dir=tmp_path / "reports")
    assert out.trained == 7 + 2 + 3 * 2 and out.total == 7 + 2 + 3 * 2
    for norm, past, lr in (("lrn", 0.02, 0.02), ("batchnorm", 0.0025, 0.005), ("none", None, 0.01)):
        mains = [i for i, t in enumerate(trained) if t[0] == norm and t[2] != 1000]
        assert [trained[i][1] for i in mains] == [lr, lr]  # every main seed at the final choice
        if past is not None:
            assert trained.index((norm, past, 1000)) < mains[0]  # the step past the edge came first
    text = out.report.read_text()
    assert ("`lrn`: optim.lr = 0.01 led its declared grid at its high edge, so 0.02, one step beyond, was tried too"
            in text)
    assert "`batchnorm`: optim.lr = 0.005 led its declared grid at its low edge, so 0.0025" in text
    assert "`lrn`: optim.lr = 0.02 is at the edge of its grid even after the step beyond it" in text
    selection = text.split("## Selection")[1].split("## ")[0]
    assert "`none`" not in selection  # chosen inside its grid: nothing to say
    rows = [line.split("|")[1:3] for line in selection.splitlines() if line.startswith("| batchnorm")]
    assert [float(v) for _, v in rows] == [0.0025, 0.005, 0.01]  # the step below listed first
    statuses = {line.split("|")[2].strip(): line.split("|")[3].strip() for line in selection.splitlines()
                if line.startswith("| lrn")}
    assert statuses == {"0.005": "finished (at chance)", "0.01": "finished", "0.02": "finished"}
    assert "*at chance*: a final holdout error within 2 pp of guessing's (90%)" in selection


def test_beyond_edge_takes_true_or_false_only(tmp_path):
    with pytest.raises(ConfigError, match=r"selection\.beyond_edge: 'yes' is not valid; write true or false"):
        spec_file.loads(_spec_text('beyond_edge = "yes"'), "x.toml", "x")


def test_the_dry_run_counts_a_step_past_the_edge_in_at_most_while_a_grid_may_still_need_one(tmp_path):
    from io import StringIO

    from rich.console import Console

    from repro.ablate import _estimate_line
    from tests.test_dry_run_estimate import _finished

    spec, results = _spec(tmp_path), tmp_path / "results"
    _finished(results, "alexnet-cifar", 10.0, 400.0, "0-abc")  # 40 s/epoch
    declared = plan.selection_runs(spec, "cifar", [0, 1], {})
    for r in declared:  # lrn's grid done, 0.005 leading at its low edge; none's not done; batchnorm's not begun
        if r.arm == "lrn" or (r.arm == "none" and r.grid_value != 0.04):
            _finish(results, r, 0.2 if r.grid_value == 0.005 else 0.3)
    waits = {r["arm"]: r for r in plan.dry_run_rows(spec, "cifar", [0, 1], {}, results) if r["seed"] == "others"}
    assert set(waits) == {"lrn", "batchnorm", "none"}  # lrn waits for its step past the edge
    cap = 30 * 40.0
    for arm in waits:  # every arm prices its 2 main seeds at the cap
        assert waits[arm]["waiting_s"][0] == pytest.approx(2 * cap)
    assert waits["batchnorm"]["extend_s"] == pytest.approx(cap) and waits["none"]["extend_s"] == pytest.approx(cap)
    assert waits["lrn"]["extend_s"] == 0.0  # its step is a pending run of its own, priced in its row
    [step] = [r for r in plan.dry_run_rows(spec, "cifar", [0, 1], {}, results) if r["grid"] == "lr=0.0025"]
    assert step["arm"] == "lrn" and step["state"] == "pending" and step["estimate_s"] == pytest.approx(cap)
    text = _estimate_line(plan.dry_run_rows(spec, "cifar", [0, 1], {}, results))
    assert "with the 2 value(s) past a grid's edge that beyond_edge may add" in text
    Console(file=StringIO()).print(text)
