"""Records: what stored run directories say, as numbers and tables. Reads; never writes.

    run_values(run dir)          every metric of spec_file.METRICS for one run, (value, censored)
    collect(spec, manifest)      one row per run of a manifest: values, status, provenance
    curves(roots, runs)          per arm, each analysed run's errors per (fractional) epoch
    arm_values(runs, arm, m)     an arm's values of one metric, for repro.stats
    paired_values(runs, a, b, m) two arms' values matched by seed (paired claims)
    crossing(rows, key, y)       when a curve first reaches y, interpolated between evaluations
    crossings(roots, runs, ys)   each analysed run's training-error crossing of each y (NaN: never)

The run directories are found through repro.rundir, under one or more roots (`roots`: the
first that holds a run's summary wins), so a manifest's runs may lie in more than one place.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from repro import config as rc
from repro import rundir, spec_file
from repro.spec_file import AblationSpec

Curves = dict[str, list[tuple[list[int], dict[str, list[float]]]]]


def number(x: Any) -> float:
    """A stored number as a float; NaN for anything else (None, a string, a bool)."""
    return float(x) if isinstance(x, (int, float)) and not isinstance(x, bool) else math.nan


def run_values(run_dir: Path, spec: AblationSpec | None = None, cfg: rc.RunConfig | None = None,
               views: int | None = None) -> dict[str, tuple[float, bool]]:
    """Every metric of spec_file.METRICS for one run: (value, censored). Errors are fractions.
    `censored` marks epochs_to_target = the epochs run, a lower bound (target never reached).
    views 1 or 10: the test_* metrics are that protocol's (`test_error_10view` ...), as an
    evaluation arm reads them. A record from before the train/holdout/test split (no
    running training error) reads as NaN throughout: it cannot back a claim."""
    s = rundir.read_summary(run_dir) or {}
    rows = rundir.read_metrics(run_dir)
    cfg = cfg or rundir.run_config(run_dir)
    nan = {m: (math.nan, False) for m in spec_file.METRICS}
    if not ("final_train_error_running" in s or any("train_error_running" in r for r in rows)):
        return nan
    last = rows[-1] if rows else {}
    v = dict(nan)
    for m in ("test_error", "test_error_1view", "test_error_10view", "test_loss", "test_top5_error"):
        v[m] = (number(s.get(m)), False)
    if views is not None:
        headline = cfg is not None and cfg.data.test_views == views
        for m, pattern in spec_file.VIEW_METRICS.items():
            x = number(s.get(pattern.format(v=views)))
            v[m] = (number(s.get(m)) if math.isnan(x) and headline else x, False)
    v["final_train_error"] = (number(s.get("final_train_error", last.get("train_error"))), False)
    v["final_train_error_running"] = (number(s.get("final_train_error_running", last.get("train_error_running"))),
                                      False)
    v["final_holdout_error"] = (number(s.get("final_holdout_error", last.get("holdout_error"))), False)
    v["best_holdout_error"] = (number(s.get("best_holdout_error", _min(rows, "holdout_error"))), False)
    v["holdout_loss_min"] = (_min(rows, "holdout_loss"), False)
    v["gap"] = (v["test_error"][0] - v["final_train_error"][0], False)
    v["epochs_to_target"] = _epochs_to_target(s, rows, spec, cfg)
    v["epochs_to_leave_chance"] = (_left_chance(s, rows, cfg), False)
    v["epochs_to_converge"] = (converged_at(rows, spec.converge_tol if spec is not None else 0.01), False)
    return v


def _min(rows: list[dict], key: str) -> float:
    xs = [x for r in rows if not math.isnan(x := number(r.get(key)))]
    return min(xs) if xs else math.nan


def _left_chance(s: Mapping[str, Any], rows: list[dict], cfg: rc.RunConfig | None) -> float:
    """When the holdout loss first falls to 0.9 ln(classes); the epochs run if it never does."""
    if cfg is None or not any("holdout_loss" in r for r in rows):
        return math.nan
    hit = crossing(rows, "holdout_loss", 0.9 * math.log(cfg.model.num_classes))
    return hit if hit is not None else float(s.get("epochs_run") or rows[-1]["epoch"])


def crossing(rows: Sequence[Mapping[str, Any]], key: str, threshold: float) -> float | None:
    """The fractional epoch at which `key` first falls to `threshold`, linearly interpolated
    between the two evaluations around the crossing; None if it never does."""
    prev = None
    for r in rows:
        y = number(r.get(key))
        if math.isnan(y):
            continue
        if y <= threshold:
            if prev is None or prev[1] == y:
                return float(r["epoch"])
            e0, y0 = prev
            return float(e0 + (y0 - threshold) / (y0 - y) * (float(r["epoch"]) - e0))
        prev = (float(r["epoch"]), y)
    return None


def converged_at(rows: Sequence[Mapping[str, Any]], tol: float) -> float:
    """The first evaluation epoch whose eval-mode training error is within `tol` of the final one."""
    ys = [(float(r["epoch"]), number(r.get("train_error"))) for r in rows]
    ys = [(e, y) for e, y in ys if not math.isnan(y)]
    if not ys:
        return math.nan
    final = ys[-1][1]
    return next(e for e, y in ys if abs(y - final) <= tol + 1e-12)


def _epochs_to_target(s: Mapping[str, Any], rows: list[dict], spec: AblationSpec | None,
                      cfg: rc.RunConfig | None) -> tuple[float, bool]:
    threshold = (spec.target if spec is not None and spec.target is not None
                 else (cfg.target_train_error if cfg is not None else None))
    if threshold is None:
        threshold = number(s.get("target_train_error"))
    if threshold is None or math.isnan(threshold) or not rows:
        return math.nan, False
    hit = crossing(rows, "train_error", threshold)
    if hit is not None:
        return hit, False
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
    values = run_values(d, spec, cfg, e.get("views")) if s else {}
    row = {
        "ablation": spec.name, "scale": manifest.get("scale"), "stage": e["stage"], "arm": e["arm"],
        "evaluates": e.get("evaluates"),
        "grid": e.get("grid_value"), "seed": e["seed"], "hash": e["hash"], "status": status,
        "in_analysis": bool(e.get("main")) and status in rundir.DONE,
        "epochs_run": (s or {}).get("epochs_run"), "epochs": cfg.epochs if cfg else None,
        "eval_every": number((s or {}).get("eval_every")),
    }
    for m in spec_file.METRICS:
        val, cens = values.get(m, (math.nan, False))
        row[m] = val
        if m == "epochs_to_target":
            row["target_reached"] = None if math.isnan(val) else not cens
    row.update({
        "wall_seconds": number((s or {}).get("wall_seconds")),
        "reused": rundir.was_reused(d),
        "device": env.get("device"), "device_name": env.get("device_name"), "platform": env.get("platform"),
        "moves": moves(env),
        "cpu_features": " ".join(env["cpu_features"]) if "cpu_features" in env else None, "torch": env.get("torch"),
        "git_revision": env.get("git_revision"), "git_dirty": env.get("git_dirty"),
        "code_fingerprint": env.get("code_fingerprint"), "precision": env.get("precision"),
        "channels_last": env.get("channels_last"), "finished_at": (s or {}).get("finished_at"),
        "dataset": ds.get("name"), "dataset_sha256": ds.get("sha256"), "synthetic": ds.get("synthetic"),
        **{k: ds.get(k) for k in ("train_size", "holdout_size", "test_size", "train_eval_size")},
        "model": cfg.model.name if cfg else None, "dir": e["dir"],
    })
    return row


def moves(env: Mapping[str, Any]) -> tuple[tuple[Any, Any, Any, Any], ...]:
    """Where a run resumed on another machine than the one it was on: (device, device_name,
    platform, from_epoch) for each resume whose machine differs from the one before it; () for a
    run that trained on one machine throughout (a session can end mid-run, and the next may
    draw another machine with the checkpoint still there)."""
    found, at = [], (env.get("device"), env.get("device_name"), env.get("platform"))
    for r in env.get("resumes", []):
        here = (r.get("device"), r.get("device_name"), r.get("platform"))
        if here != at:
            found.append((*here, r.get("from_epoch")))
            at = here
    return tuple(found)


CURVES = ("train_error", "train_error_running", "holdout_error", "holdout_loss")


def curves(roots: Sequence[Path], runs: pd.DataFrame) -> Curves:
    """Per training arm, each analysed run's (fractional epochs, {series: values}) from
    metrics.jsonl (evaluation arms train nothing: their curves are their `of` arm's)."""
    out: Curves = defaultdict(list)
    for _, r in runs[runs["in_analysis"] & runs["evaluates"].isna()].iterrows():
        m = rundir.read_metrics(rundir.locate(r["dir"], roots))
        if m:
            out[r["arm"]].append(([float(x["epoch"]) for x in m], {k: [number(x.get(k)) for x in m] for k in CURVES}))
    return out


def crossings(roots: Sequence[Path], runs: pd.DataFrame, thresholds: Sequence[float]) -> pd.DataFrame:
    """One row per analysed training run (arm, seed) with, per threshold, the fractional epoch
    at which its eval-mode training error first reached it (NaN where it never did)."""
    out = []
    for _, r in runs[runs["in_analysis"] & runs["evaluates"].isna()].iterrows():
        m = rundir.read_metrics(rundir.locate(r["dir"], roots))
        hits = {y: crossing(m, "train_error", y) for y in thresholds}
        out.append({"arm": r["arm"], "seed": int(r["seed"]),
                    **{y: math.nan if h is None else h for y, h in hits.items()}})
    return pd.DataFrame(out, columns=["arm", "seed", *thresholds])


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


def paired_values(runs: pd.DataFrame, arm: str, against: str, metric: str
                  ) -> tuple[list[float], list[float], list[int], list[int]]:
    """The two arms' values of `metric` matched by seed: (a, b, seeds, dropped), where
    `dropped` lists the seeds with a value in only one of the arms (left out of both)."""
    def by_seed(name: str) -> dict[int, float]:
        sel = runs[runs["in_analysis"] & (runs["arm"] == name)]
        return {int(s): float(x) for s, x in zip(sel["seed"], sel[metric], strict=True) if not math.isnan(float(x))}

    a, b = by_seed(arm), by_seed(against)
    seeds = sorted(set(a) & set(b))
    dropped = sorted(set(a) ^ set(b))
    return [a[s] for s in seeds], [b[s] for s in seeds], seeds, dropped
