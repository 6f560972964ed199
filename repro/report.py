"""`repro report`: run records -> reports/NAME.md (+ .csv, .json, -train/-holdout/-pairs.png).

repro.scorecard gathers every report into reports/README.md.

Reads only run records: `<root>/<ablation>/manifest-<scale>.json` (which run directories
make up the ablation) and those run directories, through repro.records and repro.rundir,
under two roots: the committed records (`reports/records`, see `records_root`) first, then
the results directory. It never trains. This module renders; the numbers come from
repro.stats: for each claim, the test its TOML declares (paired: per-seed differences; welch)
gives a 95% t interval on the effect (percentage points, or a ratio on logs), and the
verdict is one of reproduced / contradicted / no effect / inconclusive.

Where reports go: real-data scales into `reports/` (`NAME.md`; `NAME-imagenet.md` for the
imagenet scale); the smoke scale into `<results>/smoke-reports/` (git-ignored), never into
`reports/`. A report is a pure function of its records: no clock (the "generated" line is
the newest record's `finished_at`), no absolute paths, plots without date or version
metadata, so `repro report all` on a fresh clone rebuilds every committed report byte for byte.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from repro import figures, machines, provenance, records, rundir, spec_file, stats
from repro.ablation import plan
from repro.errors import ReproError
from repro.files import write_text
from repro.records import arm_values, paired_values
from repro.spec_file import AblationSpec, Claim
from repro.stats import Effect, measure

DONE = rundir.DONE
TRAINED = rundir.TERMINAL  # every run that trained to its end: done, diverged or outrun
RECORDS = "records"  # under the reports folder: the committed run records
SMOKE_REPORTS = "smoke-reports"  # under the results folder: where smoke reports go
SMOKE_BANNER = "> **Smoke scale: synthetic data, tiny budget — these numbers are not comparable to the paper.**"
SYNTHETIC_BANNER = "> **Synthetic data — these numbers are not comparable to the paper.**"
ERROR_METRICS = ("test_error", "test_error_1view", "test_error_10view", "test_top5_error", "final_train_error",
                 "final_train_error_running", "final_holdout_error", "best_holdout_error", "gap")
EPOCH_METRICS = ("epochs_to_target", "epochs_to_converge", "epochs_to_leave_chance")
LABELS = {
    "test_error": "top-1 test error", "test_error_1view": "top-1 test error (1 view)",
    "test_error_10view": "top-1 test error (10 views)", "test_loss": "test loss",
    "test_top5_error": "top-5 test error", "final_train_error": "train error (eval mode)",
    "final_train_error_running": "train error (running)", "final_holdout_error": "holdout error",
    "best_holdout_error": "best holdout error", "holdout_loss_min": "lowest holdout loss",
    "epochs_to_target": "epochs to target", "gap": "test - train gap", "epochs_to_converge": "epochs to converge",
    "epochs_to_leave_chance": "epochs at chance loss",
}
REPORT_KIND = "repro-ablation-report"


def records_root(reports_dir: str | os.PathLike) -> Path:
    """Where the committed run records live: `<reports>/records`."""
    return Path(reports_dir) / RECORDS


def roots(results_dir: str | os.PathLike, reports_dir: str | os.PathLike) -> tuple[Path, Path]:
    """The roots run records are read from, in order: committed records, then results."""
    return records_root(reports_dir), Path(results_dir)


def output_dir(scale: str, results_dir: str | os.PathLike, reports_dir: str | os.PathLike) -> Path:
    """Smoke reports go under the results folder (git-ignored); real-data ones into reports/."""
    return Path(results_dir) / SMOKE_REPORTS if scale == "smoke" else Path(reports_dir)


def report_stem(name: str, scale: str) -> str:
    return name if scale in ("smoke", "cifar") else f"{name}-{scale}"


# ----------------------------------------------------------------------------- rendering numbers


def effect_text(e: Effect) -> str:
    """'-1.42 pp [-2.10, -0.74]', '≥ 5.20x [3.10, ∞)', 'n/a (no seed finished in both arms)'."""
    if math.isnan(e.estimate):
        if min(e.n_arm, e.n_against) > 0:
            return "n/a"
        return "n/a (no seed finished in both arms)" if e.test == "paired" else "n/a (an arm has no finished runs)"
    b = f"{e.bound} " if e.bound in ("≥", "≤") else ""
    est = f"{b}{_fmt_effect(e.estimate, e.unit)}"
    if not e.has_interval:
        return f"{est} (no interval: n = {e.n_arm} vs {e.n_against})"
    return f"{est} {interval_text(e.lo, e.hi, e.unit)}"


def interval_text(lo: float, hi: float, unit: str) -> str:
    left = "(" if math.isinf(lo) or (unit == "x" and lo == 0) else "["
    right = ")" if math.isinf(hi) else "]"
    return f"{left}{_fmt_bound(lo, unit)}, {_fmt_bound(hi, unit)}{right}"


def _fmt_effect(x: float, unit: str) -> str:
    return f"{x:+.2f} pp" if unit == "pp" else f"{x:.2f}x"


def _fmt_bound(x: float, unit: str) -> str:
    if math.isinf(x):
        return "∞" if x > 0 else "-∞"
    return f"{x:+.2f}" if unit == "pp" else f"{x:.2f}"


def judge(claim: Claim, effect: Effect) -> tuple[str, str]:
    """The verdict on `claim` (repro.stats.verdict) and its reason; a claim an arm has fewer than
    2 values for is not yet measured (an 'inconclusive' there would read as a measured null)."""
    if min(effect.n_arm, effect.n_against) < 2:
        if effect.test == "paired":
            return stats.NOT_MEASURED, f"needs at least 2 seeds finished in both arms (has {effect.n_arm})"
        return stats.NOT_MEASURED, (f"needs at least 2 finished runs per arm "
                                    f"(has {effect.n_arm} vs {effect.n_against})")
    verdict, why = stats.verdict(effect.interval, claim.null, claim.side, claim.band, claim.margin_band)
    iv, margin = effect.interval, claim.margin_band
    inside = margin is not None and margin[0] <= iv.lo90 and iv.hi90 <= margin[1]
    ninety = f"its 90% interval {_interval90(iv.lo90, iv.hi90, effect.unit)}"
    if verdict == stats.NO_EFFECT:  # the deciding interval, printed: the table shows the 95% one
        why = (f"the 90% interval {_interval90(iv.lo90, iv.hi90, effect.unit)} lies inside the smallest effect "
               "of interest (TOST, 5%)")
    elif verdict == stats.CONTRADICTED and inside:  # both rules hold: say so, the first listed decides
        why += f"; {ninety} also lies inside the smallest effect of interest, so it reads *no effect* as well"
    return verdict, why


def _interval90(lo: float, hi: float, unit: str) -> str:
    """A 90% interval to three places (it decides *no effect*, sometimes by a hair)."""
    return f"[{lo:+.3f}, {hi:+.3f}]" if unit == "pp" else f"[{lo:.3f}, {hi:.3f}]"


def seeds_advice(claim: Claim, effect: Effect) -> str:
    """For an inconclusive claim: how many seeds the measured spread predicts are needed."""
    size = claim.reference
    sd = effect.interval.sd
    if size is None:
        return "no seed count: the claim states neither a size nor a margin"
    if not math.isfinite(sd):
        return "no seed count: no measured spread yet (needs 2 runs per arm)"
    n = stats.seeds_needed(sd, size, claim.test)
    what = "margin" if claim.margin is not None else "paper's value"
    scale = "pp" if claim.unit == "pp" else "on logs"
    per = "pairs" if claim.test == "paired" else "seeds per arm"
    return (f"the measured sd ({sd:.2f} {scale}) predicts {n if n is not None else 'over 10,000'} {per} "
            f"for 80% power against the {what}")


def _fmt_value(metric: str, vals: list[float], censored: bool) -> str:
    if not vals:
        return "—"
    scale = 100.0 if metric in ERROR_METRICS else 1.0
    arr = np.asarray(vals) * scale
    ge = "≥ " if censored else ""
    digits = 2 if scale == 100 else 1 if metric in EPOCH_METRICS else 3
    if len(arr) == 1:
        return f"{ge}{arr[0]:.{digits}f}"
    return f"{ge}{arr.mean():.{digits}f} ± {arr.std(ddof=1):.{digits}f}"


def _unit_for(metric: str) -> str:
    return "pp" if metric in ERROR_METRICS else "x"


def _column(metric: str) -> str:
    """A metric's column heading with its unit: 'top-1 test error (%)'."""
    return LABELS[metric] + (" (pp)" if metric == "gap" else " (%)" if metric in ERROR_METRICS else "")


