"""`repro report`: stored runs -> reports/NAME.md (+ .csv, .json, -train.png, -val.png), and a scorecard.

Reads only what `repro ablate` stored: `results/<ablation>/manifest-<scale>.json` (which run
directories make up the ablation) and those run directories (config.json, env.json,
dataset.json, metrics.jsonl, summary.json). It never trains.

For each claim of the spec, the measured effect (arm - against, in percentage points, or
arm / against as a ratio of geometric means) gets a 95% Welch t interval (on log values
for ratios), and a verdict against the paper's effect (`verdict`):

    reproduced    the interval lies on the paper's side of "no effect" and overlaps the
                  paper's value +- tolerance;
    contradicted  the interval lies entirely on the other side of "no effect", or entirely
                  outside the paper's value +- tolerance;
    inconclusive  anything else: the interval includes "no effect", or there is none
                  (fewer than 2 finished runs in an arm).

A run that stopped at its epoch cap without reaching a training-error target counts its
cap as a lower bound on epochs_to_target: the interval is then open on that side, and the
estimate is printed as a bound (">= 5.2x").
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from repro import config as rc
from repro import spec_file
from repro.errors import ReproError
from repro.files import write_text
from repro.spec_file import AblationSpec, Claim

DONE = ("finished", "target-reached")
SMOKE_BANNER = "> **Smoke scale: synthetic data, tiny budget — these numbers are not comparable to the paper.**"
SYNTHETIC_BANNER = "> **Synthetic data — these numbers are not comparable to the paper.**"
REPRODUCED, CONTRADICTED, INCONCLUSIVE = "reproduced", "contradicted", "inconclusive"
ERROR_METRICS = ("train_error", "val_error", "val_top5_error", "best_val_error", "test_error", "test_top5_error",
                 "gap", "mean_train_error")
LABELS = {
    "train_error": "train error", "val_error": "top-1 val error", "val_top5_error": "top-5 val error",
    "best_val_error": "best top-1 val error", "test_error": "top-1 test error", "test_top5_error": "top-5 test error",
    "gap": "val - train gap", "mean_train_error": "mean train error", "epochs_to_target": "epochs to target",
}
REPORT_KIND = "repro-ablation-report"


# ----------------------------------------------------------------------------- reading run directories


def read_json(path: Path) -> dict | None:
    """A JSON object, or None if the file is missing or unreadable (e.g. being written)."""
    try:
        obj = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return obj if isinstance(obj, dict) else None


def read_metrics(run_dir: Path) -> list[dict]:
    """metrics.jsonl rows, in epoch order; a torn last line is ignored."""
    rows = []
    try:
        lines = (Path(run_dir) / "metrics.jsonl").read_text(encoding="utf-8").splitlines()
    except OSError:
        return []
    for line in lines:
        try:
            row = json.loads(line)
        except ValueError:
            continue
        if isinstance(row, dict) and "epoch" in row:
            rows.append(row)
    return sorted(rows, key=lambda r: r["epoch"])


def sha256_file(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def _num(x: Any) -> float:
    return float(x) if isinstance(x, (int, float)) and not isinstance(x, bool) else math.nan


def run_config(run_dir: Path) -> rc.RunConfig | None:
    c = read_json(Path(run_dir) / "config.json")
    if c is None or "config" not in c:
        return None
    try:
        return rc.from_dict(c["config"])
    except Exception:  # a config from another version of repro: still report what is stored
        return None


def run_values(run_dir: Path, spec: AblationSpec | None = None, cfg: rc.RunConfig | None = None
               ) -> dict[str, tuple[float, bool]]:
    """Every metric of spec_file.METRICS for one run: (value, censored). Errors are fractions.
    `censored` marks epochs_to_target = the epochs run, a lower bound (target never reached).
    test_error falls back to the final validation error when validation was on the test set
    (holdout 0) with one view, for trainers that store no separate test error."""
    run_dir = Path(run_dir)
    s = read_json(run_dir / "summary.json") or {}
    rows = read_metrics(run_dir)
    cfg = cfg or run_config(run_dir)
    last = rows[-1] if rows else {}
    v: dict[str, tuple[float, bool]] = {}
    train = _num(s.get("final_train_error", last.get("train_error")))
    val = _num(s.get("final_val_error", last.get("val_error")))
    v["train_error"] = (train, False)
    v["val_error"] = (val, False)
    v["val_top5_error"] = (_num(s.get("final_val_top5_error", last.get("val_top5_error"))), False)
    best = s.get("best_val_error")
    if best is None and rows:
        best = min(_num(r.get("val_error")) for r in rows)
    v["best_val_error"] = (_num(best), False)
    same_as_val = cfg is not None and cfg.data.holdout == 0 and cfg.data.test_views == 1
    for key, fallback in (("test_error", "val_error"), ("test_top5_error", "val_top5_error")):
        x = _num(s.get(key))
        if math.isnan(x) and same_as_val:
            x = v[fallback][0]
        v[key] = (x, False)
    v["gap"] = (val - train, False)
    trains = [_num(r.get("train_error")) for r in rows]
    v["mean_train_error"] = (float(np.mean(trains)) if trains else math.nan, False)
    threshold = (spec.target if spec is not None and spec.target is not None
                 else (cfg.target_train_error if cfg is not None else None))
    if threshold is None:
        threshold = _num(s.get("target_train_error"))
    ept, censored = math.nan, False
    if threshold is not None and not math.isnan(threshold) and rows:
        hit = [r["epoch"] for r in rows if _num(r.get("train_error")) <= threshold]
        if hit:
            ept = float(hit[0])
        else:
            ept, censored = float(s.get("epochs_run") or rows[-1]["epoch"]), True
    v["epochs_to_target"] = (ept, censored)
    return v


def manifest_path(results: Path, name: str, scale: str) -> Path:
    return Path(results) / name / f"manifest-{scale}.json"


def load_manifest(results: Path, name: str, scale: str | None = None) -> dict | None:
    """The manifest of `name` at `scale`; with no scale, the most recently updated one."""
    if scale is not None:
        return read_json(manifest_path(results, name, scale))
    found = [m for s in spec_file.SCALES if (m := read_json(manifest_path(results, name, s))) is not None]
    return max(found, key=lambda m: m.get("updated_at", "")) if found else None


# ----------------------------------------------------------------------------- statistics


@dataclass(frozen=True)
class Effect:
    """A measured effect with its 95% interval; lo/hi are NaN when there is none."""

    unit: str  # "pp" or "x"
    estimate: float
    lo: float
    hi: float
    n_arm: int
    n_against: int
    bound: str = ""  # "≥" or "≤" when censored values make the estimate a bound; "?" if both

    def text(self) -> str:
        if math.isnan(self.estimate):
            return "n/a (no finished runs)" if min(self.n_arm, self.n_against) == 0 else "n/a"
        b = f"{self.bound} " if self.bound in ("≥", "≤") else ""
        est = f"{b}{_fmt_effect(self.estimate, self.unit)}"
        if math.isnan(self.lo) or math.isnan(self.hi):
            return f"{est} (no interval: n = {self.n_arm} vs {self.n_against})"
        left = "(" if math.isinf(self.lo) or (self.unit == "x" and self.lo == 0) else "["
        right = ")" if math.isinf(self.hi) else "]"
        return f"{est} {left}{_fmt_bound(self.lo, self.unit)}, {_fmt_bound(self.hi, self.unit)}{right}"


def _fmt_effect(x: float, unit: str) -> str:
    return f"{x:+.2f} pp" if unit == "pp" else f"{x:.2f}x"


def _fmt_bound(x: float, unit: str) -> str:
    if math.isinf(x):
        return "∞" if x > 0 else "-∞"
    return f"{x:+.2f}" if unit == "pp" else f"{x:.2f}"


def welch_interval(a: Sequence[float], b: Sequence[float], level: float = 0.95) -> tuple[float, float, float]:
    """mean(a) - mean(b) and its Welch t interval. NaN interval with fewer than 2 values in
    either group; a point interval when both groups have zero variance."""
    from scipy.special import stdtrit  # Student t quantile; much lighter to import than scipy.stats

    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if len(a) == 0 or len(b) == 0:
        return math.nan, math.nan, math.nan
    if np.ptp(a) == 0 and np.ptp(b) == 0:  # no spread: exact, with no rounding noise from the means
        d = float(a[0] - b[0])
        return (d, d, d) if len(a) >= 2 and len(b) >= 2 else (d, math.nan, math.nan)
    d = float(a.mean() - b.mean())
    if len(a) < 2 or len(b) < 2:
        return d, math.nan, math.nan
    va, vb = a.var(ddof=1) / len(a), b.var(ddof=1) / len(b)
    se = math.sqrt(va + vb)
    denom = va**2 / (len(a) - 1) + vb**2 / (len(b) - 1)
    df = (va + vb) ** 2 / denom if denom > 0 else min(len(a), len(b)) - 1  # Welch-Satterthwaite; underflow guard
    t = float(stdtrit(df, 0.5 + level / 2))
    return d, d - t * se, d + t * se


def measure(a: Iterable[float], b: Iterable[float], unit: str, a_censored: bool = False,
            b_censored: bool = False) -> Effect:
    """The effect of arm values `a` against `b`: mean difference in percentage points (values
    are fractions) or ratio of geometric means ("x"). A censored side (lower bounds) opens the
    interval: a censored arm can only be larger, so hi = ∞; a censored `b`, so lo = -∞ (or 0x)."""
    a = [x for x in a if not math.isnan(x)]
    b = [x for x in b if not math.isnan(x)]
    if unit == "pp":
        d, lo, hi = welch_interval([100 * x for x in a], [100 * x for x in b])
        open_lo, open_hi = -math.inf, math.inf
    else:
        if any(x <= 0 for x in a + b):
            return Effect(unit, math.nan, math.nan, math.nan, len(a), len(b))
        d, lo, hi = welch_interval(np.log(a), np.log(b)) if a and b else (math.nan,) * 3
        d, lo, hi = math.exp(d) if not math.isnan(d) else d, math.exp(lo), math.exp(hi)
        open_lo, open_hi = 0.0, math.inf
    if a_censored and not math.isnan(lo):
        hi = open_hi
    if b_censored and not math.isnan(lo):
        lo = open_lo
    bound = "?" if a_censored and b_censored else "≥" if a_censored else "≤" if b_censored else ""
    return Effect(unit, d, lo, hi, len(a), len(b), bound)


def verdict(lo: float, hi: float, null: float, side: int, band: tuple[float, float]) -> tuple[str, str]:
    """The verdict on a claim from the measured effect's interval [lo, hi].

    null: the effect meaning "no effect" (0 pp, 1x); side: +1 / -1, the paper's sign
    relative to null; band: the effects consistent with the paper (its value +- tolerance,
    or a half-line for "at least" and "direction" claims). Returns (verdict, reason)."""
    if lo is None or hi is None or math.isnan(lo) or math.isnan(hi):
        return INCONCLUSIVE, "no interval (needs at least 2 finished runs per arm)"
    if lo > hi:
        raise ValueError(f"interval [{lo}, {hi}] is reversed")
    blo, bhi = band
    if (side > 0 and hi < null) or (side < 0 and lo > null):
        return CONTRADICTED, "the interval excludes the paper's sign"
    if hi < blo or lo > bhi:
        return CONTRADICTED, "the interval excludes the paper's size (± tolerance)"
    if (side > 0 and lo > null) or (side < 0 and hi < null):
        return REPRODUCED, "same sign as the paper, excludes no effect, consistent with its size"
    return INCONCLUSIVE, "the interval includes no effect"


def judge(claim: Claim, effect: Effect) -> tuple[str, str]:
    return verdict(effect.lo, effect.hi, claim.null, claim.side, claim.band)


# ----------------------------------------------------------------------------- collecting


def collect(spec: AblationSpec, manifest: Mapping[str, Any], results: Path) -> pd.DataFrame:
    """One row per run of the manifest (fractions for errors), with its values and provenance."""
    results = Path(results)
    rows = []
    for e in manifest["runs"]:
        d = results / e["dir"]
        s = read_json(d / "summary.json")
        env = read_json(d / "env.json") or {}
        ds = read_json(d / "dataset.json") or {}
        cfg = run_config(d)
        status = s.get("status", "unknown") if s else ("partial" if (d / "metrics.jsonl").exists() else "pending")
        values = run_values(d, spec, cfg) if s else {}
        row = {
            "ablation": spec.name, "scale": manifest.get("scale"), "stage": e["stage"], "arm": e["arm"],
            "grid": e.get("grid_value"), "seed": e["seed"], "hash": e["hash"], "status": status,
            "in_analysis": bool(e.get("main")) and status in DONE,
            "epochs_run": (s or {}).get("epochs_run"), "epochs": cfg.epochs if cfg else None,
        }
        for m in spec_file.METRICS:
            val, cens = values.get(m, (math.nan, False))
            row[m] = val
            if m == "epochs_to_target":
                row["target_reached"] = None if math.isnan(val) else not cens
        row.update({
            "wall_seconds": _num((s or {}).get("wall_seconds")),
            "reused": (d / "reused_from.txt").exists(),
            "device": env.get("device"), "device_name": env.get("device_name"), "torch": env.get("torch"),
            "git_revision": env.get("git_revision"), "git_dirty": env.get("git_dirty"),
            "dataset": ds.get("name"), "dataset_sha256": ds.get("sha256"), "synthetic": ds.get("synthetic"),
            "model": cfg.model.name if cfg else None, "dir": e["dir"],
        })
        rows.append(row)
    return pd.DataFrame(rows)


def curves(results: Path, runs: pd.DataFrame) -> dict[str, list[tuple[list[int], dict[str, list[float]]]]]:
    """Per arm, each analysed run's (epochs, {metric: values}) from metrics.jsonl."""
    out: dict[str, list] = defaultdict(list)
    for _, r in runs[runs["in_analysis"]].iterrows():
        m = read_metrics(Path(results) / r["dir"])
        if m:
            out[r["arm"]].append(([x["epoch"] for x in m],
                                  {k: [_num(x.get(k)) for x in m] for k in ("train_error", "val_error")}))
    return out


