"""`repro report`: stored runs -> reports/NAME.md (+ .csv, .json, -train.png, -val.png), and a scorecard.

Reads only what `repro ablate` stored: `results/<ablation>/manifest-<scale>.json` (which run
directories make up the ablation) and those run directories, through repro.records and
repro.rundir. It never trains. This module renders; the numbers come from repro.stats:

For each claim of the spec, the measured effect (arm - against, in percentage points, or
arm / against as a ratio of geometric means) gets a 95% Welch t interval (on log values
for ratios), and a verdict against the paper's effect (repro.stats.verdict: reproduced,
contradicted or inconclusive).

A run that stopped at its epoch cap without reaching a training-error target counts its
cap as a lower bound on epochs_to_target: the interval is then open on that side, and the
estimate is printed as a bound (">= 5.2x").
"""

from __future__ import annotations

import json
import math
import os
from collections import defaultdict
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from repro import files, records, rundir, spec_file, stats
from repro.errors import ReproError
from repro.files import write_text
from repro.records import arm_values
from repro.spec_file import AblationSpec, Claim
from repro.stats import Effect, measure

DONE = rundir.DONE
SMOKE_BANNER = "> **Smoke scale: synthetic data, tiny budget — these numbers are not comparable to the paper.**"
SYNTHETIC_BANNER = "> **Synthetic data — these numbers are not comparable to the paper.**"
ERROR_METRICS = ("train_error", "val_error", "val_top5_error", "best_val_error", "test_error", "test_top5_error",
                 "gap", "mean_train_error")
LABELS = {
    "train_error": "train error", "val_error": "top-1 val error", "val_top5_error": "top-5 val error",
    "best_val_error": "best top-1 val error", "test_error": "top-1 test error", "test_top5_error": "top-5 test error",
    "gap": "val - train gap", "mean_train_error": "mean train error", "epochs_to_target": "epochs to target",
}
REPORT_KIND = "repro-ablation-report"


# ----------------------------------------------------------------------------- rendering numbers


def effect_text(e: Effect) -> str:
    """'-1.42 pp [-2.10, -0.74]', '≥ 5.20x [3.10, ∞)', 'n/a (no finished runs)'."""
    if math.isnan(e.estimate):
        return "n/a (no finished runs)" if min(e.n_arm, e.n_against) == 0 else "n/a"
    b = f"{e.bound} " if e.bound in ("≥", "≤") else ""
    est = f"{b}{_fmt_effect(e.estimate, e.unit)}"
    if not e.has_interval:
        return f"{est} (no interval: n = {e.n_arm} vs {e.n_against})"
    left = "(" if math.isinf(e.lo) or (e.unit == "x" and e.lo == 0) else "["
    right = ")" if math.isinf(e.hi) else "]"
    return f"{est} {left}{_fmt_bound(e.lo, e.unit)}, {_fmt_bound(e.hi, e.unit)}{right}"


def _fmt_effect(x: float, unit: str) -> str:
    return f"{x:+.2f} pp" if unit == "pp" else f"{x:.2f}x"


def _fmt_bound(x: float, unit: str) -> str:
    if math.isinf(x):
        return "∞" if x > 0 else "-∞"
    return f"{x:+.2f}" if unit == "pp" else f"{x:.2f}"


def judge(claim: Claim, effect: Effect) -> tuple[str, str]:
    """The verdict on `claim` (repro.stats.verdict) and its reason."""
    return stats.verdict(effect.lo, effect.hi, claim.null, claim.side, claim.band)


def _fmt_value(metric: str, vals: list[float], censored: bool) -> str:
    if not vals:
        return "—"
    scale = 100.0 if metric in ERROR_METRICS else 1.0
    arr = np.asarray(vals) * scale
    ge = "≥ " if censored else ""
    digits = 2 if scale == 100 else 1
    if len(arr) == 1:
        return f"{ge}{arr[0]:.{digits}f}"
    return f"{ge}{arr.mean():.{digits}f} ± {arr.std(ddof=1):.{digits}f}"


def _unit_for(metric: str) -> str:
    return "x" if metric == "epochs_to_target" else "pp"