def spec_label(spec: AblationSpec) -> str:
    """The spec's file as a report names it: `ablations/NAME.toml` for a shipped one, else the
    file's name (never an absolute path)."""
    shipped = spec_file.ABLATIONS_DIR / f"{spec.name}.toml"
    return f"ablations/{spec.name}.toml" if shipped.is_file() and spec.path.endswith(f"{spec.name}.toml") \
        else Path(spec.path).name


def _uniq(done: pd.DataFrame, col: str) -> list:
    return sorted({x for x in done[col] if x is not None and not (isinstance(x, float) and math.isnan(x))}, key=str)


def generated_at(runs: pd.DataFrame) -> str:
    """The newest finished record's `finished_at`: the report's date, from its records."""
    stamps = [x for x in runs["finished_at"] if isinstance(x, str)]
    return max(stamps) if stamps else "?"


def fingerprint_lines(done: pd.DataFrame) -> tuple[str, list[str]]:
    """The distinct code fingerprints (with run counts), and a warning line for runs whose
    fingerprint differs from the majority's."""
    fps = done["code_fingerprint"].fillna("?")
    counts = fps.value_counts()
    if counts.empty:
        return "?", []
    order = sorted(counts.items(), key=lambda kv: (-kv[1], str(kv[0])))
    text = ", ".join(f"{fp} ({n} run{'s' * (n != 1)})" for fp, n in order)
    if len(order) == 1:
        return text, []
    majority = order[0][0]
    odd = done[fps != majority]
    who = ", ".join(f"{r['arm']}/{r['seed']} ({r['code_fingerprint'] or '?'})" for _, r in odd.iterrows())
    return text, [f"> **Warning: {len(odd)} run(s) were trained by code whose fingerprint differs from the "
                  f"majority's ({majority}): {who}. Their training code is not the others'.**"
                  + _diff_commands(done, fps, majority), ""]


def _diff_commands(done: pd.DataFrame, fps: pd.Series, majority: str) -> str:
    """` git diff A B -- <training code>` per other fingerprint, from the revisions that trained
    each (the first in sort order); empty where a revision is unknown."""
    def rev(fp: str) -> str | None:
        revs = sorted(r for r in done.loc[fps == fp, "git_revision"] if isinstance(r, str) and r)
        return revs[0][:10] if revs else None

    paths = " ".join(f"repro/{p}" for p in provenance.TRAINING_CODE)
    base = rev(majority)
    cmds = [f"`git diff {base} {other} -- {paths}`" for fp in sorted(set(fps) - {majority})
            if base and (other := rev(fp)) and other != base]
    return (" What differs: " + "; ".join(cmds) + ".") if cmds else ""


def _device_counts(done: pd.DataFrame) -> list[str]:
    """Each device the runs trained on; with more than one, how many runs each (machines differ
    in their kernels' rounding, so a reader can see how the runs are spread)."""
    counts = machines.by_count(done["machine"])
    if len(counts) <= 1:
        return [name for name, _ in counts]
    return [f"{name} ({n} run{'s' if n != 1 else ''})" for name, n in counts]


def _provenance(spec: AblationSpec, manifest: Mapping, runs: pd.DataFrame) -> tuple[list[tuple[str, str]], list[str]]:
    done = runs[runs["status"].isin(TRAINED)].drop_duplicates("dir")
    datasets = sorted({(r["dataset"], (r["dataset_sha256"] or "")[:12], r["synthetic"])
                       for _, r in done.iterrows() if r["dataset"]}, key=str)
    ds_text = "; ".join(f"{n} (sha256 {h or '?'}…{', synthetic' if syn else ''})" for n, h, syn in datasets) or "?"
    splits = sorted({f"train {_n(r['train_size'])}, holdout {_n(r['holdout_size'])}, test {_n(r['test_size'])}, "
                     f"training-error slice {_n(r['train_eval_size'])}" for _, r in done.iterrows()})
    scale = manifest["scale"]
    gits = sorted({f"{(r['git_revision'] or '?')[:10]}{' (dirty)' if r['git_dirty'] else ''}"
                   for _, r in done.iterrows()})
    devices = _device_counts(done)
    numerics = sorted({f"{r['precision'] or '?'}, channels_last {r['channels_last']}" for _, r in done.iterrows()})
    fps, warning = fingerprint_lines(done)
    compute = float(np.nansum(done.loc[~done["reused"], "wall_seconds"])) if len(done) else 0.0
    shared = float(np.nansum(done.loc[done["reused"], "wall_seconds"])) if len(done) else 0.0
    n_reused = int(done["reused"].sum()) if len(done) else 0
    counts = runs.drop_duplicates("dir")["status"].value_counts()
    counts_text = ", ".join(f"{v} {k}" for k, v in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))
    every = ", ".join(f"{x:g}" for x in _uniq(done, "eval_every")) or "?"
    evals = [f"{a} = {e.evaluate.views}-view test of {e.evaluate.of}'s runs" for a, e in spec.arms.items()
             if e.evaluate is not None]
    rows = [
        ("ablation", _spec_text(spec, manifest)),
        ("scale", f"{scale}: {spec.scales[scale].notes}" if scale in spec.scales and spec.scales[scale].notes
         else str(scale)),
        ("model", ", ".join(map(str, _uniq(done, "model"))) or "?"),
        ("dataset", ds_text),
        ("splits", "; ".join(splits) or "?"),
        ("epochs (cap)", ", ".join(f"{x:g}" for x in _uniq(done, "epochs")) or "?"),
        ("evaluations", f"every {every} epochs; crossing times (epochs to target) are linearly interpolated "
                        "between evaluations"),
        ("seeds", ", ".join(map(str, manifest.get("seeds", [])))),
        ("overrides", ", ".join(f"{k}={v}" for k, v in manifest.get("overrides", {}).items()) or "none"),
        ("runs", counts_text + (f" ({n_reused} copied from another ablation's run: same config hash, trained once)"
                                if n_reused else "")),
        ("evaluation arms", "; ".join(evals) or "none"),
        ("device", ", ".join(devices) or "?"),
        ("torch", ", ".join(map(str, _uniq(done, "torch"))) or "?"),
        ("numerics", "; ".join(numerics) or "?"),
        ("git revision", ", ".join(gits) or "?"),
        ("code fingerprint", fps),
        ("total compute", f"{compute / 60:.1f} min of training (sum of the runs' wall time)"
                          + (f", plus {shared / 60:.1f} min in runs copied from other ablations" if shared else "")),
        ("plots", f"matplotlib {matplotlib_version()} (Agg; PNGs without date or version metadata)"),
        ("generated", f"from the records (newest finished {generated_at(runs)}) by `repro report`"),
    ]
    return rows, warning


