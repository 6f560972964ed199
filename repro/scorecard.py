"""The scorecard, reports/README.md: every real-data report's claims on one page.

Reads only the reports' sidecars (NAME.json, written by repro.report beside each NAME.md): the
four questions the project is built around first, then every claim with its verdict and a figure
of them all, the machine checks each report made, and reports/choices.md (repro.choices). Like
the reports, a pure function of what it reads: dated by the newest record, never by the clock.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pandas as pd

from repro import choices, figures, report, rundir, spec_file, stats
from repro.errors import ReproError
from repro.files import write_text
from repro.report import md_table


def write_reports(name_or_all: str, results_dir: str | os.PathLike = "results",
                  reports_dir: str | os.PathLike = "reports", scale: str | None = None) -> list[Path]:
    """`repro report NAME|all`: one report (an error if it has no runs), or, for `all`, one per
    ablation and scale that has runs (an error if none has); then the scorecard."""
    if name_or_all != "all":
        paths = [report.write_report(name_or_all, results_dir, reports_dir, scale)]
    else:
        paths = []
        for n in spec_file.names():
            for s in ([scale] if scale else spec_file.SCALES):
                try:
                    paths.append(report.write_report(n, results_dir, reports_dir, s))
                except ReproError as e:
                    if not str(e).startswith(("no runs", "no finished runs")):
                        raise
        if not paths:
            raise ReproError(f"no runs of any ablation in {Path(results_dir)}/ or {report.records_root(reports_dir)}/: "
                             "run `repro ablate NAME` first")
    write_scorecard(reports_dir)
    return paths


# The four questions the project is built around (issue 11), answered first in the scorecard.
HEADLINE = ("activation", "activation-19pct", "lrn", "pooling", "gpus")


def write_scorecard(reports_dir: str | os.PathLike = "reports") -> Path:
    """reports/README.md: the four headline questions first, then one row per claim of every
    real-data report there (never smoke or synthetic ones, which live elsewhere) and a line for
    every shipped ablation without one; dated by its newest report, never by the clock."""
    reports = Path(reports_dir)
    reports.mkdir(parents=True, exist_ok=True)
    sides = real_data_sides(reports)
    choices.write_choices(reports, sides)
    rows = [row for side in sides.values() for row in _scorecard_rows(side)]
    dates = [side.get("generated_at") or "?" for side in sides.values()]
    n_claims = sum(1 for r in rows if r["test"] != "—")
    lines = ["# Scorecard: AlexNet's design choices on trial", ""]
    lines += [f"{n_claims} claim{'s' * (n_claims != 1)} from {len(sides)} real-data report{'s' * (len(sides) != 1)} "
              "(CIFAR-10 or ImageNet, rebuilt by `repro report all` from the run records in "
              f"[records/](records/); newest record {max(dates) if dates else '—'}). Each interval is at 95% on "
              "its own: with this many claims, expect about one in twenty to miss by chance. A *no effect* "
              "verdict rests on the 90% interval (TOST), which its report's reason column prints. A claim of sign "
              "only (\"lower\") is reproduced by any effect on the paper's side, however large; one with a band "
              "(\"-1.5 pp ± 0.75\") is contradicted by an effect wholly outside it on either side. A verdict "
              "marked interim (or campaign in progress) has runs of its own arms still to train, or an lr choice "
              "still open; a claim whose arms are done reads as final while other arms train on. Smoke-scale "
              f"reports go to `results/{report.SMOKE_REPORTS}/`, never here.", ""]
    lines += _headline_section(sides)
    lines += ["## Every claim", ""] + _claims_figure(sides, reports / "claims.png")
    if any(r["test"] == "?" for r in rows):
        lines += ["> Rows whose test is `?` come from reports made before committed run records and the "
                  "train/holdout/test split: they cannot be rebuilt, and their runs validated on the test set. "
                  "Rerun those ablations.", ""]
    lines += [md_table(pd.DataFrame(rows)) if rows else "No real-data reports yet: run `repro ablate NAME`.", ""]
    lines += _leaning_on_t(sides)
    missing = [n for n in spec_file.names() if n not in sides]
    if missing:
        lines += ["No real-data report yet: " + ", ".join(f"`{n}`" for n in missing) +
                  " (`repro ablate NAME --dry-run` shows what is left to run).", ""]
    lines += _scorecard_machines(sides)
    lines += ["Every line of the code that encodes a paper choice, by section, with the ablations that test "
              "it: [choices.md](choices.md).", ""]
    path = reports / "README.md"
    write_text(path, "\n".join(lines))
    return path


def _claims_figure(sides: Mapping[str, Mapping[str, Any]], png: Path) -> list[str]:
    """Every measured claim's effect and interval beside what it expects, drawn (claims.png), in
    the table's order; nothing while no claim is measured (or sidecars predate the numbers)."""
    marks = [figures.ClaimMark(label=_mark_label(name, side, c), unit=n["unit"], estimate=n["estimate"], lo=n["lo"],
                               hi=n["hi"], paper=n["paper"], band=tuple(n["band"]), verdict=c["verdict"])
             for name, side in sides.items() for c in side["claims"]
             if (n := c.get("numbers")) and c["verdict"] != stats.NOT_MEASURED]  # one pair: no interval
    if not marks:
        png.unlink(missing_ok=True)
        return []
    figures.claims(marks, png)
    return [f"![every measured claim beside what it expects]({png.name})", "",
            "Each row a claim with an estimate, in the table's order: the dot and its 95% interval coloured by "
            "verdict (an interim one says so), green what the claim expects (a sign claim: its whole side of no "
            "effect; a sized one: the paper's band, its value a tick; a no-effect claim: its margin), dashed no "
            "effect. Differences in pp above, ratios on a log axis below.", ""]


