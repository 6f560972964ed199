"""[selection] by: what a grid minimises: epochs to the target, or the final holdout error."""

from pathlib import Path

import pytest

from repro import rundir, spec_file
from repro.ablation import plan
from repro.errors import ConfigError


def _finish(results: Path, run: plan.Run, **summary) -> None:
    d = results / run.rel
    d.mkdir(parents=True)
    rundir.write_config(d, run.cfg)
    rundir.write_metrics(d, [{"epoch": 0.0, "train_error": 0.9, "train_error_running": 0.9},
                             {"epoch": float(run.cfg.epochs), "train_error": summary.get("final_train_error", 0.3),
                              "train_error_running": 0.3}])
    rundir.write_summary(d, {"status": rundir.FINISHED, "epochs_run": run.cfg.epochs,
                             "final_train_error_running": 0.3, **summary})


def test_lrn_vs_batchnorm_chooses_each_arms_lr_by_the_lowest_final_holdout_error(tmp_path):
    spec = spec_file.load("lrn-vs-batchnorm")
    assert spec.selection is not None and spec.selection.by == "final_holdout_error"
    sel = plan.selection_runs(spec, "smoke", [0, 1], {})
    assert {r.seed for r in sel} == {spec.selection.seed}  # a seed that is not analysed
    holdout = {("lrn", 0.005): 0.30, ("lrn", 0.01): 0.25, ("batchnorm", 0.005): 0.28, ("batchnorm", 0.01): 0.22,
               ("none", 0.005): 0.27, ("none", 0.01): 0.27}
    for r in sel:  # the lower training error never wins over a lower holdout error
        _finish(tmp_path, r, final_holdout_error=holdout[r.arm, r.grid_value],
                final_train_error=0.1 if r.grid_value == 0.005 else 0.2)
    chosen = plan.choose(spec, sel, tmp_path)
    assert chosen["lrn"] == 0.01 and chosen["batchnorm"] == 0.01
    assert chosen["none"] == 0.005  # a tie on holdout error: the lower final training error


def test_an_unfinished_grid_chooses_nothing(tmp_path):
    spec = spec_file.load("lrn-vs-batchnorm")
    sel = plan.selection_runs(spec, "smoke", [0], {})
    for r in sel[:-1]:
        _finish(tmp_path, r, final_holdout_error=0.3, final_train_error=0.2)
    chosen = plan.choose(spec, sel, tmp_path)
    assert chosen[sel[-1].arm] is None and chosen[sel[0].arm] == sel[0].grid_value


def test_an_unknown_selection_rule_is_a_one_line_error():
    text = spec_file.resolve("lrn-vs-batchnorm").read_text().replace('by = "final_holdout_error"', 'by = "test_error"')
    with pytest.raises(ConfigError, match=r"selection\.by: 'test_error' is not valid; choose epochs_to_target, "
                                          r"final_holdout_error"):
        spec_file.loads(text, "ablations/lrn-vs-batchnorm.toml", "lrn-vs-batchnorm")