def _spec_text(spec: AblationSpec, manifest: Mapping) -> str:
    """The spec's name and file, and whether its text has changed since the manifest was
    written, and if so whether it still plans these very runs (the same config hashes)."""
    head = f"`{spec.name}` ({spec_label(spec)}"
    if not manifest.get("spec_sha256") or not spec.sha256 or manifest["spec_sha256"] == spec.sha256:
        return head + ")"
    extra = plan.runs_not_in(spec, manifest)
    if extra == 0:
        return head + ("; edited since these runs, which it still plans: same config hashes;"
                       " `git log -p` shows the edits)")
    if extra is None:
        return head + "; edited since these runs: it no longer plans this scale)"
    return head + f"; edited since these runs: it now plans {extra} run(s) these records do not have)"


def matplotlib_version() -> str:
    from importlib.metadata import version

    return version("matplotlib")


def _n(x: Any) -> str:
    v = records.number(x)
    return "?" if math.isnan(v) else f"{int(v):,}"


def _pairs_section(runs: pd.DataFrame, rows: list[dict], png: Path) -> list[str]:
    """Each paired claim's per-seed differences, drawn (claims with at least 2 pairs): what its
    interval summarises, seed by seed, and which pairs crossed machines."""
    panels = [_pairs_panel(runs, r) for r in rows
              if r["claim"] is not None and r["effect"].test == "paired" and r["effect"].has_interval]
    if not panels:
        png.unlink(missing_ok=True)  # a figure an earlier build drew from other records
        return []
    figures.pairs(panels, png)
    crossed = any(p.same_machine is not None and not all(p.same_machine) for p in panels)
    bounds = any(any(p.censored) for p in panels)
    return [f"![each pair's difference, seed by seed]({png.name})", "",
            "Each dot is one seed's pair: the arm's value minus the comparison's (pp), or over it (x, on a log "
            "axis); the red bar is the claim's 95% interval around the mean (geometric for ratios); dashed: no "
            "effect; green: the paper's value and band where the claim states a size; grey: the smallest effect of "
            "interest." + (" A hollow dot marks a pair whose two runs trained on different machines."
                           if crossed else "")
            + (" A diamond marks a pair with a run stopped at its cap (its value a bound)." if bounds else ""), ""]


def _pairs_panel(runs: pd.DataFrame, r: dict) -> figures.Pairs:
    c, e = r["claim"], r["effect"]
    a, b, seeds, _ = paired_values(runs, c.arm, c.against, c.metric)
    sel = runs[runs["in_analysis"]].set_index(["arm", "seed"])
    where = sel["machine"]
    mixed = where.loc[[(arm, s) for arm in (c.arm, c.against) for s in seeds]].nunique() > 1
    same = tuple(bool(where[(c.arm, s)] == where[(c.against, s)]) for s in seeds) if mixed else None

    def bound(arm: str, s: int) -> bool:
        return c.metric == "epochs_to_target" and sel.loc[(arm, s), "target_reached"] == False  # noqa: E712

    values = [x / y if c.unit == "x" else 100 * (x - y) for x, y in zip(a, b, strict=True)]
    return figures.Pairs(
        title=f"{LABELS[c.metric]}, {c.arm} vs {c.against} (paired n={e.n_arm}): {effect_text(e)}",
        unit=c.unit, seeds=tuple(seeds), values=tuple(values), same_machine=same,
        censored=tuple(bound(c.arm, s) or bound(c.against, s) for s in seeds),
        estimate=e.estimate, lo=e.lo, hi=e.hi, paper=c.paper if c.sized else None,
        paper_band=c.band if c.sized else None, margin_band=c.margin_band)


def _loss_curve(spec: AblationSpec, sc: str, arm_curves: Mapping[str, list], png: Path) -> list[str]:
    """The holdout loss per evaluation, with chance (ln classes) marked, for a spec whose metrics
    are about the loss (bias-init's flat-loss trap); nothing for the others."""
    if not {"holdout_loss_min", "epochs_to_leave_chance"} & set(spec.metrics):
        return []
    ten = sc in spec_file.TEN_CLASS_SCALES  # smoke and cifar: ten classes, chance is ln 10
    figures.curves(arm_curves, (("holdout_loss", "-"),), png, f"{spec.name}: holdout loss ({sc} scale)",
                   "holdout loss", math.log(10) if ten else None, "chance: ln 10" if ten else "", scale=1.0)
    return [f"![holdout loss per epoch]({png.name})", ""]


def md_table(df: pd.DataFrame) -> str:
    return df.to_markdown(index=False, disable_numparse=True)


def find_manifest(spec: AblationSpec, where: Sequence[Path], scale: str | None) -> dict | None:
    """The manifest of `spec` at `scale` from the results folder, else the committed records;
    with no scale, the most recently updated one in either."""
    results, recs = where[-1], where[0]
    if scale is not None:
        return (rundir.read_json(rundir.manifest_path(results, spec.name, scale))
                or rundir.read_json(rundir.manifest_path(recs, spec.name, scale)))
    found = [m for root in (results, recs) if (m := rundir.load_manifest(root, spec.name, None, spec_file.SCALES))]
    return max(found, key=lambda m: m.get("updated_at", "")) if found else None