def _mark_label(name: str, side: Mapping[str, Any], c: Mapping[str, Any]) -> str:
    """'lrn: lrn vs none, top-1 test error (interim)'; a control or harness check says it is not
    the paper's claim, as the table's paper column does."""
    tags = [t for t, on in (("interim", _claim_in_progress(side, c)),
                            ("not the paper's claim", "not the paper's claim" in c["paper"])) if on]
    return f"{name}: {c['comparison']}, {c['claim']}" + (f" ({'; '.join(tags)})" if tags else "")


def _leaning_on_t(sides: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """The claims whose paired 95% interval excludes no effect while the exact sign-flip test
    beside it (each report's Claims section) has p >= 0.05: their verdicts lean on the t
    interval's normal assumption."""
    found = []
    for name, side in sides.items():
        for c in side["claims"]:
            n = c.get("numbers") or {}
            if not n.get("leans_on_t"):  # decided once, by the report (`Effect.leans_on_t`)
                continue
            p = n["sign_flip_p"]
            floor = ", the smallest possible" if math.isclose(p, n["sign_flip_floor"]) else ""
            interim = "; interim" if _claim_in_progress(side, c) else ""
            found.append(f"{name}'s {c['comparison']}, {c['claim']} ({n['pairs']} pairs: p = {p:.3g}{floor}{interim})")
    if not found:
        return []
    return ["Verdicts that lean on the t interval's normal assumption: the paired 95% interval excludes no "
            "effect, but the exact sign-flip test beside it in the report (no normal assumption) does not reach "
            "p < 0.05, which with 5 or fewer pairs no test of signs can: " + "; ".join(found) + ".", ""]


def _scorecard_machines(sides: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """Every report's checks of an arm's machines against each other, and the claims whose arms
    never share a machine (each report's Machines section has the detail)."""
    checks = [{"ablation": f"[{name}]({side.get('report', name + '.md')})", **w}
              for name, side in sides.items() for w in side.get("machines", {}).get("checks", [])]
    crossed = [f"{name}'s {c['claim']}, {c['comparison']}" for name, side in sides.items()
               for c in side.get("machines", {}).get("claims", []) if c["status"] == "crossed"]
    if not checks and not crossed:
        return []
    lines = ["## Machines", "", "The campaigns span sessions, and sessions draw different machines, whose kernels "
             "round differently. Where an arm has runs on two machines, its report checks one against the other "
             "(Welch; the seeds differ too; with no machine effect each interval covers zero 95% of the time):", ""]
    columns = ["ablation", "arm", "metric", "comparison", "n", "measured (95% CI)"]
    lines += [md_table(pd.DataFrame(checks, columns=columns)), ""] if checks else [
        "No arm has runs on two machines yet.", ""]
    if crossed:
        lines += ["Claims whose two arms never share a machine, so that a machine effect would be part of the "
                  "measured effect (read them beside the checks above): " + "; ".join(crossed) + ".", ""]
    return lines


def _claim_in_progress(side: Mapping[str, Any], claim: Mapping[str, Any]) -> bool:
    """Runs still to come that may move this claim (sidecars older than `runs_left`: any of the
    ablation's)."""
    return claim.get("runs_left", side["runs"]["total"] - side["runs"]["done"]) > 0


def real_data_sides(reports: Path) -> dict[str, Any]:
    """Ablation -> the sidecar of its real-data report in `reports` (never smoke or synthetic)."""
    sides = {}
    for p in sorted(reports.glob("*.json")):
        side = rundir.read_json(p)
        if side and side.get("kind") == report.REPORT_KIND and side["scale"] != "smoke" and not side.get("synthetic"):
            sides[side["ablation"]] = side
    return sides


def _scorecard_rows(side: Mapping[str, Any]) -> list[dict[str, str]]:
    """One scorecard row per claim of a report's side JSON (one row if it has none)."""
    link = f"[{side['ablation']}]({side.get('report', side['ablation'] + '.md')})"
    runs = _runs_text(side)
    if not side["claims"]:
        return [{"ablation": link, "scale": side["scale"], "runs": runs, "claim": "no paper claim",
                 "test": "—", "paper": "—", "measured (95% CI)": "see report", "verdict": "—"}]
    return [{"ablation": link, "scale": side["scale"], "runs": runs,
             "claim": f"{c['claim']}, {c['comparison']}", "test": c.get("test", "?"),
             "paper": c["paper"], "measured (95% CI)": c["measured"],
             "verdict": f"**{c['verdict']}**" + (" (interim)" if c["verdict"] != stats.NOT_MEASURED
                                                  and _claim_in_progress(side, c) else "")}
            for c in side["claims"]]


def _runs_text(side: Mapping[str, Any]) -> str:
    """'13/18'; '3/12 selection' while only the selection stage is planned (its main runs follow)."""
    runs = side["runs"]
    return f"{runs['done']}/{runs['total']}" + (" selection" if runs.get("stage") == "selection" else "")


def _headline_section(sides: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """The four questions users come for (Figure 1 on two nets, LRN, pooling, two GPUs): each
    claim's verdict, or why there is none yet."""
    rows = []
    for name in HEADLINE:
        side = sides.get(name)
        question = side.get("question") if side else None
        if question is None:
            try:
                question = spec_file.load(name).question
            except ReproError:
                continue
        if side is None:
            rows.append({"question": question, "comparison": "—", "measured (95% CI)": "not yet run",
                         "verdict": "—", "runs": "0", "report": f"`{name}`"})
            continue
        for c in side["claims"]:
            verdict = ("superseded (rerun pending)" if c.get("test", "?") == "?" else
                       f"**{c['verdict']}**" + (" (campaign in progress)" if _claim_in_progress(side, c) else ""))
            rows.append({"question": question, "comparison": c["comparison"], "measured (95% CI)": c["measured"],
                         "verdict": verdict, "runs": _runs_text(side),
                         "report": f"[{name}]({side.get('report', name + '.md')})"})
    if not rows:
        return []
    superseded = (" A verdict marked superseded comes from a report made before the evidence protocol; its "
                  "campaign is to be rerun." if any(r["verdict"].startswith("superseded") for r in rows) else "")
    return ["## The four questions", "",
            "ReLU vs tanh (Figure 1, on two nets), LRN, overlapping pooling, one vs two GPUs: the ablations "
            f"the project is built around.{superseded}", "", md_table(pd.DataFrame(rows)), ""]