def _provenance(spec: AblationSpec, manifest: Mapping, runs: pd.DataFrame) -> list[tuple[str, str]]:
    done = runs[runs["status"].isin(DONE + ("diverged",))]

    def uniq(col: str) -> list:
        return sorted({x for x in done[col] if x is not None and not (isinstance(x, float) and math.isnan(x))},
                      key=str)

    datasets = sorted({(r["dataset"], (r["dataset_sha256"] or "")[:12], r["synthetic"])
                       for _, r in done.iterrows() if r["dataset"]}, key=str)
    ds_text = "; ".join(f"{n} (sha256 {h or '?'}…{', synthetic' if syn else ''})" for n, h, syn in datasets) or "?"
    scale = manifest["scale"]
    gits = sorted({f"{(r['git_revision'] or '?')[:10]}{' (dirty)' if r['git_dirty'] else ''}"
                   for _, r in done.iterrows()})
    devices = sorted({(r["device"] or "?") + (f" ({r['device_name']})" if r["device_name"] else "")
                      for _, r in done.iterrows()})
    compute = float(np.nansum(done.loc[~done["reused"], "wall_seconds"])) if len(done) else 0.0
    n_reused = int(done["reused"].sum()) if len(done) else 0
    counts = runs["status"].value_counts().to_dict()
    spec_changed = manifest.get("spec_sha256") and spec.sha256 and manifest.get("spec_sha256") != spec.sha256
    return [
        ("ablation", f"`{spec.name}` ({spec.path}{', changed since these runs' if spec_changed else ''})"),
        ("scale", f"{scale}: {spec.scales[scale].notes}" if scale in spec.scales else str(scale)),
        ("model", ", ".join(map(str, uniq("model"))) or "?"),
        ("dataset", ds_text),
        ("epochs (cap)", ", ".join(str(int(x)) for x in uniq("epochs")) or "?"),
        ("seeds", ", ".join(map(str, manifest.get("seeds", [])))),
        ("overrides", ", ".join(f"{k}={v}" for k, v in manifest.get("overrides", {}).items()) or "none"),
        ("runs", ", ".join(f"{v} {k}" for k, v in counts.items())
         + (f" ({n_reused} copied from identical runs of other ablations)" if n_reused else "")),
        ("device", ", ".join(devices) or "?"),
        ("torch", ", ".join(map(str, uniq("torch"))) or "?"),
        ("git revision", ", ".join(gits) or "?"),
        ("total compute", f"{compute / 60:.1f} min of training (sum of the runs' wall time)"),
        ("generated", datetime.now(UTC).isoformat(timespec="seconds") + " by `repro report`"),
    ]