def claim_effects(runs: pd.DataFrame, c: Claim) -> tuple[Effect, Effect | None]:
    """A claim's effect under its declared test, and (paired claims) the Welch effect beside it."""
    a, ac = arm_values(runs, c.arm, c.metric)
    b, bc = arm_values(runs, c.against, c.metric)
    welch = measure("welch", a, b, c.unit, ac, bc)
    if c.test == "welch":
        return welch, None
    pa, pb, _, dropped = paired_values(runs, c.arm, c.against, c.metric)
    return dataclasses.replace(measure("paired", pa, pb, c.unit, ac, bc), dropped=tuple(dropped)), welch


def build(name: str | AblationSpec, results_dir: str | os.PathLike = "results", scale: str | None = None,
          reports_dir: str | os.PathLike = "reports") -> tuple[AblationSpec, dict, pd.DataFrame, list[dict]]:
    """Spec, manifest, per-run table and claim rows for one ablation (a name, a spec file's path
    or a loaded spec), from the records under `roots`; ReproError if it has no runs."""
    spec = name if isinstance(name, AblationSpec) else spec_file.load(name)
    where = roots(results_dir, reports_dir)
    manifest = find_manifest(spec, where, scale)
    at = f" at scale {scale}" if scale else ""
    places = f"{Path(results_dir)}/ or {where[0]}/"
    if manifest is None:
        raise ReproError(f"no runs of {spec.name}{at} in {places}: run `repro ablate {spec.name}` first")
    runs = records.collect(spec, manifest, where)
    runs["machine"] = machines.labels(runs)  # once, over every run: each section names a run's machine alike
    if not runs["status"].isin(TRAINED).any():
        raise ReproError(f"no finished runs of {spec.name}{at} in {places} yet: run `repro ablate {spec.name}`")
    rows, covered = [], set()
    for c in spec.claims_for(manifest["scale"]):
        eff, welch = claim_effects(runs, c)
        evaluates = spec.arms[c.arm].evaluate
        if evaluates is not None and evaluates.of == c.against:
            welch = None  # the same nets evaluated twice: not independent samples, so no Welch interval
        v, why = judge(c, eff)
        covered.add((c.arm, c.against, c.metric))
        rows.append({"claim": c, "metric": c.metric, "arm": c.arm, "against": c.against, "effect": eff,
                     "welch": welch, "verdict": v, "why": why,
                     "advice": seeds_advice(c, eff) if v in (stats.INCONCLUSIVE, stats.NOT_MEASURED) else ""})
    claims = spec.claims_for(manifest["scale"])
    paired_design = bool(claims) and all(c.test == "paired" for c in claims)  # same seed, same inits and data
    for arm in spec.arms:  # measured effects the claims do not cover, against the baseline
        for m in spec.metrics if arm != spec.baseline else ():
            if (arm, spec.baseline, m) not in covered:
                rows.append({"claim": None, "metric": m, "arm": arm, "against": spec.baseline,
                             **_other_effects(spec, runs, arm, m, paired_design), "verdict": "—",
                             "why": "no paper claim", "advice": ""})
    return spec, manifest, runs, rows


def _other_effects(spec: AblationSpec, runs: pd.DataFrame, arm: str, m: str, paired_design: bool) -> dict:
    """An unclaimed effect against the baseline: Welch (`effect`), and paired beside it (`paired`)
    where the design pairs seeds; an arm that evaluates the baseline's own nets gets only paired."""
    a, ac = arm_values(runs, arm, m)
    b, bc = arm_values(runs, spec.baseline, m)
    welch = measure("welch", a, b, _unit_for(m), ac, bc)
    if not paired_design:
        return {"effect": welch, "welch": None, "paired": None}
    pa, pb, _, dropped = paired_values(runs, arm, spec.baseline, m)
    paired = dataclasses.replace(measure("paired", pa, pb, _unit_for(m), ac, bc), dropped=tuple(dropped))
    evaluates = spec.arms[arm].evaluate
    same_nets = evaluates is not None and evaluates.of == spec.baseline
    return {"effect": paired if same_nets else welch, "welch": None, "paired": None if same_nets else paired}


def write_report(name: str | AblationSpec, results_dir: str | os.PathLike = "results",
                 reports_dir: str | os.PathLike = "reports", scale: str | None = None) -> Path:
    """Write NAME.md (+ NAME.csv, NAME.json, NAME-train.png, NAME-holdout.png, NAME-pairs.png) from the records;
    into reports/ for real data, into <results>/smoke-reports/ for the smoke scale (`output_dir`).
    `scale` None: the scale most recently ablated. Returns the markdown path."""
    spec, manifest, runs, rows = build(name, results_dir, scale, reports_dir)
    sc = manifest["scale"]
    out = output_dir(sc, results_dir, reports_dir)
    out.mkdir(parents=True, exist_ok=True)
    stem = report_stem(spec.name, sc)
    synthetic = bool(runs["synthetic"].fillna(False).astype(bool).any())
    lines: list[str] = []
    if sc == "smoke":
        lines += [SMOKE_BANNER, ""]
    elif synthetic:
        lines += [SYNTHETIC_BANNER, ""]
    lines += [f"# {spec.title}: `{spec.name}` at {sc} scale", "", f"**Paper:** {spec.section}. {spec.question}", ""]
    lines += _answer_lines(rows, runs)
    prov, warning = _provenance(spec, manifest, runs)
    lines += ["## Provenance", "", md_table(pd.DataFrame(prov, columns=["", "value"])), ""] + warning
    lines += _claims_section(rows) + _extension_note(spec, sc) + _pairs_section(runs, rows, out / f"{stem}-pairs.png")
    where = roots(results_dir, reports_dir)
    target = _target(spec, where, runs)
    lines += _arms_section(spec, runs, rows) + _thresholds_section(runs, rows, where, target)
    view = machine_view(spec, runs, rows)
    lines += _machines_section(spec, runs, view)
    if manifest.get("selection"):
        lines += _selection_section(spec, sc, runs, manifest["selection"])
    notes = [" ".join(spec.notes.split())] if spec.notes else []
    notes += _generated_notes(spec, sc) + _cap_notes(spec, runs)
    if notes:
        lines += ["## Notes", ""] + [x for n in notes for x in (n, "")]
    lines += _curves_section(spec, sc, where, out, stem, runs, target)
    csv = out / f"{stem}.csv"
    table = _csv_table(runs)
    write_text(csv, table.to_csv(index=False, float_format="%.6g", lineterminator="\n"))
    lines += ["## Runs", "", f"Every run (also in [{csv.name}]({csv.name})); errors in %.", "",
              md_table(_runs_md(table)), ""]
    md = out / f"{stem}.md"
    write_text(md, "\n".join(lines))
    side = {  # what the scorecard reads
        "kind": REPORT_KIND, "ablation": spec.name, "report": md.name, "title": spec.title, "scale": sc,
        "question": spec.question, "synthetic": synthetic, "generated_at": generated_at(runs),
        "runs": {"total": int(runs["dir"].nunique()),
                 "done": int(runs.loc[runs["status"].isin(TRAINED), "dir"].nunique()),
                 **({"stage": "selection"} if manifest.get("selection") is not None
                    and not (runs["stage"] == "main").any() else {})},
        "claims": [{"claim": LABELS[r["metric"]], "comparison": f"{r['arm']} vs {r['against']}",
                    "test": r["effect"].test, "paper": _expected(r["claim"]), "measured": effect_text(r["effect"]),
                    "verdict": r["verdict"], "source": r["claim"].source,
                    "runs_left": _runs_left(runs, (r["arm"], r["against"])), "numbers": _claim_numbers(r)}
                   for r in rows if r["claim"] is not None],
    }
    if view is not None:  # the scorecard gathers every report's machine checks and crossed claims
        side["machines"] = {"checks": [_check_row(w) for w in view.checks],
                            "claims": [{"claim": LABELS[c.metric], "comparison": f"{c.arm} vs {c.against}",
                                        "status": status} for c, status, _ in view.claims]}
    write_text(out / f"{stem}.json", json.dumps(side, indent=2, sort_keys=True, ensure_ascii=False) + "\n")
    return md