def _arm_values(runs: pd.DataFrame, arm: str, metric: str) -> tuple[list[float], bool]:
    sel = runs[runs["in_analysis"] & (runs["arm"] == arm)]
    vals = [float(x) for x in sel[metric] if not math.isnan(float(x))]
    censored = metric == "epochs_to_target" and bool((sel["target_reached"] == False).any())  # noqa: E712
    return vals, censored


# ----------------------------------------------------------------------------- writing


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
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fig.savefig(tmp, format="png")
    plt.close(fig)
    os.replace(tmp, path)


def _md_table(df: pd.DataFrame) -> str:
    return df.to_markdown(index=False, disable_numparse=True)


def build(name: str | AblationSpec, results_dir: str | os.PathLike = "results", scale: str | None = None
          ) -> tuple[AblationSpec, dict, pd.DataFrame, list[dict]]:
    """Spec, manifest, per-run table and claim rows for one ablation (a name, a spec file's path
    or a loaded spec); ReproError if it has no runs."""
    spec = name if isinstance(name, AblationSpec) else spec_file.load(name)
    results = Path(results_dir)
    manifest = load_manifest(results, spec.name, scale)
    where = f" at scale {scale}" if scale else ""
    if manifest is None:
        raise ReproError(f"no runs of {spec.name}{where} in {results}/: run `repro ablate {spec.name}` first")
    runs = collect(spec, manifest, results)
    if not runs["status"].isin(DONE + ("diverged",)).any():
        raise ReproError(f"no finished runs of {spec.name}{where} in {results}/ yet: run `repro ablate {spec.name}`")
    sc = manifest["scale"]
    rows = []
    covered = set()
    for c in spec.claims_for(sc):
        a, ac = _arm_values(runs, c.arm, c.metric)
        b, bc = _arm_values(runs, c.against, c.metric)
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
            a, ac = _arm_values(runs, arm, m)
            b, bc = _arm_values(runs, spec.baseline, m)
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
                    "paper": r["claim"].paper_text(), "measured": r["effect"].text(),
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
        "n": f"{r['effect'].n_arm} / {r['effect'].n_against}", "measured (95% CI)": r["effect"].text(),
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
            vals, cens = _arm_values(runs, arm, m)
            unit = " (pp)" if m == "gap" else " (%)" if m in ERROR_METRICS else ""
            row[LABELS[m] + unit] = _fmt_value(m, vals, cens)
        table.append(row)
    lines += [_md_table(pd.DataFrame(table)), ""]
    other = [r for r in rows if r["claim"] is None]
    if other:
        lines += [f"### Other effects against `{spec.baseline}`", "", _md_table(pd.DataFrame([{
            "metric": LABELS[r["metric"]], "comparison": f"{r['arm']} vs {r['against']}",
            "n": f"{r['effect'].n_arm} / {r['effect'].n_against}", "measured (95% CI)": r["effect"].text(),
        } for r in other])), ""]
    return lines


