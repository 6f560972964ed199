"""`repro ablate`: an ablation spec -> runs -> run directories -> a report.

The entry point over the ablation layers (repro.ablation): `run_ablation(request)` checks
the request, loads the spec(s), and for each one either lists its runs (`--dry-run`),
prints one shell command per pending run (`--plan`), trains the runs `--only` names, or
trains every run that is missing (serially, or on `--jobs N` worker processes) and writes
the report.

    request (AblationRequest)  ->  plan (runs, their state, the manifest)
                               ->  execute (Runner or Pool: selection grids, choose, main seeds)
                               ->  report (repro.report, from the run directories)

Two `repro ablate` processes may share a results directory: each run is trained under a
file lock (repro.rundir), so they, `--jobs` workers and `--only` commands all compose.

Where things go (`store`): runs train under `--results`; at real-data scales each finished
run's record is also copied into `<reports>/records/` (committed), and a record there counts
as a finished run, so a fresh clone retrains nothing it has. Smoke runs never touch
`<reports>/`: their reports go to `<results>/smoke-reports/` and no scorecard is written.
"""

from __future__ import annotations

import dataclasses
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TextIO

from rich.console import Console
from rich.table import Table

from repro import report, rundir, scorecard, spec_file
from repro.ablation import plan
from repro.ablation.execute import Outcome, Progress, Runner, Trainer, raise_failed, run_stages
from repro.ablation.request import AblationRequest
from repro.errors import ConfigError, DataError
from repro.spec_file import AblationSpec

__all__ = ["AblationRequest", "Outcome", "run_ablation"]


# ----------------------------------------------------------------------------- checking the request


def default_scale(data_dir: str | os.PathLike | None = None, asked: bool = False) -> str:
    """'cifar' when CIFAR-10 can be found; otherwise a one-line ConfigError saying how to get it
    (asked: --scale cifar was given, not defaulted to)."""
    from repro.data.cifar10 import find_root

    try:
        find_root(data_dir)
    except DataError:
        why = "" if asked else " for the default --scale cifar"
        how = ("add --download to fetch it there" if data_dir else "pass --data-dir D (a folder holding "
               "cifar-10-batches-py/), set $REPRO_DATA, add --download to fetch it")
        where = f" in --data-dir {data_dir} (it needs cifar-10-batches-py/ inside)" if data_dir else ""
        raise ConfigError(f"CIFAR-10 not found{where}{why}: {how}, "
                          "or use --scale smoke (synthetic data, no download)") from None
    return "cifar"


def _check_data(scale: str, data_dir: str | None, download: bool) -> None:
    if scale == "cifar":
        if download:
            from repro.data.cifar10 import download as fetch

            fetch(data_dir)
        default_scale(data_dir, asked=True)
    elif scale == "imagenet" and not data_dir:
        raise ConfigError("--scale imagenet needs --data-dir D (an ImageNet folder: train/ and val/ by class)")


def _check(r: AblationRequest) -> None:
    """One-line ConfigErrors for options that are invalid on their own or together."""
    if r.scale is not None and r.scale not in spec_file.SCALES:
        raise ConfigError(f"--scale {r.scale}: choose {', '.join(spec_file.SCALES)}")
    if r.seeds is not None and r.seeds < 1:
        raise ConfigError(f"--seeds {r.seeds}: must be at least 1")
    if r.jobs < 1:
        raise ConfigError(f"--jobs {r.jobs}: must be at least 1")
    if r.plan and (r.dry_run or r.only):
        raise ConfigError("--plan lists every pending run: it does not combine with --dry-run or --only")
    if r.only is not None and (r.name == "all" or not r.only):
        raise ConfigError("--only names runs of one ablation (e.g. `repro ablate lrn --only on/0`), not of `all`"
                          if r.only else "--only: name at least one run")


def _resolve_scale(r: AblationRequest) -> str:
    """The scale to run: the request's (its data checked unless nothing trains), else 'cifar' if found."""
    if r.scale is None:
        if r.download:
            _check_data("cifar", r.data_dir, r.download)
        return default_scale(r.data_dir)
    if not (r.dry_run or r.plan):
        _check_data(r.scale, r.data_dir, r.download)
    return r.scale


# ----------------------------------------------------------------------------- the entry point