def _claim_numbers(r: Mapping[str, Any]) -> dict[str, Any]:
    """A claim's effect and the paper's, as numbers for the scorecard's figure: the unit, the
    estimate and 95% interval (pp, or a ratio), the band the claim expects (`Claim.band`: a sign
    claim's whole side, a no-effect claim's margin) and, where it states a size, the paper's
    value; for a paired claim, its pairs, the exact sign-flip test's p, the smallest p its pairs
    allow, and whether the verdict leans on t (`Effect.leans_on_t`); None for what is not finite
    (no interval yet, an open end, no test)."""
    c, e = r["claim"], r["effect"]
    pairs = e.interval.n if e.test == "paired" else None

    def num(x: float | None) -> float | None:
        return float(x) if x is not None and math.isfinite(x) else None

    return {"unit": c.unit, "null": c.null, "estimate": num(e.estimate), "lo": num(e.lo), "hi": num(e.hi),
            "paper": num(c.paper) if c.sized else None, "band": [num(x) for x in c.band],
            "pairs": pairs, "sign_flip_p": num(e.sign_flip_p),
            "sign_flip_floor": stats.sign_flip_floor(pairs) if pairs else None,
            "leans_on_t": e.has_interval and e.leans_on_t(c.null)}


def _generated_notes(spec: AblationSpec, scale: str) -> list[str]:
    """Lines computed from the code, not written by hand: e.g. each arm's size and cost when
    the arms' nets differ in shape (gpus: one column vs two)."""
    if spec.name != "gpus":
        return []
    from repro.layer_table import cost

    parts = []
    for arm in spec.training_arms:
        cfg = spec.config(arm, scale, 0)
        params, macs = cost(cfg.model)
        parts.append(f"`{arm}` ({cfg.model.name}, columns={cfg.model.columns}): {params:,} parameters, "
                     f"{macs:,} multiply-adds per image")
    return ["Net sizes (computed by repro.layer_table from the arms' configs): " + "; ".join(parts) + "."]


def _cap_notes(spec: AblationSpec, runs: pd.DataFrame) -> list[str]:
    """For a ratio claim on epochs to target (Figure 1): whether the slower arm's epoch cap is
    high enough that a ratio twice the paper's would still be seen (issue 11: tanh's cap at
    least 12x ReLU's crossing time), from the analysed runs."""
    out = []
    for c in spec.claims:
        if c.metric != "epochs_to_target" or c.unit != "x" or c.paper is None:
            continue
        fast, _ = arm_values(runs, c.against, "epochs_to_target")
        caps = runs.loc[runs["in_analysis"] & (runs["arm"] == c.arm), "epochs"].dropna()
        if not fast or caps.empty:
            continue
        cap, crossing = float(caps.max()), float(np.mean(fast))
        enough = cap >= 2 * c.paper * crossing
        out.append(f"Cap check ({c.arm} vs {c.against}): `{c.arm}`'s cap of {cap:g} epochs is {cap / crossing:.1f}x "
                   f"`{c.against}`'s mean crossing ({crossing:.2f} epochs): "
                   + (f"a ratio of {2 * c.paper:g}x (twice the paper's) would still be measured, not censored."
                      if enough else f"below {2 * c.paper:g}x (twice the paper's {c.paper:g}x): a large ratio "
                      "would be censored at the cap; raise it."))
    return out


def _test_text(e: Effect) -> str:
    return f"{e.test} n={e.interval.n}" if e.test == "paired" else f"welch n={e.n_arm}/{e.n_against}"


def _extension_note(spec: AblationSpec, scale: str) -> list[str]:
    """A spec whose seeds were raised after a look at the results says so beside its claims."""
    text = spec.scales[scale].extended if scale in spec.scales else ""
    if not text:
        return []
    why = " ".join(text.split())
    return [f"> **Sequential extension:** the seed count was raised after a look at the results ({why}). "
            "The intervals above are computed as if the count had been fixed in advance, so their coverage is "
            "somewhat below the stated level.", ""]


def _expected(claim: Claim) -> str:
    """The claim's expected value, marked where it is the project's own check, not the paper's
    (its section does not name one of the paper's)."""
    text = claim.paper_text()
    return text if claim.section.startswith("§") else f"{text}; not the paper's claim"


def _answer_lines(rows: list[dict], runs: pd.DataFrame) -> list[str]:
    """The report's answer first: each claim's measured effect and verdict in one line (the
    Claims section below gives the reasons), and how much of the campaign it rests on."""
    claim_rows = [r for r in rows if r["claim"] is not None]
    if not claim_rows:
        return []
    done, total = runs.loc[runs["status"].isin(TRAINED), "dir"].nunique(), runs["dir"].nunique()  # outrun too
    head = "**Answer" + (f" so far ({done} of {total} runs finished):**" if done < total else ":**")
    return [head, ""] + [
        f"- {LABELS[r['metric']]}, {r['arm']} vs {r['against']}: {effect_text(r['effect'])} "
        f"({_test_text(r['effect'])}; {'the paper' if r['claim'].section.startswith('§') else 'the claim'}: "
        f"{r['claim'].paper_text()}): **{r['verdict']}**." for r in claim_rows] + [""]


