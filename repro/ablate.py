"""`repro ablate`: an ablation spec -> runs -> run directories -> a report.

    spec (ablations/NAME.toml) x scale x seeds  ->  Run(arm, seed, RunConfig)
    each Run trains in  results/<ablation>/<arm>/<seed>-<config hash>/      (repro.train.run)
    selection runs in   results/<ablation>/<arm>/<key>-<value>/<seed>-<hash>/

A run directory is named by its config's hash, so a finished run is never trained twice
(the trainer returns its stored summary) and an interrupted one resumes from its
checkpoint. The hash leaves out the device and the data path: moving to another machine
does not re-run anything. A run identical to one finished for another ablation (pooling's
`overlapping` arm and gpus' `two` arm are the same net) is copied, not retrained.

Two `repro ablate` processes may share a results directory. Each run is trained under a
file lock (`<run dir>.lock`): a process finding a run locked moves on to the next one and
comes back at the end to wait for it; once it holds the lock it re-reads the run's state,
so a run finished meanwhile is skipped. Every record this module writes is written to a
temporary file and renamed into place.

Selection (Figure 1's "learning rate chosen independently ... to make training as fast as
possible"): for a spec with a [selection] table, each arm first trains every value of its
grid on the first seed; the value reaching the target in the fewest epochs (ties: the
lower final training error, then the earlier grid entry) is kept, and the other seeds run
with it. The winning selection run is that arm's first-seed run.

`results/<ablation>/manifest-<scale>.json` records which run directories make up the
ablation at that scale (and what was chosen); `repro report` reads it and the run
directories, and nothing else.

Fan-out (repro.fanout): `--jobs N` trains N runs at once in worker processes that take the
same locks; `--plan` prints one `repro ablate NAME ... --only RUN` command per pending run
for a scheduler sharing the results directory; `--only` trains just the runs it names.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable, Mapping, Sequence
from contextlib import nullcontext
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from filelock import Timeout
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from repro import records, report, rundir, spec_file
from repro.config import RunConfig, canonical_key
from repro.errors import ConfigError, DataError, DivergedError, ReproError
from repro.spec_file import AblationSpec

Trainer = Callable[..., dict]
DONE, TERMINAL = rundir.DONE, rundir.TERMINAL
state = rundir.state


@dataclass(frozen=True)
class Run:
    """One training run of an ablation."""

    ablation: str
    arm: str
    seed: int
    cfg: RunConfig
    stage: str = "main"  # "main" or "selection"
    grid_key: str | None = None  # selection: the config key the grid sets
    grid_value: float | None = None

    @property
    def hash(self) -> str:
        return self.cfg.hash()

    @property
    def rel(self) -> Path:
        """The run directory, relative to the results directory."""
        parts = [self.ablation, self.arm]
        if self.stage == "selection":
            parts.append(f"{self.grid_key.split('.')[-1]}-{self.grid_value:g}")
        return Path(*parts, rundir.dir_name(self.seed, self.hash))

    @property
    def label(self) -> str:
        grid = f" {self.grid_key.split('.')[-1]}={self.grid_value:g}" if self.grid_key else ""
        return f"{self.ablation}/{self.arm}{grid} seed {self.seed}"

    def record(self, main: bool) -> dict[str, Any]:
        """This run's entry in the manifest."""
        return {"arm": self.arm, "seed": self.seed, "stage": self.stage, "grid_key": self.grid_key,
                "grid_value": self.grid_value, "hash": self.hash, "dir": self.rel.as_posix(), "main": main}


@dataclass
class Outcome:
    """What `run_ablation` did for one ablation."""

    name: str
    scale: str
    total: int
    trained: int = 0
    skipped: int = 0
    reused: int = 0
    diverged: int = 0
    failed: int = 0  # --jobs: runs whose worker raised (other than DivergedError) or died
    errors: list[str] = field(default_factory=list)  # --jobs: "label: message" per failed run
    report: Path | None = None
    plan: list[dict[str, Any]] = field(default_factory=list)  # dry run: one row per run
    commands: list[str] = field(default_factory=list)  # --plan: one shell command per pending run


# ----------------------------------------------------------------------------- scale and options


def default_scale(data_dir: str | os.PathLike | None = None) -> str:
    """'cifar' when CIFAR-10 can be found; otherwise a one-line ConfigError saying how to get it."""
    from repro.data.cifar10 import find_root

    try:
        find_root(data_dir)
    except DataError:
        raise ConfigError(
            "CIFAR-10 not found for the default --scale cifar: pass --data-dir D (a folder holding "
            "cifar-10-batches-py/), set $REPRO_DATA, add --download to fetch it, "
            "or use --scale smoke (synthetic data, no download)"
        ) from None
    return "cifar"