def _plot(arm_curves: Mapping[str, list], key: str, path: Path, title: str, hline: float | None,
          hline_label: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.0), dpi=100)
    styles = ["-", "--", ":", "-."]
    for i, (arm, runs) in enumerate(arm_curves.items()):
        colour, style = f"C{i}", styles[i % len(styles)]
        by_epoch: dict[int, list[float]] = defaultdict(list)
        for epochs, values in runs:
            ys = [100 * y for y in values[key]]
            ax.plot(epochs, ys, color=colour, ls=style, lw=0.8, alpha=0.3)
            for ep, y in zip(epochs, ys, strict=True):
                if not math.isnan(y):
                    by_epoch[ep].append(y)
        xs = sorted(by_epoch)
        ax.plot(xs, [float(np.mean(by_epoch[x])) for x in xs], color=colour, ls=style, lw=2,
                label=f"{arm} (mean of {len(runs)})")
    if hline is not None:
        ax.axhline(100 * hline, color="black", ls="--", lw=1, alpha=0.7, label=hline_label)
    ax.set_xlabel("epoch")
    ax.set_ylabel(("training" if key == "train_error" else "validation") + " error (%)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    with files.atomic(path) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)


def _md_table(df: pd.DataFrame) -> str:
    return df.to_markdown(index=False, disable_numparse=True)


def build(name: str | AblationSpec, results_dir: str | os.PathLike = "results", scale: str | None = None
          ) -> tuple[AblationSpec, dict, pd.DataFrame, list[dict]]:
    """Spec, manifest, per-run table and claim rows for one ablation (a name, a spec file's path
    or a loaded spec); ReproError if it has no runs."""
    spec = name if isinstance(name, AblationSpec) else spec_file.load(name)
    results = Path(results_dir)
    manifest = rundir.load_manifest(results, spec.name, scale, spec_file.SCALES)
    where = f" at scale {scale}" if scale else ""
    if manifest is None:
        raise ReproError(f"no runs of {spec.name}{where} in {results}/: run `repro ablate {spec.name}` first")
    runs = records.collect(spec, manifest, (results,))
    if not runs["status"].isin(DONE + ("diverged",)).any():
        raise ReproError(f"no finished runs of {spec.name}{where} in {results}/ yet: run `repro ablate {spec.name}`")
    sc = manifest["scale"]
    rows = []
    covered = set()
    for c in spec.claims_for(sc):
        a, ac = arm_values(runs, c.arm, c.metric)
        b, bc = arm_values(runs, c.against, c.metric)
        eff = measure(a, b, c.unit, ac, bc)
        v, why = judge(c, eff)
        covered.add((c.arm, c.against, c.metric))
        rows.append({"claim": c, "metric": c.metric, "arm": c.arm, "against": c.against, "effect": eff,
                     "verdict": v, "why": why})
    for arm in spec.arms:  # measured effects the claims do not cover, against the baseline
        if arm == spec.baseline:
            continue
        for m in spec.metrics:
            if (arm, spec.baseline, m) in covered:
                continue
            a, ac = arm_values(runs, arm, m)
            b, bc = arm_values(runs, spec.baseline, m)
            rows.append({"claim": None, "metric": m, "arm": arm, "against": spec.baseline,
                         "effect": measure(a, b, _unit_for(m), ac, bc), "verdict": "—", "why": "no paper claim"})
    return spec, manifest, runs, rows


def write_report(name: str | AblationSpec, results_dir: str | os.PathLike = "results",
                 reports_dir: str | os.PathLike = "reports", scale: str | None = None) -> Path:
    """Write reports/NAME.md (+ NAME.csv, NAME.json, NAME-train.png, NAME-val.png) from stored
    runs; `scale` None: the scale most recently ablated. Returns the markdown path."""
    spec, manifest, runs, rows = build(name, results_dir, scale)
    results, reports = Path(results_dir), Path(reports_dir)
    reports.mkdir(parents=True, exist_ok=True)
    sc = manifest["scale"]
    synthetic = bool(runs["synthetic"].fillna(False).astype(bool).any())
    lines: list[str] = []
    if sc == "smoke":
        lines += [SMOKE_BANNER, ""]
    elif synthetic:
        lines += [SYNTHETIC_BANNER, ""]
    lines += [f"# {spec.title}: `{spec.name}` at {sc} scale", "", f"**Paper:** {spec.section}. {spec.question}", ""]
    lines += ["## Provenance", "", _md_table(pd.DataFrame(_provenance(spec, manifest, runs), columns=["", "value"])),
              ""]
    lines += _claims_section(rows)
    lines += _arms_section(spec, runs, rows)
    if manifest.get("selection"):
        lines += _selection_section(spec, runs, manifest["selection"])
    if spec.notes:
        lines += ["## Notes", "", " ".join(spec.notes.split()), ""]
    lines += _curves_section(spec, sc, results, reports, runs)
    csv = reports / f"{spec.name}.csv"
    table = _csv_table(runs)
    write_text(csv, table.to_csv(index=False))
    lines += ["## Runs", "", f"Every run (also in [{csv.name}]({csv.name})); errors in %.", "",
              _md_table(_runs_md(table)), ""]
    md = reports / f"{spec.name}.md"
    write_text(md, "\n".join(lines))
    side = {  # what the scorecard reads
        "kind": REPORT_KIND, "ablation": spec.name, "title": spec.title, "scale": sc, "synthetic": synthetic,
        "generated_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "runs": {"total": len(runs), "done": int(runs["status"].isin(DONE).sum())},
        "claims": [{"claim": LABELS[r["metric"]], "comparison": f"{r['arm']} vs {r['against']}",
                    "paper": r["claim"].paper_text(), "measured": effect_text(r["effect"]),
                    "verdict": r["verdict"], "source": r["claim"].source}
                   for r in rows if r["claim"] is not None],
    }
    write_text(reports / f"{spec.name}.json", json.dumps(side, indent=2) + "\n")
    return md


def _claims_section(rows: list[dict]) -> list[str]:
    claim_rows = [r for r in rows if r["claim"] is not None]
    lines = ["## Claims", ""]
    if not claim_rows:
        return lines + ["No paper claim: the effects below are measurements only.", ""]
    table = pd.DataFrame([{
        "claim": LABELS[r["metric"]], "comparison": f"{r['arm']} vs {r['against']}",
        "n": f"{r['effect'].n_arm} / {r['effect'].n_against}", "measured (95% CI)": effect_text(r["effect"]),
        "paper": r["claim"].paper_text(), "source": r["claim"].source, "verdict": f"**{r['verdict']}**",
        "why": r["why"],
    } for r in claim_rows])
    lines += [_md_table(table), ""]
    seen = set()
    for r in claim_rows:  # each quote once, with its section and source
        c = r["claim"]
        if (c.quote, c.section) not in seen:
            seen.add((c.quote, c.section))
            lines += [f"> {c.quote}", ">", f"> — {c.section}; {c.source}", ""] + ([c.note, ""] if c.note else [])
    lines += ["Effects are arm minus comparison in percentage points (pp), or arm over comparison as a "
              "ratio of geometric means (x), with 95% Welch t intervals (on logs for ratios). "
              "*Reproduced*: the interval is on the paper's side of no effect and overlaps the paper's "
              "value ± tolerance; *contradicted*: it excludes the paper's sign, or lies wholly outside "
              "its value ± tolerance; otherwise *inconclusive*.", ""]
    if any(min(r["effect"].n_arm, r["effect"].n_against) == 1 for r in claim_rows):
        lines += ["With one finished run in an arm there is no interval and every verdict involving it is "
                  "*inconclusive*: run with `--seeds 2` or more.", ""]
    return lines


def _arms_section(spec: AblationSpec, runs: pd.DataFrame, rows: list[dict]) -> list[str]:
    lines = ["## Per arm", "", "Mean ± standard deviation over the finished runs of each arm (errors in %; "
             "a ≥ marks epochs counted up to a cap the run stopped at).", ""]
    table = []
    for arm, a in spec.arms.items():
        mine = runs["arm"] == arm
        row = {"arm": arm, "about": a.about, "n": int((mine & runs["in_analysis"]).sum()),
               "diverged": int((mine & (runs["status"] == "diverged")).sum())}
        for m in spec.metrics:
            vals, cens = arm_values(runs, arm, m)
            unit = " (pp)" if m == "gap" else " (%)" if m in ERROR_METRICS else ""
            row[LABELS[m] + unit] = _fmt_value(m, vals, cens)
        table.append(row)
    lines += [_md_table(pd.DataFrame(table)), ""]
    other = [r for r in rows if r["claim"] is None]
    if other:
        lines += [f"### Other effects against `{spec.baseline}`", "", _md_table(pd.DataFrame([{
            "metric": LABELS[r["metric"]], "comparison": f"{r['arm']} vs {r['against']}",
            "n": f"{r['effect'].n_arm} / {r['effect'].n_against}", "measured (95% CI)": effect_text(r["effect"]),
        } for r in other])), ""]
    return lines


def _curves_section(spec: AblationSpec, sc: str, results: Path, reports: Path, runs: pd.DataFrame) -> list[str]:
    arm_curves = records.curves((results,), runs)
    if not arm_curves:
        return []
    threshold = spec.target
    if threshold is None:
        targets = records.targets((results,), runs)
        threshold = min(targets) if targets else None
    line, label = (threshold, f"target {100 * threshold:g}%") if threshold else (0.25, "25% (Figure 1)")
    train_png, val_png = reports / f"{spec.name}-train.png", reports / f"{spec.name}-val.png"
    _plot(arm_curves, "train_error", train_png, f"{spec.name}: training error ({sc} scale)", line, label)
    _plot(arm_curves, "val_error", val_png, f"{spec.name}: validation error ({sc} scale)", None, "")
    return ["## Curves", "", f"![training error per epoch]({train_png.name})", "",
            f"![validation error per epoch]({val_png.name})", "",
            "Thin lines: single runs; thick lines: the mean over seeds at each epoch.", ""]


def _selection_section(spec: AblationSpec, runs: pd.DataFrame, sel: Mapping) -> list[str]:
    key, chosen = sel["key"], sel.get("chosen") or {}
    sr = runs[runs["stage"] == "selection"]
    rows = []
    for _, r in sr.iterrows():
        rows.append({"arm": r["arm"], key: f"{r['grid']:g}", "status": r["status"],
                     "epochs to target": ("—" if math.isnan(r["epochs_to_target"]) else
                                          f"{'' if r['target_reached'] else '≥ '}{r['epochs_to_target']:.0f}"),
                     "final train error (%)": "—" if math.isnan(r["train_error"]) else f"{100 * r['train_error']:.2f}",
                     "chosen": "✓" if chosen.get(r["arm"]) == r["grid"] else ""})
    out = ["## Selection", "",
           f"`{key}` chosen per arm on seed {min(sr['seed']) if len(sr) else '?'}: fewest epochs to the target, "
           "ties broken by the lower final training error.", "", _md_table(pd.DataFrame(rows)), ""]
    for arm in spec.arms:
        grid = sorted(float(g) for g in sr.loc[sr["arm"] == arm, "grid"])
        c = chosen.get(arm)
        if c is None:
            out.append(f"- `{arm}`: nothing chosen (every value diverged, or the grid is unfinished).")
        elif len(grid) > 1 and c in (grid[0], grid[-1]):
            out.append(f"- `{arm}`: {key} = {c:g} is at the edge of its grid; the fastest value may lie beyond it.")
    return out + [""] if out[-1] else out


def _csv_table(runs: pd.DataFrame) -> pd.DataFrame:
    t = runs.copy()
    for m in ERROR_METRICS:
        t[m + ("_pp" if m == "gap" else "_pct")] = (100 * t[m]).round(4)
        del t[m]
    head = ["ablation", "scale", "stage", "arm", "grid", "seed", "hash", "status", "in_analysis", "epochs",
            "epochs_run", "epochs_to_target", "target_reached"]
    values = [c for c in t.columns if c.endswith(("_pct", "_pp"))]
    tail = ["wall_seconds", "reused", "model", "dataset", "dataset_sha256", "synthetic", "device", "device_name",
            "torch", "git_revision", "git_dirty", "dir"]
    cols = head + values + tail
    return t[cols]


def _runs_md(t: pd.DataFrame) -> pd.DataFrame:
    def f(x: Any, digits: int = 2) -> str:
        return "—" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.{digits}f}"

    out = pd.DataFrame({
        "stage": t["stage"], "arm": t["arm"],
        "grid": ["" if g is None or (isinstance(g, float) and math.isnan(g)) else f"{g:g}" for g in t["grid"]],
        "seed": t["seed"], "hash": t["hash"], "status": t["status"],
        "used": ["✓" if x else "" for x in t["in_analysis"]],
        "epochs": [f(x, 0) if x is not None else "—" for x in t["epochs_run"]],
        "train": [f(x) for x in t["train_error_pct"]], "val": [f(x) for x in t["val_error_pct"]],
        "val top-5": [f(x) for x in t["val_top5_error_pct"]], "test": [f(x) for x in t["test_error_pct"]],
        "time (s)": [f(x, 0) for x in t["wall_seconds"]],
    })
    return out


