"""Training an ablation's runs: the serial runner, the staging, the progress view.

A runner brings runs to a terminal state in the run directories under `results`:

    Runner       this process, one run at a time (repro.ablation.pool.Pool: N worker
                 processes, the same `execute`)
    run_one      one run: its file lock (`<run dir>.lock`; a run locked by another process is
                 set aside and waited for once nothing else is left), a re-read of its state
                 under the lock (a run finished meanwhile is skipped), a copy of an identical
                 finished run of another ablation (pooling's `overlapping` arm and gpus' `two`
                 arm are the same net) instead of training, DivergedError recorded as diverged
    run_stages   one ablation: selection grids, then `choose`, then each arm's main seeds as
                 soon as its grid is done, with the manifest kept up to date

A finished run is never trained twice (the trainer returns its stored summary; a record
committed under the store's `records` counts as finished) and an interrupted one resumes
from its checkpoint. At real-data scales the store publishes each finished run's record
into `reports/records/` as soon as it is done (rundir.Store.publish), so a session that ends
mid-campaign leaves its finished runs ready to commit.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from filelock import Timeout
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, TaskProgressColumn, TextColumn, TimeElapsedColumn
from rich.progress import Progress as RichProgress

from repro import rundir
from repro.ablation import plan
from repro.ablation.plan import Run
from repro.errors import DivergedError, ReproError
from repro.spec_file import AblationSpec

Trainer = Callable[..., dict]
Then = Callable[[Run], Iterable[Run]]


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



# ----------------------------------------------------------------------------- progress


class Progress:
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
        self.bar = RichProgress(
            TextColumn("[bold]{task.fields[name]}"), BarColumn(), TaskProgressColumn(),
            TextColumn("runs {task.fields[done]}/{task.fields[runs]}"), TimeElapsedColumn(),
            TextColumn("eta {task.fields[eta]}"), TextColumn("{task.description}"),
            console=console, disable=quiet,
        )
        self.task = self.bar.add_task("", total=max(total, 1), name=name, done=0, runs=total, eta="?")

    def __enter__(self) -> Progress:
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

    def grow(self, more: int) -> None:
        """`more` runs joined the ablation after the start (values added past a grid's edge)."""
        self.total += more
        self.bar.update(self.task, total=max(self.total, 1), runs=self.total)

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


# ----------------------------------------------------------------------------- one run


def run_one(run: Run, wait: bool, results: rundir.Store | Path, trainer: Trainer, progress: Any,
            outcome: Outcome) -> bool:
    """Bring one run to a terminal state (and publish its record). False if it is locked and
    `wait` is False."""
    store = rundir.as_store(results)
    done = _run_one(run, wait, store, trainer, progress, outcome)
    if done:
        store.publish(run.rel)
    return done


def _run_one(run: Run, wait: bool, store: rundir.Store, trainer: Trainer, progress: Any, outcome: Outcome) -> bool:
    results = store.results
    d = results / run.rel
    if _skip_if_terminal(run, store, progress, outcome, fresh=not wait):
        return True
    d.parent.mkdir(parents=True, exist_ok=True)
    lock = rundir.lock(d)
    try:
        lock.acquire(timeout=-1 if wait else 0)
    except Timeout:
        return False
    try:
        # Re-read under the lock: another process may have finished it meanwhile.
        if _skip_if_terminal(run, store, progress, outcome, fresh=False):
            return True
        src = None if d.exists() and any(d.iterdir()) else store.identical(run.rel, run.seed, run.hash)
        if src is not None:
            origin = next(src.relative_to(r).as_posix() for r in store.roots if src.is_relative_to(r))
            rundir.copy_run(src, d, origin)
            outcome.reused += 1
            progress.finish(run.label, f"same config as {origin}: copied")
            return True
        _train(run, d, store, trainer, progress, outcome)
        return True
    finally:
        lock.release()


def _train(run: Run, d: Path, store: rundir.Store, trainer: Trainer, progress: Any, outcome: Outcome) -> None:
    progress.start(run.label)
    t0 = time.monotonic()
    # a selection run stops once a rival grid value has reached the target sooner (plan.rival_bound)
    bound = {"stop_at": lambda: plan.rival_bound(store, run.rivals)} if run.rivals else {}
    try:
        s = trainer(run.cfg, d, quiet=True, on_step=progress.step, **bound)
    except DivergedError as e:
        outcome.diverged += 1
        progress.finish(run.label, f"[red]diverged[/] ({e})", trained=True)
        return
    outcome.trained += 1
    progress.finish(run.label, f"{s.get('status')} in {time.monotonic() - t0:.0f} s ({_brief(s)})", trained=True)


def _skip_if_terminal(run: Run, store: rundir.Store, progress: Any, outcome: Outcome, fresh: bool) -> bool:
    s = rundir.read_summary(store.find(run.rel))
    if s is None or s.get("status") not in rundir.TERMINAL:
        return False
    outcome.skipped += 1
    if s.get("status") == rundir.DIVERGED:
        outcome.diverged += 1
    progress.finish(run.label, "" if fresh else f"{s['status']} (by another process)")
    return True


def _brief(s: Mapping[str, Any]) -> str:
    parts = []
    for key, name in (("final_train_error", "train"), ("final_holdout_error", "holdout"), ("test_error", "test")):
        v = s.get(key)
        if isinstance(v, (int, float)):
            parts.append(f"{name} {100 * v:.1f}%")
    if s.get("epochs_to_target") is not None:
        parts.append(f"target at epoch {s['epochs_to_target']}")
    if s.get("outrun_at") is not None:
        parts.append(f"stopped at epoch {s.get('epochs_run')}: a rival reached the target at {s['outrun_at']:.2f}")
    return ", ".join(parts) or "no metrics"



# ----------------------------------------------------------------------------- the runners


class Runner:
    """Runs in this process, one at a time. Like repro.ablation.pool.Pool, a context manager
    whose `execute` takes the runs of one stage."""

    jobs = 1

    def __init__(self, results: rundir.Store | Path, trainer: Trainer):
        self.results, self.trainer = rundir.as_store(results), trainer

    def __enter__(self) -> Runner:
        return self

    def __exit__(self, *exc: Any) -> None:
        pass

    def execute(self, runs: Iterable[Run], progress: Any, outcome: Outcome, then: Then | None = None) -> None:
        """Train every run not yet done; runs locked by another process are waited for last.
        `then(run)`, called when a run is done, returns further runs to train."""
        pending, deferred = deque(runs), deque()
        while pending or deferred:
            if pending:
                run, wait = pending.popleft(), False
            else:
                run, wait = deferred.popleft(), True
                progress.note(f"  {run.label}: running in another process; waiting for it")
            if not run_one(run, wait, self.results, self.trainer, progress, outcome):
                deferred.append(run)
            elif then is not None:
                pending.extend(then(run))


def run_stages(runner: Any, spec: AblationSpec, scale: str, seeds: Sequence[int], overrides: Mapping[str, Any],
               results: rundir.Store | Path, progress: Any, outcome: Outcome) -> None:
    """One ablation on `runner` (a Runner or a Pool): the selection grids, and each arm's main
    seeds as soon as its grid is done (`plan.choose`); the manifest kept up to date."""
    sel = plan.selection_runs(spec, scale, seeds, overrides, results)
    plan.write_manifest(spec, scale, seeds, overrides, results, None)
    if not sel:
        runner.execute(plan.main_runs(spec, scale, seeds, overrides), progress, outcome)
        return
    released: dict[str, float] = {}

    def release(done: Run | None = None) -> list[Run]:
        """Values added past a grid's edge (beyond_edge) since the last call, and the main runs
        of the arms whose value was chosen since then."""
        if done is not None and done.stage != "selection":
            return []
        known = {r.rel for r in sel}
        sel[:] = plan.selection_runs(spec, scale, seeds, overrides, results)
        past = [r for r in sel if r.rel not in known]
        if past and done is not None:  # a first call's are counted in the total already
            progress.grow(len(past))
            outcome.total += len(past)
        for r in past:
            progress.note(f"  {spec.name}/{r.arm}: its grid chose an edge; trying {spec.selection.key} = "
                          f"{r.grid_value:g} too (beyond_edge)")
        chosen = plan.choose(spec, sel, results)
        new = {a: v for a, v in chosen.items() if v is not None and a not in released}
        if new:
            released.update(new)
            for arm, v in new.items():
                progress.note(f"  {spec.name}/{arm}: {spec.selection.key} = {v:g}")
        if past or new:
            plan.write_manifest(spec, scale, seeds, overrides, results, released)
        return past + plan.main_runs(spec, scale, seeds, overrides, new)

    runner.execute(plan.execution_order([*sel, *release()]), progress, outcome, then=release)
    chosen = plan.choose(spec, sel, results)
    for arm, v in chosen.items():
        if v is None:
            progress.note(f"  {spec.name}/{arm}: {spec.selection.key} = every value diverged or is unfinished")
    plan.write_manifest(spec, scale, seeds, overrides, results, chosen)


def raise_failed(out: Outcome) -> None:
    """Runs whose worker raised (--jobs) end the ablation with one line, after every other run."""
    if out.failed:
        more = f" (and {out.failed - 1} more)" if out.failed > 1 else ""
        raise ReproError(f"{out.name}: {out.failed} run(s) failed: {out.errors[0]}{more}; the other runs are "
                         "recorded; rerun to retry the failed ones")
