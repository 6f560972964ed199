"""Records: what stored run directories say, as numbers and tables. Reads; never writes.

    run_values(run dir)          every metric of spec_file.METRICS for one run, (value, censored)
    collect(spec, manifest)      one row per run of a manifest: values, status, provenance
    curves(roots, runs)          per arm, each analysed run's error per epoch
    arm_values(runs, arm, m)     an arm's values of one metric, for repro.stats

The run directories are found through repro.rundir, under one or more roots (`roots`: the
first that holds a run's summary wins), so a manifest's runs may lie in more than one place.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from repro import config as rc
from repro import rundir, spec_file
from repro.spec_file import AblationSpec

Curves = dict[str, list[tuple[list[int], dict[str, list[float]]]]]


def number(x: Any) -> float:
    """A stored number as a float; NaN for anything else (None, a string, a bool)."""
    return float(x) if isinstance(x, (int, float)) and not isinstance(x, bool) else math.nan


def run_values(run_dir: Path, spec: AblationSpec | None = None, cfg: rc.RunConfig | None = None
               ) -> dict[str, tuple[float, bool]]:
    """Every metric of spec_file.METRICS for one run: (value, censored). Errors are fractions.
    `censored` marks epochs_to_target = the epochs run, a lower bound (target never reached).
    test_error falls back to the final validation error when validation was on the test set
    (holdout 0) with one view, for trainers that store no separate test error."""
    s = rundir.read_summary(run_dir) or {}
    rows = rundir.read_metrics(run_dir)
    cfg = cfg or rundir.run_config(run_dir)
    last = rows[-1] if rows else {}
    v: dict[str, tuple[float, bool]] = {}
    train = number(s.get("final_train_error", last.get("train_error")))
    val = number(s.get("final_val_error", last.get("val_error")))
    v["train_error"] = (train, False)
    v["val_error"] = (val, False)
    v["val_top5_error"] = (number(s.get("final_val_top5_error", last.get("val_top5_error"))), False)
    best = s.get("best_val_error")
    if best is None and rows:
        best = min(number(r.get("val_error")) for r in rows)
    v["best_val_error"] = (number(best), False)
    same_as_val = cfg is not None and cfg.data.holdout == 0 and cfg.data.test_views == 1
    for key, fallback in (("test_error", "val_error"), ("test_top5_error", "val_top5_error")):
        x = number(s.get(key))
        if math.isnan(x) and same_as_val:
            x = v[fallback][0]
        v[key] = (x, False)
    v["gap"] = (val - train, False)
    trains = [number(r.get("train_error")) for r in rows]
    v["mean_train_error"] = (float(np.mean(trains)) if trains else math.nan, False)
    v["epochs_to_target"] = _epochs_to_target(s, rows, spec, cfg)
    return v


def _epochs_to_target(s: Mapping[str, Any], rows: list[dict], spec: AblationSpec | None,
                      cfg: rc.RunConfig | None) -> tuple[float, bool]:
    threshold = (spec.target if spec is not None and spec.target is not None
                 else (cfg.target_train_error if cfg is not None else None))
    if threshold is None:
        threshold = number(s.get("target_train_error"))
    if threshold is None or math.isnan(threshold) or not rows:
        return math.nan, False
    hit = [r["epoch"] for r in rows if number(r.get("train_error")) <= threshold]
    if hit:
        return float(hit[0]), False
    return float(s.get("epochs_run") or rows[-1]["epoch"]), True


def collect(spec: AblationSpec, manifest: Mapping[str, Any], roots: Sequence[Path]) -> pd.DataFrame:
    """One row per run of the manifest (fractions for errors), with its values and provenance."""
    return pd.DataFrame([_row(spec, manifest, e, rundir.locate(e["dir"], roots)) for e in manifest["runs"]])


def _row(spec: AblationSpec, manifest: Mapping[str, Any], e: Mapping[str, Any], d: Path) -> dict[str, Any]:
    s = rundir.read_summary(d)
    env = rundir.read_env(d) or {}
    ds = rundir.read_dataset(d) or {}
    cfg = rundir.run_config(d)
    status = s.get("status", "unknown") if s else ("partial" if rundir.has_metrics(d) else "pending")
    values = run_values(d, spec, cfg) if s else {}
    row = {
        "ablation": spec.name, "scale": manifest.get("scale"), "stage": e["stage"], "arm": e["arm"],
        "grid": e.get("grid_value"), "seed": e["seed"], "hash": e["hash"], "status": status,
        "in_analysis": bool(e.get("main")) and status in rundir.DONE,
        "epochs_run": (s or {}).get("epochs_run"), "epochs": cfg.epochs if cfg else None,
    }
    for m in spec_file.METRICS:
        val, cens = values.get(m, (math.nan, False))
        row[m] = val
        if m == "epochs_to_target":
            row["target_reached"] = None if math.isnan(val) else not cens
    row.update({
        "wall_seconds": number((s or {}).get("wall_seconds")),
        "reused": rundir.was_reused(d),
        "device": env.get("device"), "device_name": env.get("device_name"), "torch": env.get("torch"),
        "git_revision": env.get("git_revision"), "git_dirty": env.get("git_dirty"),
        "dataset": ds.get("name"), "dataset_sha256": ds.get("sha256"), "synthetic": ds.get("synthetic"),
        "model": cfg.model.name if cfg else None, "dir": e["dir"],
    })
    return row


def curves(roots: Sequence[Path], runs: pd.DataFrame) -> Curves:
    """Per arm, each analysed run's (epochs, {metric: values}) from metrics.jsonl."""
    out: Curves = defaultdict(list)
    for _, r in runs[runs["in_analysis"]].iterrows():
        m = rundir.read_metrics(rundir.locate(r["dir"], roots))
        if m:
            out[r["arm"]].append(([x["epoch"] for x in m],
                                  {k: [number(x.get(k)) for x in m] for k in ("train_error", "val_error")}))
    return out


def targets(roots: Sequence[Path], runs: pd.DataFrame) -> list[float]:
    """The training-error targets the runs' configs set."""
    out = []
    for d in runs["dir"]:
        cfg = rundir.run_config(rundir.locate(d, roots))
        if cfg is not None and cfg.target_train_error is not None:
            out.append(cfg.target_train_error)
    return out


def arm_values(runs: pd.DataFrame, arm: str, metric: str) -> tuple[list[float], bool]:
    """The analysed runs' values of `metric` in `arm`, and whether any is censored."""
    sel = runs[runs["in_analysis"] & (runs["arm"] == arm)]
    vals = [float(x) for x in sel[metric] if not math.isnan(float(x))]
    censored = metric == "epochs_to_target" and bool((sel["target_reached"] == False).any())  # noqa: E712
    return vals, censored