def _claims_section(rows: list[dict]) -> list[str]:
    claim_rows = [r for r in rows if r["claim"] is not None]
    lines = ["## Claims", ""]
    if not claim_rows:
        return lines + ["No paper claim: the effects below are measurements only.", ""]
    k = len(claim_rows)
    lines += [f"This ablation tests {k} claim{'s' * (k != 1)} at once; each interval is at 95% on its own "
              "(no correction for multiplicity).", ""]
    any_paired = any(r["welch"] is not None for r in claim_rows)
    table = pd.DataFrame([{
        "claim": f"{LABELS[r['metric']]}, {r['arm']} vs {r['against']}", "metric": r["metric"],
        "test": _test_text(r["effect"]), "paper": _expected(r["claim"]),
        "measured effect [95% CI]": effect_text(r["effect"]), "verdict": f"**{r['verdict']}**", "reason": r["why"],
        **({"welch [95% CI]": effect_text(r["welch"]) if r["welch"] is not None else "—"} if any_paired else {}),
    } for r in claim_rows])
    lines += [md_table(table), ""]
    for r in claim_rows:
        e = r["effect"]
        if e.dropped:
            lines.append(f"- {r['arm']} vs {r['against']} ({r['metric']}): seed(s) "
                         f"{', '.join(map(str, e.dropped))} finished in only one arm and are left out of both.")
        if r["advice"]:
            lines.append(f"- {r['arm']} vs {r['against']} ({r['metric']}) is {r['verdict']}: {r['advice']}.")
        if not math.isnan(e.sign_flip_p) and e.has_interval:
            lines.append(f"- {r['arm']} vs {r['against']} ({r['metric']}): {_sign_flip_text(e, r['claim'].null)}.")
    if lines[-1] != "":
        lines.append("")
    seen = set()
    for r in claim_rows:  # each quote once, with its section and source
        c = r["claim"]
        if (c.quote, c.section) not in seen:
            seen.add((c.quote, c.section))
            lines += [f"> {c.quote}", ">", f"> — {c.section}; {c.source}", ""] + ([c.note, ""] if c.note else [])
    lines += ["Effects are arm minus comparison in percentage points (pp), or arm over comparison as a "
              "ratio of geometric means (x, on logs). *Paired*: a t interval on the per-seed differences "
              "(runs matched by seed); *welch*: Welch's t interval. *Reproduced*: the 95% interval is on the "
              "paper's side of no effect and overlaps its band (value ± tolerance; ratios: ×/÷ tolerance); "
              "*contradicted*: it excludes no effect on the other side, or lies wholly outside the band; "
              "*no effect*: the 90% interval lies inside ± the declared margin (TOST at 5%); otherwise "
              "*inconclusive*; *not yet measured* while an arm has fewer than 2 finished runs. Beside each "
              "paired interval, an exact sign-flip test (Fisher's randomization test of a zero mean difference, "
              "on logs for ratios) asks the interval's question without its normal assumption; it does not "
              "change a verdict.", ""]
    if any(min(r["effect"].n_arm, r["effect"].n_against) == 1 for r in claim_rows):
        lines += ["With one finished run in an arm there is no interval and every claim involving it is "
                  "*not yet measured*: run with `--seeds 2` or more.", ""]
    return lines


def _sign_flip_text(e: Effect, null: float) -> str:
    """The exact sign-flip test beside a paired interval, and whether the two agree on
    excluding no effect (with few pairs the test cannot reach 0.05 at all: 2 / 2^n)."""
    n, p = e.interval.n, e.sign_flip_p
    shown = "< 0.001" if p < 0.001 else f"= {p:.3g}"
    text = f"exact sign-flip test (all {2 ** n:,} sign patterns of the {n} differences; no normal assumption) p {shown}"
    if e.leans_on_t(null):
        floor = stats.sign_flip_floor(n)
        floor_text = f" (with {n} pairs no p can fall below {floor:.3g})" if floor >= 0.05 else ""
        return (text + ": the interval's exclusion of no effect rests on the t distribution's normal "
                f"assumption{floor_text}")
    if e.excludes(null) != (p < 0.05):
        return text + ": it excludes no effect where the t interval does not"
    return text + (": like the interval, it excludes no effect" if p < 0.05 else
                   ": like the interval, it does not exclude no effect")


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
            row[_column(m)] = _fmt_value(m, vals, cens)
        table.append(row)
    lines += [md_table(pd.DataFrame(table)), ""]
    other = [r for r in rows if r["claim"] is None]
    if other:
        paired = any(r.get("paired") is not None for r in other)
        lines += [f"### Other effects against `{spec.baseline}`", "",
                  ("Welch (each arm's runs as independent samples), and paired beside it (per-seed differences, "
                   "over the seeds both arms have: the design pairs seeds, with the same data order and initial "
                   "weights). " if paired else "") + "Measured, not claimed: no verdict.", "",
                  md_table(pd.DataFrame([{
                      "metric": LABELS[r["metric"]], "comparison": f"{r['arm']} vs {r['against']}",
                      "n": f"{r['effect'].n_arm} / {r['effect'].n_against}",
                      f"{r['effect'].test} (95% CI)" if not paired else "welch (95% CI)": effect_text(r["effect"]),
                      **({"paired (95% CI)": effect_text(r["paired"]) if r.get("paired") else "—"} if paired else {}),
                  } for r in other])), ""]
    return lines


MACHINES_INTRO = (
    "The analysed runs trained on more than one machine. Machines' kernels round differently, so a seed never "
    "trains to the same weights on two of them; but its initial weights, data order and augmentation come from "
    "seeded generators, the same on any machine, so a pair stays a pair. What would matter is a machine that "
    "shifts the results on average. A machine is the CPU or GPU model its record names, and where one name was "
    "recorded on two platforms, the platform too (one CPU name has come both with AVX2 only and with AVX-512). "
    "Where each arm's runs trained:")


@dataclasses.dataclass(frozen=True)
class MachineView:
    """An ablation whose analysed runs trained on more than one machine: each arm's machines
    against each other, and per claim how its pairs (or arms) sit on the machines: 'one machine',
    'mixed' or 'crossed' (no pair shares one), with its report line."""

    metrics: list[str]
    checks: list[machines.WithinArm]
    claims: list[tuple[Claim, str, str]]


def machine_view(spec: AblationSpec, runs: pd.DataFrame, rows: list[dict]) -> MachineView | None:
    """None when every analysed run shares one machine."""
    if len(machines.machines(runs)) < 2:
        return None
    claims = [r["claim"] for r in rows if r["claim"] is not None]
    metrics = list(dict.fromkeys(c.metric for c in claims)) or list(spec.metrics[:1])
    checks = [w for m in metrics for w in machines.within_arm(runs, list(spec.arms), m, _unit_for(m))]
    return MachineView(metrics, checks, [(c, *_claim_machines(runs, c, bool(checks))) for c in claims])


def _check_row(w: machines.WithinArm) -> dict[str, str]:
    return {"arm": w.arm, "metric": LABELS[w.metric], "comparison": f"{w.machine} vs {w.reference}",
            "n": f"{w.effect.n_arm} / {w.effect.n_against}", "measured (95% CI)": effect_text(w.effect)}