def _check_data(scale: str, data_dir: str | None, download: bool) -> None:
    if scale == "cifar":
        if download:
            from repro.data.cifar10 import download as fetch

            fetch(data_dir)
        default_scale(data_dir)
    elif scale == "imagenet" and not data_dir:
        raise ConfigError("--scale imagenet needs --data-dir D (an ImageNet folder: train/ and val/ by class)")


def run_overrides(
    spec: AblationSpec, epochs: int | None, data_dir: str | None, device: str | None,
    overrides: Mapping[str, Any] | None,
) -> dict[str, Any]:
    """Command-line settings, applied to every run after the spec's own."""
    out: dict[str, Any] = {}
    for k, v in (overrides or {}).items():
        key = canonical_key(k)
        if spec.selection is not None and key == spec.selection.key:
            raise ConfigError(f"--set {k}: {spec.name} chooses {key} per arm from a grid; edit the grid in {spec.path}")
        if key == "seed":
            raise ConfigError("--set seed: use --seeds N")
        out[key] = v
    if epochs is not None:
        if epochs < 1:
            raise ConfigError(f"--epochs {epochs}: must be at least 1")
        out["epochs"] = epochs
    if device is not None:
        out["runtime.device"] = device
    if data_dir is not None:
        out["data.data_dir"] = str(data_dir)
    return out


# ----------------------------------------------------------------------------- expansion


def selection_runs(spec: AblationSpec, scale: str, seeds: Sequence[int], overrides: Mapping[str, Any]) -> list[Run]:
    """Every grid value of every arm, on the first seed (none without a [selection] table)."""
    if spec.selection is None:
        return []
    key = spec.selection.key
    return [Run(spec.name, arm, seeds[0], spec.config(arm, scale, seeds[0], v, overrides), "selection", key, v)
            for arm in spec.arms for v in spec.grid(arm, scale)]


def main_runs(
    spec: AblationSpec, scale: str, seeds: Sequence[int], overrides: Mapping[str, Any],
    chosen: Mapping[str, float | None] | None = None,
) -> list[Run]:
    """arms x seeds. With selection, the first seed is the winning selection run, so only the
    other seeds are listed, and only for arms whose value is chosen."""
    if spec.selection is None:
        return [Run(spec.name, arm, s, spec.config(arm, scale, s, None, overrides)) for arm in spec.arms for s in seeds]
    out = []
    for arm in spec.arms:
        v = (chosen or {}).get(arm)
        if v is None:
            continue
        out += [Run(spec.name, arm, s, spec.config(arm, scale, s, v, overrides), "main", spec.selection.key, v)
                for s in seeds[1:]]
    return out


def total_runs(spec: AblationSpec, scale: str, seeds: Sequence[int]) -> int:
    if spec.selection is None:
        return len(spec.arms) * len(seeds)
    return sum(len(spec.grid(a, scale)) for a in spec.arms) + len(spec.arms) * (len(seeds) - 1)


def choose(spec: AblationSpec, runs: Sequence[Run], results: Path) -> dict[str, float | None]:
    """Per arm, the grid value whose run reached the target in the fewest epochs (ties: lower
    final training error, then grid order). None for an arm with an unfinished grid or one
    where every value diverged."""
    chosen: dict[str, float | None] = {}
    for arm in spec.arms:
        best = None
        for i, r in enumerate(x for x in runs if x.arm == arm):
            s = rundir.read_summary(results / r.rel)
            if s is None or s.get("status") not in TERMINAL:
                best = None
                break
            if s["status"] == "diverged":
                continue
            values = records.run_values(results / r.rel, spec)
            ept, censored = values["epochs_to_target"]
            key = (math.inf if censored or ept is None or math.isnan(ept) else ept,
                   _or_inf(s.get("final_train_error")), i)
            if best is None or key < best[0]:
                best = (key, r.grid_value)
        chosen[arm] = None if best is None else best[1]
    return chosen


def _or_inf(x: Any) -> float:
    return math.inf if x is None or (isinstance(x, float) and math.isnan(x)) else float(x)


# ----------------------------------------------------------------------------- run state


def write_json(path: Path, obj: Any) -> None:
    """A manifest or record, atomically; values JSON has no type for are written as strings."""
    rundir.write_manifest(path, obj)