def run_ablation(request: AblationRequest, *, trainer: Trainer | None = None, console: Console | None = None,
                 stream: TextIO | None = None) -> list[Outcome]:
    """`repro ablate NAME|all`: run (or list, or plan) one ablation or all of them.

    scale None: 'cifar' when CIFAR-10 is found, else a ConfigError saying how to get it.
    seeds None: the scale's own count; otherwise seeds 0..seeds-1. jobs N > 1: N runs at
    once in worker processes (repro.ablation.pool). plan: print one shell command per
    pending run to `stream` (default stdout), train nothing. only: train just these runs of
    one ablation (`ARM/SEED`, `ARM/KEY-VALUE/SEED`, optionally `-HASH`). trainer: default
    repro.train.run; console: where the progress view and the result lines go.
    """
    _check(request)
    names = spec_file.names() if request.name == "all" else [request.name]
    specs = [spec_file.load(n) for n in names]  # a mistyped name is the first thing to say
    scale = _resolve_scale(request)
    request = dataclasses.replace(request, scale=scale)
    console = console or Console()
    if request.plan:
        return _plan(specs, request, stream or sys.stdout)
    if trainer is None and not request.dry_run:
        from repro.train import run as trainer
    runner = _runner(request, trainer)
    outcomes = []
    with runner:
        for spec in specs:
            outcomes.append(ablate_one(spec, request, trainer, console, runner))
    if request.dry_run and len(outcomes) > 1 and not request.quiet:
        _print_summary(console, outcomes)
    if not request.dry_run and request.only is None and scale != "smoke":
        scorecard.write_scorecard(request.reports_dir)
    return outcomes


def store(request: AblationRequest) -> rundir.Store:
    """Where the request's runs live: results, plus the committed records at real-data scales."""
    records = rundir.records_root(request.reports_dir) if request.scale != "smoke" else None
    return rundir.Store(Path(request.results_dir), records)


def _runner(request: AblationRequest, trainer: Trainer | None) -> Any:
    if request.jobs > 1 and not request.dry_run:
        from repro.ablation.pool import Pool

        return Pool(request.jobs, store(request), trainer)
    return Runner(store(request), trainer)


def _settings(spec: AblationSpec, request: AblationRequest) -> tuple[list[int], dict[str, Any]]:
    """This spec's seeds and the command line's overrides of its runs' configs (a ConfigError
    if its runs would adapt anything without a holdout: spec_file.AblationSpec.check_scale)."""
    ov = plan.run_overrides(spec, request.epochs, request.data_dir, request.device, request.override_map)
    spec.check_scale(request.scale, ov)
    n = request.seeds if request.seeds is not None else spec.scales[request.scale].seeds
    return list(range(n)), ov


def ablate_one(spec: AblationSpec, request: AblationRequest, trainer: Trainer | None, console: Console,
               runner: Any) -> Outcome:
    """One spec at the request's scale: list its runs (dry run), or train the named runs
    (--only), or train what is missing and write its report."""
    scale, results = request.scale, store(request)
    seeds, overrides = _settings(spec, request)
    sel = plan.selection_runs(spec, scale, seeds, overrides, results)
    out = Outcome(spec.name, scale, plan.total_runs(spec, seeds, sel))
    if request.dry_run:
        out.plan = plan.dry_run_rows(spec, scale, seeds, overrides, results)
        if not request.quiet:  # `all` lists only what is left: hundreds of finished runs hide it
            _print_rows(console, out.plan, f"{spec.name} at scale {scale}: {out.total} runs",
                        only_left=request.name == "all")
        return out
    if request.only is not None:
        return _ablate_only(spec, request, seeds, overrides, out, console, runner)
    with Progress(spec.name, out.total, request.quiet, console, parallel=runner.jobs) as progress:
        run_stages(runner, spec, scale, seeds, overrides, results, progress, out)
    raise_failed(out)
    out.report = report.write_report(spec, request.results_dir, request.reports_dir, scale=scale)
    # the one-line result, also under --quiet (which hides only the progress view)
    console.print(f"{spec.name}: {out.trained} trained, {out.skipped} already done, {out.reused} copied, "
                  f"{out.diverged} diverged; report: {out.report}", highlight=False, soft_wrap=True)
    return out


def _ablate_only(spec: AblationSpec, request: AblationRequest, seeds: list[int], overrides: dict[str, Any],
                 out: Outcome, console: Console, runner: Any) -> Outcome:
    """--only: the named runs (waiting for one locked elsewhere), then the manifest; no report."""
    scale, results = request.scale, store(request)
    runs = plan.only_runs(spec, scale, seeds, overrides, results, request.only)
    out.total = len(runs)
    with Progress(spec.name, len(runs), request.quiet, console, parallel=runner.jobs) as progress:
        runner.execute(runs, progress, out)
    plan.update_manifest(spec, scale, seeds, overrides, results)
    raise_failed(out)
    shipped = (spec_file.ABLATIONS_DIR / f"{spec.name}.toml").is_file() and spec.path.endswith(f"{spec.name}.toml")
    where = "" if request.results_dir == "results" else f" --results {request.results_dir}"
    where += "" if request.reports_dir == "reports" else f" --reports {request.reports_dir}"
    console.print(f"{spec.name}: {out.trained} trained, {out.skipped} already done, {out.reused} copied, "
                  f"{out.diverged} diverged (of {len(runs)} named by --only); once every run is done: "
                  f"repro report {spec.name if shipped else spec.path} --scale {scale}{where}",
                  highlight=False, soft_wrap=True)
    return out