def _machines_section(spec: AblationSpec, runs: pd.DataFrame, view: MachineView | None) -> list[str]:
    """Where the runs trained, each arm's machines against each other, and each claim's pairs by
    machine (repro.machines); nothing when every analysed run shares one machine."""
    if view is None:
        return []
    table = [{"arm": r["arm"], "machine": r["machine"], "runs": r["n"], "seeds": r["seeds"],
              **{_column(m): _fmt_value(m, *arm_values(r["runs"], r["arm"], m)) for m in view.metrics}}
             for r in machines.split(runs, list(spec.arms))]
    lines = ["## Machines", "", MACHINES_INTRO, "", md_table(pd.DataFrame(table)), ""]
    if view.checks:
        lines += ["Within an arm, machine against machine (Welch; the seeds differ too, so the seed-to-seed "
                  "spread is in it; with no machine effect the interval covers zero 95% of the time):", "",
                  md_table(pd.DataFrame([_check_row(w) for w in view.checks])), ""]
    lines += [line for _, _, line in view.claims]
    return lines + [""] if view.claims else lines


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"


def _claim_machines(runs: pd.DataFrame, c: Claim, checked: bool) -> tuple[str, str]:
    """A claim's pairs (paired) or arms (welch) by machine: 'one machine', 'mixed', 'crossed' or
    'none yet' (no pair, or an arm without runs), and one line saying so and what that leaves open."""
    name = f"{c.arm} vs {c.against} ({LABELS[c.metric]})"
    if c.test == "paired":
        p = machines.pairs(runs, c.arm, c.against, c.metric, c.unit)
        if p.mixed:
            between = (f"; one machine {'over' if c.unit == 'x' else 'minus'} across, {effect_text(p.between)} "
                       "(Welch on the pairs' effects: a machine effect on the claim would show here)"
                       if p.between.has_interval else "")
            return "mixed", (f"- {name}: {_count(p.same.n_arm, 'pair')} on one machine, {effect_text(p.same)}; "
                             f"{p.across.n_arm} across machines, {effect_text(p.across)}{between}.")
        if p.same.n_arm == 0 and p.across.n_arm == 0:
            return "none yet", f"- {name}: no seed has finished in both arms yet."
        if p.across.n_arm == 0:
            return "one machine", f"- {name}: both runs of every pair on one machine."
        crossed = f"every one of its {_count(p.across.n_arm, 'pair')} crosses machines"
    else:
        mine, theirs = machines.of_arm(runs, c.arm), machines.of_arm(runs, c.against)
        if not (mine and theirs):
            return "none yet", f"- {name}: an arm has no finished runs yet."
        if mine & theirs:
            status = "one machine" if len(mine | theirs) == 1 else "mixed"
            return status, f"- {name}: both arms have runs on {', '.join(sorted(mine & theirs))}."
        crossed = f"its arms trained on different machines ({', '.join(sorted(mine))}; {', '.join(sorted(theirs))})"
    tail = ("so a machine effect would be part of its effect: the within-arm check above measures one" if checked
            else "**and no arm has runs on two machines: nothing here tells its effect from a machine effect**")
    return "crossed", f"- {name}: {crossed}, {tail}."


def _target(spec: AblationSpec, where: Sequence[Path], runs: pd.DataFrame) -> float | None:
    """The training-error target: the spec's, else the lowest the runs' configs set."""
    if spec.target is not None:
        return spec.target
    targets = records.targets(where, runs)
    return min(targets) if targets else None


THRESHOLD_STEPS = (0.15, 0.10, 0.05, 0.0, -0.05, -0.10)  # other training errors, around the target


def _thresholds_section(runs: pd.DataFrame, rows: list[dict], where: Sequence[Path], target: float | None
                        ) -> list[str]:
    """A claim on epochs to the target, remeasured at other training errors that every analysed
    run of both arms reached: does the ratio depend on where the curves are cut? Post hoc."""
    claims = [r["claim"] for r in rows if r["claim"] is not None and r["metric"] == "epochs_to_target"]
    if not claims or target is None:
        return []
    ys = [round(target + d, 4) for d in THRESHOLD_STEPS if 0 < target + d < 1]
    hits = records.crossings(where, runs, ys)
    table, others = [], False  # others: a row at a threshold other than the claim's
    for c in claims:
        a, b = (hits[hits["arm"] == arm].set_index("seed") for arm in (c.arm, c.against))
        if min(len(a), len(b)) < 2:
            continue
        for y in ys:
            if a[y].isna().any() or b[y].isna().any():
                continue  # a run never got there (a run that stops at the target never goes below it)
            seeds = sorted(set(a.index) & set(b.index)) if c.test == "paired" else None
            av, bv = (list(v[y]) if seeds is None else [v[y][s] for s in seeds] for v in (a, b))
            others = others or y != target
            table.append({"comparison": f"{c.arm} vs {c.against}",
                          "training error reached": f"{100 * y:g}%" + (" (the claim)" if y == target else ""),
                          "arm (epochs)": _fmt_value("epochs_to_target", list(a[y]), False),
                          "against (epochs)": _fmt_value("epochs_to_target", list(b[y]), False),
                          f"{c.test} ratio [95% CI]": effect_text(measure(c.test, av, bv, c.unit))})
    if not others:
        return []
    return ["## Other thresholds", "",
            f"The claim is stated at {100 * target:g}% training error. The same comparison at the other "
            "training errors every analysed run of both arms reached (eval-mode, interpolated the same way) "
            "shows whether the ratio depends on where the curves are cut. Measured after the runs, not "
            "claims: no verdicts. arm and against: mean ± sd of each arm's epochs.", "",
            md_table(pd.DataFrame(table)), ""]


def _curves_section(spec: AblationSpec, sc: str, where: Sequence[Path], out: Path, stem: str,
                    runs: pd.DataFrame, threshold: float | None) -> list[str]:
    arm_curves = records.curves(where, runs)
    if not arm_curves:
        return []
    line, label = (threshold, f"target {100 * threshold:g}%") if threshold else (None, "")
    train_png = out / f"{stem}-train.png"
    figures.curves(arm_curves, (("train_error", "-"), ("train_error_running", ":")), train_png,
                   f"{spec.name}: training error ({sc} scale)", "training error (%)", line, label)
    lines = ["## Curves", "", f"![training error per epoch]({train_png.name})", ""]
    if any(not math.isnan(y) for runs_ in arm_curves.values() for _, v in runs_ for y in v["holdout_error"]):
        holdout_png = out / f"{stem}-holdout.png"
        figures.curves(arm_curves, (("holdout_error", "-"),), holdout_png,
                       f"{spec.name}: holdout error ({sc} scale)", "holdout error (%)", None, "")
        lines += [f"![holdout error per epoch]({holdout_png.name})", ""]
    lines += _loss_curve(spec, sc, arm_curves, out / f"{stem}-holdout-loss.png")
    return lines + ["Solid: eval-mode training error on the fixed training slice (and holdout error); dotted: "
                    "the running training error over the batches since the previous evaluation (dropout and "
                    "augmentation on). Thin lines: single runs; thick lines: the mean over seeds at each "
                    "evaluation. x: epochs trained, fractional where evaluations are more frequent than once "
                    "an epoch.", ""]