# ----------------------------------------------------------------------------- progress


class _Progress:
    """One bar over a whole ablation: runs done / total, the current run(s), and an ETA from the
    time this process has spent training (runs found done, or done by another process, do
    not count towards the speed). With --jobs, `key` tells the workers' runs apart and the
    ETA divides by the `parallel` runs in flight."""

    def __init__(self, name: str, total: int, quiet: bool, console: Console, parallel: int = 1):
        self.quiet = quiet
        self.done = 0  # runs in a terminal state
        self.total = total
        self.parallel = max(1, parallel)
        self.work_seconds = 0.0  # time spent inside the trainer (summed over runs in flight)
        self.work_units = 0.0  # runs' worth of steps trained in that time
        self._live: dict[Any, list] = {}  # key -> [label, start, first fraction, fraction]
        self.bar = Progress(
            TextColumn("[bold]{task.fields[name]}"), BarColumn(), TaskProgressColumn(),
            TextColumn("runs {task.fields[done]}/{task.fields[runs]}"), TimeElapsedColumn(),
            TextColumn("eta {task.fields[eta]}"), TextColumn("{task.description}"),
            console=console, disable=quiet,
        )
        self.task = self.bar.add_task("", total=max(total, 1), name=name, done=0, runs=total, eta="?")

    def __enter__(self) -> _Progress:
        self.bar.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.bar.__exit__(*exc)

    def _description(self) -> str:
        return ", ".join(escape(r[0]) for r in self._live.values())

    def _fractions(self) -> float:
        return sum(r[3] for r in self._live.values())

    def start(self, label: str, key: Any = None) -> None:
        self._live[key] = [label, time.monotonic(), None, 0.0]
        self.bar.update(self.task, description=self._description())

    def step(self, steps_done: int, steps_total: int, key: Any = None) -> None:
        r = self._live.get(key)
        if r is None:
            return
        r[3] = min(1.0, steps_done / steps_total) if steps_total else 0.0
        if r[2] is None:  # a resumed run starts part-way: that part took no time here
            r[2] = r[3] - (1.0 / steps_total if steps_total else 0.0)
        self.bar.update(self.task, completed=self.done + self._fractions(), eta=self.eta())

    def eta(self) -> str:
        now = time.monotonic()
        units = self.work_units + sum(r[3] - (r[2] or 0.0) for r in self._live.values())
        seconds = self.work_seconds + sum(now - r[1] for r in self._live.values())
        if units <= 0.02 or seconds <= 0:
            return "?"
        left = self.total - self.done - self._fractions()
        return _duration(left * seconds / units / min(self.parallel, max(1.0, left)))

    def finish(self, label: str, what: str, trained: bool = False, key: Any = None) -> None:
        r = self._live.pop(key, None)
        if trained and r is not None:
            self.work_seconds += time.monotonic() - r[1]
            self.work_units += 1.0 - max(0.0, r[2] or 0.0)
        self.done += 1
        self.bar.update(self.task, completed=self.done + self._fractions(), done=self.done,
                        description=self._description(), eta=self.eta())
        if not self.quiet and what:
            self.bar.console.print(f"  {label}: {what}", highlight=False, soft_wrap=True)

    def note(self, text: str) -> None:
        if not self.quiet:
            self.bar.console.print(text, highlight=False, soft_wrap=True)


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


# ----------------------------------------------------------------------------- execution