def _curves_section(spec: AblationSpec, sc: str, results: Path, reports: Path, runs: pd.DataFrame) -> list[str]:
    arm_curves = curves(results, runs)
    if not arm_curves:
        return []
    threshold = spec.target
    if threshold is None:
        targets = _targets(results, runs)
        threshold = min(targets) if targets else None
    line, label = (threshold, f"target {100 * threshold:g}%") if threshold else (0.25, "25% (Figure 1)")
    train_png, val_png = reports / f"{spec.name}-train.png", reports / f"{spec.name}-val.png"
    _plot(arm_curves, "train_error", train_png, f"{spec.name}: training error ({sc} scale)", line, label)
    _plot(arm_curves, "val_error", val_png, f"{spec.name}: validation error ({sc} scale)", None, "")
    return ["## Curves", "", f"![training error per epoch]({train_png.name})", "",
            f"![validation error per epoch]({val_png.name})", "",
            "Thin lines: single runs; thick lines: the mean over seeds at each epoch.", ""]


def _targets(results: Path, runs: pd.DataFrame) -> list[float]:
    out = []
    for d in runs["dir"]:
        cfg = run_config(Path(results) / d)
        if cfg is not None and cfg.target_train_error is not None:
            out.append(cfg.target_train_error)
    return out


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
        side = read_json(p)
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