def write_reports(name_or_all: str, results_dir: str | os.PathLike = "results",
                  reports_dir: str | os.PathLike = "reports", scale: str | None = None) -> list[Path]:
    """`repro report NAME|all`: one report (an error if it has no runs), or every ablation that
    has runs (an error if none has); then the scorecard."""
    if name_or_all != "all":
        paths = [write_report(name_or_all, results_dir, reports_dir, scale)]
    else:
        paths = []
        for n in spec_file.names():
            try:
                paths.append(write_report(n, results_dir, reports_dir, scale))
            except ReproError as e:
                if not str(e).startswith(("no runs", "no finished runs")):
                    raise
        if not paths:
            raise ReproError(f"no runs of any ablation in {Path(results_dir)}/: run `repro ablate NAME` first")
    write_scorecard(reports_dir)
    return paths


def write_scorecard(reports_dir: str | os.PathLike = "reports") -> Path:
    """reports/README.md: one row per claim of every report present."""
    reports = Path(reports_dir)
    reports.mkdir(parents=True, exist_ok=True)
    rows, smoke = [], False
    for p in sorted(reports.glob("*.json")):
        side = rundir.read_json(p)
        if not side or side.get("kind") != REPORT_KIND:
            continue
        sc = side["scale"]
        comparable = sc != "smoke" and not side.get("synthetic")
        smoke |= not comparable
        link = f"[{side['ablation']}]({side['ablation']}.md)"
        scale_text = sc if comparable else f"{sc} (not comparable)"
        runs = f"{side['runs']['done']}/{side['runs']['total']}"
        if not side["claims"]:
            rows.append({"ablation": link, "scale": scale_text, "runs": runs, "claim": "no paper claim",
                         "paper": "—", "measured (95% CI)": "see report", "verdict": "—"})
        for c in side["claims"]:
            rows.append({"ablation": link, "scale": scale_text, "runs": runs,
                         "claim": f"{c['claim']}, {c['comparison']}", "paper": c["paper"],
                         "measured (95% CI)": c["measured"], "verdict": f"**{c['verdict']}**"})
    lines = ["# Scorecard: AlexNet's design choices on trial", ""]
    if smoke:
        lines += ["> Rows marked *not comparable* ran on synthetic data at a tiny budget: they test the harness, "
                  "not the paper.", ""]
    lines += [f"Generated {datetime.now(UTC).isoformat(timespec='seconds')} from the reports in this "
              "folder (`repro report all` rebuilds them from stored runs).", ""]
    lines += [_md_table(pd.DataFrame(rows)) if rows else "No reports yet: run `repro ablate NAME`.", ""]
    path = reports / "README.md"
    write_text(path, "\n".join(lines))
    return path