class _Runner:
    def __init__(self, results: Path, trainer: Trainer, progress: _Progress, outcome: Outcome):
        self.results, self.trainer, self.progress, self.outcome = results, trainer, progress, outcome

    def execute(self, runs: Sequence[Run]) -> None:
        """Train every run not yet done; runs locked by another process are waited for last."""
        deferred = [r for r in runs if not self._one(r, wait=False)]
        for r in deferred:
            self.progress.note(f"  {r.label}: running in another process; waiting for it")
            self._one(r, wait=True)

    def _one(self, run: Run, wait: bool) -> bool:
        """Bring one run to a terminal state. False if it is locked and `wait` is False."""
        d = self.results / run.rel
        if self._skip_if_terminal(run, d, fresh=not wait):
            return True
        d.parent.mkdir(parents=True, exist_ok=True)
        lock = rundir.lock(d)
        try:
            lock.acquire(timeout=-1 if wait else 0)
        except Timeout:
            return False
        try:
            # Re-read under the lock: another process may have finished it meanwhile.
            if self._skip_if_terminal(run, d, fresh=False):
                return True
            src = None if d.exists() and any(d.iterdir()) else rundir.find_identical(self.results, run.seed,
                                                                                      run.hash, exclude=d)
            if src is not None:
                rundir.copy_run(src, d)
                self.outcome.reused += 1
                self.progress.finish(run.label, f"same config as {src.relative_to(self.results)}: copied")
                return True
            self.progress.start(run.label)
            t0 = time.monotonic()
            try:
                s = self.trainer(run.cfg, d, quiet=True, on_step=self.progress.step)
            except DivergedError as e:
                self.outcome.diverged += 1
                self.progress.finish(run.label, f"[red]diverged[/] ({e})", trained=True)
                return True
            self.outcome.trained += 1
            self.progress.finish(run.label, f"{s.get('status')} in {time.monotonic() - t0:.0f} s ({_brief(s)})",
                                 trained=True)
            return True
        finally:
            lock.release()

    def _skip_if_terminal(self, run: Run, d: Path, fresh: bool) -> bool:
        s = rundir.read_summary(d)
        if s is None or s.get("status") not in TERMINAL:
            return False
        self.outcome.skipped += 1
        if s.get("status") == "diverged":
            self.outcome.diverged += 1
        self.progress.finish(run.label, "" if fresh else f"{s['status']} (by another process)")
        return True


def _brief(s: Mapping[str, Any]) -> str:
    parts = []
    for key, name in (("final_train_error", "train"), ("final_val_error", "val")):
        v = s.get(key)
        if isinstance(v, (int, float)):
            parts.append(f"{name} {100 * v:.1f}%")
    if s.get("epochs_to_target") is not None:
        parts.append(f"target at epoch {s['epochs_to_target']}")
    return ", ".join(parts) or "no metrics"


def _manifest(spec: AblationSpec, scale: str, seeds: Sequence[int], overrides: Mapping[str, Any],
              sel: Sequence[Run], main: Sequence[Run], chosen: Mapping[str, float | None] | None) -> dict:
    chosen = dict(chosen or {})
    winners = {(r.arm, r.grid_value) for r in sel if chosen.get(r.arm) == r.grid_value}
    runs = [r.record(main=(r.arm, r.grid_value) in winners) for r in sel] + [r.record(main=True) for r in main]
    return {
        "ablation": spec.name, "scale": scale, "spec": spec.path,
        "spec_sha256": spec.sha256,
        "seeds": list(seeds), "overrides": {k: v for k, v in overrides.items() if k != "data.data_dir"},
        "selection": ({"key": spec.selection.key, "by": spec.selection.by, "chosen": chosen}
                      if spec.selection else None),
        "updated_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "runs": runs,
    }


def _plan_rows(spec: AblationSpec, results: Path, sel: Sequence[Run], main: Sequence[Run],
               waiting: Sequence[str]) -> list[dict[str, Any]]:
    rows = []
    for r in [*sel, *main]:
        rows.append({"ablation": spec.name, "stage": r.stage, "arm": r.arm, "seed": r.seed,
                     "grid": "" if r.grid_value is None else f"{r.grid_key.split('.')[-1]}={r.grid_value:g}",
                     "hash": r.hash, "state": state(results / r.rel), "dir": str(results / r.rel)})
    for arm in waiting:
        rows.append({"ablation": spec.name, "stage": "main", "arm": arm, "seed": "others", "grid": "after selection",
                     "hash": "?", "state": "pending", "dir": ""})
    return rows


def _print_plan(console: Console, rows: list[dict[str, Any]], title: str) -> None:
    table = Table(title=title)
    for col in ("ablation", "stage", "arm", "seed", "grid", "hash", "state", "dir"):
        table.add_column(col)
    colours = {"done": "green", "diverged": "red", "running": "yellow", "partial": "yellow"}
    for row in rows:
        st = row["state"]
        table.add_row(*(str(row[c]) for c in ("ablation", "stage", "arm", "seed", "grid", "hash")),
                      f"[{colours.get(st, 'white')}]{st}[/]", row["dir"])
    console.print(table)