# ----------------------------------------------------------------------------- printing plans


def _print_rows(console: Console, rows: list[dict[str, Any]], title: str, only_left: bool = False) -> None:
    """--dry-run: a table of the runs and their state (only_left: only the runs with something
    left to train, the finished ones just counted on the estimate line; no table if none is left)."""
    shown = [r for r in rows if r["state"] not in plan.NOTHING_LEFT] if only_left else rows
    table = Table(title=title)
    for col in ("ablation", "stage", "arm", "seed", "grid", "hash", "state", "left", "dir"):
        table.add_column(col)
    colours = {"done": "green", "copy": "green", "outrun": "green", "diverged": "red", "running": "yellow",
               "partial": "yellow"}
    for row in shown:
        st = row["state"]
        table.add_row(*(str(row[c]) for c in ("ablation", "stage", "arm", "seed", "grid", "hash")),
                      f"[{colours.get(st, 'white')}]{st}[/]", _duration(row["estimate_s"]), row["dir"])
    if shown:
        console.print(table)
    hidden = f" ({len(rows) - len(shown)} finished run(s) not listed)" if len(shown) < len(rows) else ""
    console.print(f"{rows[0]['ablation']}: {_estimate_line(rows)}{hidden}" if rows else _estimate_line(rows),
                  highlight=False, soft_wrap=True)
    if machines := plan.machines_line(rows):
        console.print(f"{rows[0]['ablation']}: {machines}", highlight=False, soft_wrap=True)


def _print_summary(console: Console, outcomes: Sequence[Outcome]) -> None:
    """--dry-run of `all`: one line per ablation (runs finished, left, time left at most and
    about, main seeds that wait for selection included), and the totals."""
    table = Table(title=f"every ablation at scale {outcomes[0].scale}")
    for col in ("ablation", "runs", "finished", "left", "at most (one process)", "about", "not counted"):
        table.add_column(col, justify="left" if col in ("ablation", "not counted") else "right")
    each: list[tuple[float, float]] = []  # (at most, about) of every run left, in every ablation
    uncounted = False
    for out in outcomes:
        finished = sum(r["state"] in plan.NOTHING_LEFT for r in out.plan)
        left = [r for r in out.plan if r["state"] not in plan.NOTHING_LEFT]
        known = [(r["estimate_s"], r["about_s"]) for r in left if r["estimate_s"] is not None]
        for r in left:  # a waiting arm's seeds, one run each
            if r.get("waiting_s"):
                n, (m, a) = r["waiting_runs"], r["waiting_s"]
                known += [(m / n, a / n)] * n
                if r.get("extend_s"):  # beyond_edge may add a selection run: at most, not about
                    known.append((r["extend_s"], 0.0))
        each += known
        unmeasured = sum(r["estimate_s"] is None and not r.get("waiting_s") for r in left)
        uncounted = uncounted or bool(unmeasured)
        most, about = sum(m for m, _ in known), sum(a for _, a in known)
        table.add_row(out.name, str(out.total), str(finished), str(out.total - finished),
                      _duration(most) if known else "-", _duration(about) if known else "-",
                      f"{unmeasured} run(s) or arm(s) without a measured speed" if unmeasured else "")
    console.print(table)
    total, about_total = sum(m for m, _ in each), sum(a for _, a in each)
    two, about_two = (_duration(_two_at_a_time([x[i] for x in each])) for i in (0, 1))
    about_text = (f"; about {_duration(about_total)} ({about_two} with two) if each main run that stops at a "
                  "target stops where its arm's fastest selection run did"
                  if about_total < total - 60 else "")  # no run left stops early: the caps are the estimate
    console.print(f"all: at most {_duration(total)} of one process ({two} with two processes at a time){about_text}"
                  + (", plus what is not counted" if uncounted else ""), highlight=False, soft_wrap=True)


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    return f"{seconds / 3600:.1f} h" if seconds >= 3600 else f"{seconds / 60:.0f} min"