def _selection_section(spec: AblationSpec, scale: str, runs: pd.DataFrame, sel: Mapping) -> list[str]:
    key, chosen = sel["key"], sel.get("chosen") or {}
    by_holdout = sel.get("by") == "final_holdout_error"
    sr = runs[runs["stage"] == "selection"]
    order = {a: i for i, a in enumerate(spec.training_arms)}  # arms as the spec lists them, values ascending
    sr = sr.sort_values("grid", kind="stable").sort_values("arm", key=lambda a: a.map(order), kind="stable")
    trained = sr[sr["status"].isin(TRAINED)]
    mixed = trained["machine"].nunique() > 1 and len(trained) > 1
    chance = 1 - 1 / spec.config(spec.training_arms[0], scale, 0).model.num_classes  # guessing's error
    at_chance = sr["final_holdout_error"] >= chance - 0.02  # NaN (no holdout) is not at chance
    rows = []
    for i, r in sr.iterrows():
        row = {"arm": r["arm"], key: f"{r['grid']:g}", "status": r["status"] + (" (at chance)" if at_chance[i] else "")}
        if mixed:  # values compared across machines: say where each trained
            row["machine"] = r["machine"] if r["status"] in TRAINED else "—"
        if by_holdout:
            row["final holdout error (%)"] = _pct_or_dash(r["final_holdout_error"])
        else:
            row["epochs to target"] = ("—" if math.isnan(r["epochs_to_target"]) else
                                       f"{'' if r['target_reached'] else '≥ '}{r['epochs_to_target']:.2f}")
        row["final train error (%)"] = _pct_or_dash(r["final_train_error"])
        rows.append({**row, "chosen": "✓" if chosen.get(r["arm"]) == r["grid"] else ""})
    rule = ("the lowest holdout error at the end of the recipe" if by_holdout else
            "fewest epochs to the target, ties broken by the lower final training error")
    out = ["## Selection", "",
           f"`{key}` chosen per arm on seed {min(sr['seed']) if len(sr) else '?'}: {rule}.", "",
           md_table(pd.DataFrame(rows)), ""]
    if at_chance.any():
        out += [f"*at chance*: a final holdout error within 2 pp of guessing's ({100 * chance:.0f}%): the net "
                "did not learn with that value.", ""]
    if (sr["status"] == rundir.OUTRUN).any():
        out += ["*outrun*: stopped at the end of the first epoch by which another value of its arm had already "
                "reached the target, so it could no longer be chosen (its ≥ epochs are where it stopped).", ""]
    for arm in spec.training_arms:
        out += _edge_notes(spec, scale, arm, key, sorted(float(g) for g in sr.loc[sr["arm"] == arm, "grid"]),
                           chosen.get(arm))
    return out + [""] if out[-1] else out


def _edge_notes(spec: AblationSpec, scale: str, arm: str, key: str, grid: list[float], c: float | None) -> list[str]:
    """What a reader must know of one arm's choice: nothing chosen, a value tried past the
    declared grid's edge (the spec's beyond_edge rule), or a choice still at an edge."""
    past = [g for g in grid if g not in spec.grid(arm, scale)]
    out = []
    for g in past:
        edge = next((v for v in spec.grid(arm, scale) if spec.beyond(arm, scale, v) == g), None)
        if edge is None:  # a manifest written before its spec's grid was edited
            out.append(f"- `{arm}`: {key} = {g:g} is not in the spec's grid now.")
            continue
        out.append(f"- `{arm}`: {key} = {edge:g} led its declared grid at its {'low' if g < edge else 'high'} edge, "
                   f"so {g:g}, one step beyond, was tried too (the spec's `beyond_edge` rule, applied once).")
    if c is None:
        out.append(f"- `{arm}`: nothing chosen (every value diverged, or the grid is unfinished).")
    elif len(grid) > 1 and c in (grid[0], grid[-1]):
        after = " even after the step beyond it" if past else ""
        out.append(f"- `{arm}`: {key} = {c:g} is at the edge of its grid{after}; the best value may lie beyond it.")
    return out


def _pct_or_dash(x: float) -> str:
    return "—" if x is None or math.isnan(x) else f"{100 * x:.2f}"


def _csv_table(runs: pd.DataFrame) -> pd.DataFrame:
    t = runs.copy()
    for m in ERROR_METRICS:
        t[m + ("_pp" if m == "gap" else "_pct")] = (100 * t[m]).round(4)
        del t[m]
    head = ["ablation", "scale", "stage", "arm", "evaluates", "grid", "seed", "hash", "status", "in_analysis",
            "epochs", "epochs_run", "eval_every", "epochs_to_target", "target_reached", "epochs_to_converge",
            "epochs_to_leave_chance", "test_loss", "holdout_loss_min"]
    values = [c for c in t.columns if c.endswith(("_pct", "_pp"))]
    tail = ["wall_seconds", "reused", "model", "dataset", "dataset_sha256", "synthetic", "device", "device_name",
            "platform", "cpu_features", "torch", "precision", "channels_last", "git_revision", "git_dirty",
            "code_fingerprint", "finished_at", "dir"]
    return t[head + values + tail]


def _runs_md(t: pd.DataFrame) -> pd.DataFrame:
    def f(x: Any, digits: int = 2) -> str:
        return "—" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.{digits}f}"

    return pd.DataFrame({
        "stage": t["stage"], "arm": t["arm"],
        "grid": ["" if g is None or (isinstance(g, float) and math.isnan(g)) else f"{g:g}" for g in t["grid"]],
        "seed": t["seed"], "hash": t["hash"], "status": t["status"],
        "used": ["✓" if x else "" for x in t["in_analysis"]],
        "epochs": [f(x, 2) if x is not None else "—" for x in t["epochs_run"]],
        "train (eval)": [f(x) for x in t["final_train_error_pct"]],
        "train (running)": [f(x) for x in t["final_train_error_running_pct"]],
        "holdout": [f(x) for x in t["final_holdout_error_pct"]], "test": [f(x) for x in t["test_error_pct"]],
        "time (s)": [f(x, 0) for x in t["wall_seconds"]],
    })


def _runs_left(runs: pd.DataFrame, arms: Sequence[str]) -> int:
    """The runs still to train that could move a claim on `arms`: theirs, and any selection run
    (a choice still open adds main runs). A claim whose design is complete reads as final while
    its ablation's other arms train on."""
    left = runs[~runs["status"].isin(TRAINED)]
    return int(left.loc[(left["stage"] == "selection") | left["arm"].isin(arms), "dir"].nunique())