def ablate_one(
    spec: AblationSpec, scale: str, seeds: Sequence[int], overrides: Mapping[str, Any], results: Path,
    reports: Path, *, dry_run: bool = False, quiet: bool = False, trainer: Trainer | None = None,
    console: Console | None = None, write_reports: bool = True, pool: Any = None,
    only: Sequence[str] | None = None,
) -> Outcome:
    """Expand one spec at one scale, train what is missing, write its report.

    pool: a repro.fanout.Pool (--jobs N) to train on. only: train just these runs
    (repro.fanout.only_runs selectors), update the manifest, and leave the report to `repro report`.
    """
    console = console or Console()
    total = total_runs(spec, scale, seeds)
    out = Outcome(spec.name, scale, total)
    sel = selection_runs(spec, scale, seeds, overrides)
    if dry_run:
        chosen = choose(spec, sel, results) if sel else None
        main = main_runs(spec, scale, seeds, overrides, chosen)
        waiting = [a for a in spec.arms if chosen is not None and chosen.get(a) is None and len(seeds) > 1]
        out.plan = _plan_rows(spec, results, sel, main, waiting)
        if not quiet:
            _print_plan(console, out.plan, f"{spec.name} at scale {scale}: {total} runs")
        return out
    if trainer is None:
        from repro.train import run as trainer
    if only is not None:
        return _ablate_only(spec, scale, seeds, overrides, results, only, out, quiet, trainer, console, pool)
    manifest = rundir.manifest_path(results, spec.name, scale)
    with _Progress(spec.name, total, quiet, console, parallel=pool.jobs if pool else 1) as progress:
        runner = _Runner(results, trainer, progress, out)
        chosen = None
        if pool is not None:
            from repro import fanout

            fanout.run_stages(pool, spec, scale, seeds, overrides, results, progress, out)
        elif sel:
            write_json(manifest, _manifest(spec, scale, seeds, overrides, sel, [], None))
            runner.execute(sel)
            chosen = choose(spec, sel, results)
            for arm, v in chosen.items():
                note = "every value diverged or is unfinished" if v is None else f"{v:g}"
                progress.note(f"  {spec.name}/{arm}: {spec.selection.key} = {note}")
        if pool is None:
            main = main_runs(spec, scale, seeds, overrides, chosen)
            write_json(manifest, _manifest(spec, scale, seeds, overrides, sel, main, chosen))
            runner.execute(main)
    _raise_failed(out)
    if write_reports:
        out.report = report.write_report(spec, results, reports, scale=scale)
        # the one-line result, also under --quiet (which hides only the progress view)
        console.print(f"{spec.name}: {out.trained} trained, {out.skipped} already done, {out.reused} copied, "
                      f"{out.diverged} diverged; report: {out.report}", highlight=False, soft_wrap=True)
    return out


def _raise_failed(out: Outcome) -> None:
    """--jobs: runs whose worker raised end the ablation with one line (after every other run)."""
    if out.failed:
        more = f" (and {out.failed - 1} more)" if out.failed > 1 else ""
        raise ReproError(f"{out.name}: {out.failed} run(s) failed: {out.errors[0]}{more}; the other runs are "
                         "recorded; rerun to retry the failed ones")


def _ablate_only(spec: AblationSpec, scale: str, seeds: Sequence[int], overrides: Mapping[str, Any], results: Path,
                 only: Sequence[str], out: Outcome, quiet: bool, trainer: Trainer, console: Console,
                 pool: Any) -> Outcome:
    """--only: the named runs (waiting for one locked elsewhere), then the manifest; no report."""
    from repro import fanout

    runs = fanout.only_runs(spec, scale, seeds, overrides, results, only)
    out.total = len(runs)
    with _Progress(spec.name, len(runs), quiet, console, parallel=pool.jobs if pool else 1) as progress:
        if pool is not None:
            pool.execute(runs, progress, out)
        else:
            _Runner(results, trainer, progress, out).execute(runs)
    fanout.update_manifest(spec, scale, seeds, overrides, results)
    _raise_failed(out)
    shipped = (spec_file.ABLATIONS_DIR / f"{spec.name}.toml").is_file() and spec.path.endswith(f"{spec.name}.toml")
    where = "" if str(results) == "results" else f" --results {results}"
    console.print(f"{spec.name}: {out.trained} trained, {out.skipped} already done, {out.reused} copied, "
                  f"{out.diverged} diverged (of {len(runs)} named by --only); once every run is done: "
                  f"repro report {spec.name if shipped else spec.path} --scale {scale}{where}",
                  highlight=False, soft_wrap=True)
    return out