def _estimate_line(rows: list[dict[str, Any]]) -> str:
    """The time left, summed, and what it was measured from (or why there is no estimate)."""
    copies = sum(r["state"] == "copy" for r in rows)
    shared = (f"; {copies} run(s) marked copy are finished runs of another ablation (same config hash), "
              "copied, not trained") if copies else ""
    left = [r for r in rows if r["state"] not in plan.NOTHING_LEFT]
    if not left:
        return "nothing left to train" + shared
    waiting = sum(r["grid"] == "after selection" for r in left)  # one row per arm, seeds not yet known
    known = [r["estimate_s"] for r in left if r["estimate_s"] is not None]
    speeds = sorted({(r["model"], r["speed"]) for r in left if r["speed"] is not None})
    basis = "; ".join(f"{m}: {s:.0f} s/epoch, median of {n} finished run(s)" for m, (s, n) in speeds)
    unknown = len(left) - len(known) - waiting
    early = "; runs that stop at a target take less" if any(r.get("stops_early") for r in left) else ""
    two = f", {_duration(_two_at_a_time(known))} with two at a time" if len(known) > 1 else ""
    text = (f"estimated time left: at most {_duration(sum(known))} of one process{two} for {len(known)} run(s)"
            f" ({basis}{early}{_about_text(left)})" if known else "estimated time left: unknown")
    if unknown:
        text += f"; {unknown} run(s) without a measured speed (no finished run of their model yet)"
    if waiting:
        text += f"; the main seeds of {waiting} arm(s) wait for their selection runs (not counted{_waiting_cost(left)})"
    return text + shared


def _two_at_a_time(seconds: list[float]) -> float:
    """When the last of these runs would finish with two processes taking them (`--jobs 2`, or
    two workers): each run, longest first, to the process free first. Not half the sum where
    one run is longer than the rest together."""
    ends = [0.0, 0.0]
    for s in sorted(seconds, reverse=True):
        ends[ends.index(min(ends))] += s
    return max(ends)


def _about_text(rows: list[dict[str, Any]]) -> str:
    """', about X if ...' where main runs that stop at a target are likely to take less than
    their caps (plan._seconds_left), else ''."""
    about = sum(r["about_s"] for r in rows if r["estimate_s"] is not None)
    most = sum(r["estimate_s"] for r in rows if r["estimate_s"] is not None)
    if about >= most - 60:
        return ""
    return (f": about {_duration(about)} if each main run stops where its arm's fastest selection run "
            "reached the target")


def _waiting_cost(rows: list[dict[str, Any]]) -> str:
    """What the main seeds that wait for selection may cost (plan._waiting_seconds), or ''."""
    priced = [r["waiting_s"] for r in rows if r["grid"] == "after selection" and r.get("waiting_s")]
    if not priced:
        return ""
    waiting = sum(r["grid"] == "after selection" for r in rows)
    which = "" if len(priced) == waiting else f" {len(priced)} of those arms:"
    most, about = sum(m for m, _ in priced), sum(a for _, a in priced)
    extend = [r["extend_s"] for r in rows if r["grid"] == "after selection" and r.get("extend_s")]
    past = (f" (with the {len(extend)} value(s) past a grid's edge that beyond_edge may add, "
            f"{_duration(most + sum(extend))})" if extend else "")
    if about == most:  # no target, or none reached yet: the caps are all there is to say
        return f";{which} {_duration(most)} at their caps{past}"
    return (f";{which} about {_duration(about)} if each seed stops where its arm's fastest "
            f"selection run reached the target so far, at most {_duration(most)} at their caps{past}")


def _plan(specs: Sequence[AblationSpec], request: AblationRequest, stream: TextIO) -> list[Outcome]:
    """--plan: every spec's commands (lines 1..K), then the comments, then `repro report`."""
    outcomes, commands, comments = [], [], []
    for spec in specs:
        seeds, overrides = _settings(spec, request)
        one = dataclasses.replace(request, name=spec.name if request.name == "all" else request.name)
        cmds, notes, total = plan.plan_commands(spec, one, request.scale, seeds, overrides, store(request))
        outcomes.append(Outcome(spec.name, request.scale, total, commands=cmds))
        commands += cmds
        comments += notes
    lines = commands + comments
    if commands:
        k = len(commands)
        lines.append(f"# lines 1-{k} are the commands; e.g. sbatch --array=1-{k} "
                     "--wrap 'sed -n \"${SLURM_ARRAY_TASK_ID}p\" jobs.txt | bash'")
    lines.append(f"# after all runs: {_report_command(request)}")
    stream.write("".join(line + "\n" for line in lines))
    stream.flush()
    return outcomes


def _report_command(request: AblationRequest) -> str:
    import shlex

    where = [] if request.results_dir == "results" else ["--results", request.results_dir]
    where += [] if request.reports_dir == "reports" else ["--reports", request.reports_dir]
    return shlex.join(["repro", "report", request.name, "--scale", request.scale, *where])