def run_ablation(
    name_or_all: str,
    scale: str | None = None,
    seeds: int | None = None,
    epochs: int | None = None,
    data_dir: str | os.PathLike | None = None,
    device: str | None = None,
    results_dir: str | os.PathLike = "results",
    reports_dir: str | os.PathLike = "reports",
    dry_run: bool = False,
    overrides: Mapping[str, Any] | None = None,
    quiet: bool = False,
    *,
    download: bool = False,
    trainer: Trainer | None = None,
    console: Console | None = None,
    jobs: int = 1,
    plan: bool = False,
    only: Sequence[str] | None = None,
    stream: Any = None,
) -> list[Outcome]:
    """`repro ablate NAME|all`: run (or with dry_run, list) one ablation or all of them.

    scale None: 'cifar' when CIFAR-10 is found, else a ConfigError saying how to get it.
    seeds None: the scale's own count; otherwise seeds 0..seeds-1.
    jobs N > 1: N runs at once in worker processes (repro.fanout). plan: print one shell
    command per pending run to `stream` (default stdout), train nothing. only: train just
    these runs of one ablation (`ARM/SEED`, `ARM/KEY-VALUE/SEED`, optionally `-HASH`).
    """
    if scale is not None and scale not in spec_file.SCALES:
        raise ConfigError(f"--scale {scale}: choose {', '.join(spec_file.SCALES)}")
    if seeds is not None and seeds < 1:
        raise ConfigError(f"--seeds {seeds}: must be at least 1")
    if jobs < 1:
        raise ConfigError(f"--jobs {jobs}: must be at least 1")
    if plan and (dry_run or only):
        raise ConfigError("--plan lists every pending run: it does not combine with --dry-run or --only")
    if only is not None and (name_or_all == "all" or not only):
        raise ConfigError("--only names runs of one ablation (e.g. `repro ablate lrn --only on/0`), not of `all`"
                          if only else "--only: name at least one run")
    data_dir = None if data_dir is None else str(data_dir)
    if scale is None:
        if download:
            _check_data("cifar", data_dir, download)
        scale = default_scale(data_dir)
    elif not (dry_run or plan):
        _check_data(scale, data_dir, download)
    specs = [spec_file.load(n) for n in spec_file.names()] if name_or_all == "all" else [spec_file.load(name_or_all)]
    results, reports = Path(results_dir), Path(reports_dir)
    console = console or Console()
    if plan:
        return _plan(specs, name_or_all, scale, seeds, epochs, data_dir, device, results_dir, reports_dir,
                     overrides, stream)
    outcomes = []
    pool = None
    if jobs > 1 and not dry_run:
        from repro import fanout

        if trainer is None:
            from repro.train import run as trainer
        pool = fanout.Pool(jobs, results, trainer)
    with pool if pool is not None else nullcontext():
        for spec in specs:
            ov = run_overrides(spec, epochs, data_dir, device, overrides)
            n = seeds if seeds is not None else spec.scales[scale].seeds
            outcomes.append(ablate_one(spec, scale, list(range(n)), ov, results, reports, dry_run=dry_run,
                                       quiet=quiet, trainer=trainer, console=console, pool=pool, only=only))
    if not dry_run and only is None:
        report.write_scorecard(reports)
    return outcomes


def _plan(specs: Sequence[AblationSpec], name_or_all: str, scale: str, seeds: int | None, epochs: int | None,
          data_dir: str | None, device: str | None, results_dir: str | os.PathLike, reports_dir: str | os.PathLike,
          overrides: Mapping[str, Any] | None, stream: Any) -> list[Outcome]:
    """--plan: every spec's commands (lines 1..K), then the comments, then `repro report`."""
    import shlex
    import sys

    from repro import fanout

    options = fanout.cli_options(scale, seeds, epochs, data_dir, device, results_dir, overrides)
    outcomes, commands, comments = [], [], []
    for spec in specs:
        ov = run_overrides(spec, epochs, data_dir, device, overrides)
        n = seeds if seeds is not None else spec.scales[scale].seeds
        name_arg = spec.name if name_or_all == "all" else name_or_all
        cmds, notes = fanout.plan(spec, name_arg, scale, list(range(n)), ov, Path(results_dir), options)
        out = Outcome(spec.name, scale, total_runs(spec, scale, list(range(n))), commands=cmds)
        outcomes.append(out)
        commands += cmds
        comments += notes
    where = [] if str(results_dir) == "results" else ["--results", str(results_dir)]
    where += [] if str(reports_dir) == "reports" else ["--reports", str(reports_dir)]
    report_cmd = shlex.join(["repro", "report", name_or_all, "--scale", scale, *where])
    fanout.print_plan(commands, comments, report_cmd, stream or sys.stdout)
    return outcomes

