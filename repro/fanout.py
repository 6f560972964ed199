"""Fan-out for `repro ablate`: `--jobs N` (N worker processes here), `--plan` (one shell
command per pending run, for any scheduler) and `--only` (train just the named runs).

    --jobs N   the parent expands the spec and hands runs one at a time to N worker
               processes (multiprocessing, 'spawn': a fresh interpreter, no forked torch or
               CUDA state). A worker trains a run exactly as one `repro ablate` process does
               (repro.ablate._Runner._one: the run's file lock, a re-read under it, copy of an
               identical run, DivergedError recorded as a diverged run), so workers compose
               with other `repro ablate` processes on the same results directory. A run locked
               by another process is set aside and waited for once nothing else is left.
               Placement (runtime.*, not part of a run's hash): with several CUDA devices and
               runtime.device auto or cuda, worker i trains on cuda:(i % count); each worker
               gets runtime.threads = max(1, cpus // N) unless the spec or --set gives it.
               With a [selection] table an arm's main seeds start as soon as that arm's grid
               is done (the same `choose` as a serial run), not before. The parent draws the
               one progress view; workers print nothing but a traceback if one crashes. A
               crash in one run is recorded and the others go on; the ablation then ends with
               a one-line error (rerun to retry: finished runs are skipped).

    --plan     prints `repro ablate NAME --scale S ... --only ARM[/KEY-V]/SEED-HASH`, one line
               per run that is neither done, diverged nor locked by a live process, then `#`
               comments: what is left out and why, and `repro report` to run at the end.
               Main seeds that wait for a selection grid are listed by a later --plan.

    --only SEL trains the runs SEL names (`relu/1`, `relu/lr-0.004/0`, with an optional
               `-HASH` that must match) and updates the manifest under a lock; the report is
               left to `repro report`.
"""

from __future__ import annotations

import dataclasses
import multiprocessing as mp
import os
import pickle
import queue
import re
import shlex
import signal
import threading
import time
import traceback
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, TextIO

from filelock import FileLock
from rich.markup import escape

from repro import config as rc
from repro.errors import ConfigError, ReproError
from repro.spec_file import AblationSpec

# ----------------------------------------------------------------------------- placement


def cpu_count() -> int:
    """CPUs this process may use (its affinity mask, e.g. a SLURM allocation), at least 1."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def cuda_count() -> int:
    try:
        import torch

        return torch.cuda.device_count()
    except Exception:  # noqa: BLE001  (no torch, or a broken driver: no CUDA devices)
        return 0


def placement(cfg: rc.RunConfig, slot: int, n_cuda: int, threads: int) -> dict[str, Any]:
    """The runtime.* settings worker `slot` trains `cfg` with (none of them is in the hash)."""
    rt: dict[str, Any] = {}
    if n_cuda > 1 and cfg.runtime.device in ("auto", "cuda") and not cfg.runtime.devices:
        rt["runtime.device"] = f"cuda:{slot % n_cuda}"
    if cfg.runtime.threads is None:
        rt["runtime.threads"] = threads
    return rt


def placed(run, slot: int, n_cuda: int, threads: int):
    rt = placement(run.cfg, slot, n_cuda, threads)
    if not rt:
        return run
    cfg = rc.apply(run.cfg, rt)
    assert cfg.hash() == run.cfg.hash(), "runtime settings must not change a run's identity"
    return dataclasses.replace(run, cfg=cfg)


# ----------------------------------------------------------------------------- worker side


class _WorkerProgress:
    """What a worker's _Runner reports, sent to the parent's progress view. A worker whose
    parent has gone (killed outright) stops at its next step: its run keeps its checkpoint,
    and the lock goes with the process."""

    def __init__(self, slot: int, events):
        self.slot, self.events, self._last = slot, events, 0.0
        self.parent = os.getppid()

    def orphaned(self) -> bool:
        return os.getppid() != self.parent

    def start(self, label: str) -> None:
        self._last = 0.0
        self.events.put(("start", self.slot, label))

    def step(self, steps_done: int, steps_total: int) -> None:
        now = time.monotonic()
        if now - self._last >= 0.2 or steps_done >= steps_total:
            self._last = now
            if self.orphaned():
                raise SystemExit(1)
            self.events.put(("step", self.slot, steps_done, steps_total))

    def finish(self, label: str, what: str, trained: bool = False) -> None:
        self.events.put(("finish", self.slot, label, what, trained))

    def note(self, text: str) -> None:
        self.events.put(("note", self.slot, text))


def _one_line(e: BaseException) -> str:
    return " ".join(str(e).split()) or type(e).__name__


def _work(slot: int, results: str, trainer, n_cuda: int, threads: int, tasks, events) -> None:
    """A worker process: train the runs the parent sends until it sends None."""
    from repro.ablate import Outcome, _Runner

    progress = _WorkerProgress(slot, events)
    try:
        while True:
            try:
                item = tasks.get(timeout=1.0)
            except queue.Empty:
                if progress.orphaned():
                    return
                continue
            if item is None:
                return
            run, wait = item
            out = Outcome(run.ablation, "", 0)
            try:
                run = placed(run, slot, n_cuda, threads)
                ok = _Runner(Path(results), trainer, progress, out)._one(run, wait=wait)
            except ReproError as e:
                events.put(("error", slot, _one_line(e)))
                continue
            except Exception as e:  # noqa: BLE001  (a bug: keep its traceback, keep the worker)
                traceback.print_exc()
                events.put(("error", slot, f"{type(e).__name__}: {_one_line(e)}"))
                continue
            events.put(("done", slot, ok, (out.trained, out.skipped, out.reused, out.diverged)))
    except KeyboardInterrupt:  # Ctrl-C reaches the whole process group; the parent reports it
        pass


# ----------------------------------------------------------------------------- parent side


class Pool:
    """N worker processes (see the module docstring). A context manager; `execute` is one stage."""

    def __init__(self, jobs: int, results: Path, trainer: Callable[..., dict]):
        if jobs < 1:
            raise ConfigError(f"--jobs {jobs}: must be at least 1")
        try:
            pickle.dumps(trainer)
        except Exception as e:  # noqa: BLE001
            raise TypeError(f"--jobs: the trainer must be a module-level function ({e})") from None
        self.jobs, self.results, self.trainer = jobs, Path(results), trainer
        self.threads = max(1, cpu_count() // jobs)
        self.n_cuda = cuda_count()
        self._ctx = mp.get_context("spawn")
        self.events = self._ctx.Queue()
        self.procs: dict[int, Any] = {}
        self.tasks: dict[int, Any] = {}

    def __enter__(self) -> Pool:
        self._sigterm = None
        if threading.current_thread() is threading.main_thread():  # `kill PID`: stop the workers too
            self._sigterm = signal.signal(signal.SIGTERM, _terminated)
        for slot in range(self.jobs):
            tasks = self._ctx.Queue()
            p = self._ctx.Process(target=_work, name=f"repro-ablate-worker-{slot}", daemon=True,
                                  args=(slot, str(self.results), self.trainer, self.n_cuda, self.threads,
                                        tasks, self.events))
            p.start()
            self.procs[slot], self.tasks[slot] = p, tasks
        return self

    def __exit__(self, *exc: Any) -> None:
        for slot, p in self.procs.items():
            if p.is_alive():
                try:
                    self.tasks[slot].put(None)
                except (OSError, ValueError):
                    pass
        deadline = time.monotonic() + (10 if exc[0] is None else 2)
        for p in self.procs.values():
            p.join(timeout=max(0.0, deadline - time.monotonic()))
        for p in self.procs.values():
            if p.is_alive():  # interrupted mid-run: it resumes from its checkpoint next time
                p.terminate()
                p.join(timeout=5)
        for q in (*self.tasks.values(), self.events):
            q.cancel_join_thread()
            q.close()
        if self._sigterm is not None:
            signal.signal(signal.SIGTERM, self._sigterm)

    def execute(self, runs: Iterable, progress, outcome, then: Callable[[Any], Iterable] | None = None) -> None:
        """Bring every run to a terminal state (or record its failure). `then(run)`, called in
        this process when a run is done, returns further runs (e.g. main seeds released by a
        finished selection grid)."""
        pending = deque(runs)
        deferred: deque = deque()  # locked by another process: waited for once nothing else is left
        busy: dict[int, tuple[Any, bool]] = {}
        idle = deque(s for s, p in self.procs.items() if p.is_alive())
        while pending or deferred or busy:
            while idle and (pending or deferred):
                slot = idle.popleft()
                if pending:
                    run, wait = pending.popleft(), False
                else:
                    run, wait = deferred.popleft(), True
                    progress.note(f"  {run.label}: running in another process; waiting for it")
                busy[slot] = (run, wait)
                self.tasks[slot].put((run, wait))
            if not busy:
                if pending or deferred:
                    raise ReproError("every --jobs worker has exited; rerun to resume (finished runs are skipped)")
                break
            try:
                ev = self.events.get(timeout=0.5)
            except queue.Empty:
                self._reap(busy, idle, progress, outcome)
                continue
            kind, slot, *rest = ev
            if slot not in busy:  # a late word from a worker already reaped
                continue
            if kind == "start":
                progress.start(rest[0], key=slot)
            elif kind == "step":
                progress.step(rest[0], rest[1], key=slot)
            elif kind == "finish":
                progress.finish(rest[0], rest[1], trained=rest[2], key=slot)
            elif kind == "note":
                progress.note(rest[0])
            elif kind == "done":
                run, _ = busy.pop(slot)
                idle.append(slot)
                ok, (trained, skipped, reused, diverged) = rest
                outcome.trained += trained
                outcome.skipped += skipped
                outcome.reused += reused
                outcome.diverged += diverged
                if not ok:
                    deferred.append(run)
                elif then is not None:
                    pending.extend(then(run))
            elif kind == "error":
                run, _ = busy.pop(slot)
                idle.append(slot)
                self._failed(run, rest[0], slot, progress, outcome)

    def _reap(self, busy: dict, idle: deque, progress, outcome) -> None:
        """Workers that died (killed, out of memory): their run is recorded as failed."""
        for slot, p in list(self.procs.items()):
            if p.is_alive():
                continue
            if slot in busy:
                run, _ = busy.pop(slot)
                self._failed(run, f"worker {slot} exited (code {p.exitcode})", slot, progress, outcome)
            if slot in idle:
                idle.remove(slot)
            del self.procs[slot]

    @staticmethod
    def _failed(run, message: str, slot: int, progress, outcome) -> None:
        outcome.failed += 1
        outcome.errors.append(f"{run.label}: {message}")
        progress.finish(run.label, f"[red]failed[/] ({escape(message)})", key=slot)


def _terminated(signum, frame) -> None:
    raise SystemExit(128 + signum)


def run_stages(pool: Pool, spec: AblationSpec, scale: str, seeds: Sequence[int], overrides: Mapping[str, Any],
               results: Path, progress, outcome) -> None:
    """One ablation on the pool: selection grids and main seeds, each arm's main seeds released
    as soon as its grid is done; the manifest kept up to date as in a serial run."""
    from repro.ablate import _manifest, choose, main_runs, selection_runs, write_json
    from repro.rundir import manifest_path

    manifest = manifest_path(results, spec.name, scale)
    sel = selection_runs(spec, scale, seeds, overrides)
    if not sel:
        main = main_runs(spec, scale, seeds, overrides)
        write_json(manifest, _manifest(spec, scale, seeds, overrides, [], main, None))
        pool.execute(main, progress, outcome)
        return
    write_json(manifest, _manifest(spec, scale, seeds, overrides, sel, [], None))
    released: dict[str, float] = {}

    def release(done=None) -> list:
        if done is not None and done.stage != "selection":
            return []
        chosen = choose(spec, sel, results)
        new = {a: v for a, v in chosen.items() if v is not None and a not in released}
        if not new:
            return []
        released.update(new)
        for arm, v in new.items():
            progress.note(f"  {spec.name}/{arm}: {spec.selection.key} = {v:g}")
        write_json(manifest, _manifest(spec, scale, seeds, overrides, sel,
                                       main_runs(spec, scale, seeds, overrides, released), released))
        return main_runs(spec, scale, seeds, overrides, new)

    pool.execute([*sel, *release()], progress, outcome, then=release)
    chosen = choose(spec, sel, results)
    for arm, v in chosen.items():
        if v is None:
            progress.note(f"  {spec.name}/{arm}: {spec.selection.key} = every value diverged or is unfinished")
    write_json(manifest, _manifest(spec, scale, seeds, overrides, sel, main_runs(spec, scale, seeds, overrides,
                                                                                  chosen), chosen))


# ----------------------------------------------------------------------------- --only


_LAST = re.compile(r"(\d+)(?:-([0-9a-f]+))?")


def selector(run, with_hash: bool = True) -> str:
    """`arm/seed-hash` (main) or `arm/lr-0.004/seed-hash` (selection): the run directory
    below the ablation's folder; without the hash, what `--only` also accepts."""
    parts = list(run.rel.parts[1:])
    if not with_hash:
        parts[-1] = str(run.seed)
    return "/".join(parts)


def only_runs(spec: AblationSpec, scale: str, seeds: Sequence[int], overrides: Mapping[str, Any], results: Path,
              selectors: Sequence[str]) -> list:
    """The runs `--only` names, in the order given; a one-line ConfigError for any other."""
    from repro.ablate import TERMINAL, choose, main_runs, selection_runs
    from repro.rundir import read_summary

    sel = selection_runs(spec, scale, seeds, overrides)
    chosen = choose(spec, sel, results) if sel else None
    index = {selector(r, with_hash=False): r for r in [*sel, *main_runs(spec, scale, seeds, overrides, chosen)]}
    where = f"{spec.name} at scale {scale} with seeds {seeds[0]}..{seeds[-1]}"
    out = []
    for s in selectors:
        *head, last = s.strip().strip("/").split("/")
        m = _LAST.fullmatch(last)
        if not head or m is None:
            raise ConfigError(f"--only {s}: expected ARM/SEED or ARM/{_grid_example(spec)}SEED, "
                              "optionally ending in -HASH (as --plan prints)")
        key, want = "/".join([*head, m.group(1)]), m.group(2)
        run = index.get(key)
        if run is None:
            arm, seed = head[0], int(m.group(1))
            if spec.selection is not None and len(head) == 1 and arm in spec.arms and seed in seeds:
                if seed == seeds[0]:
                    raise ConfigError(f"--only {s}: seed {seed} of {arm} is its selection grid; name one value, "
                                      f"e.g. {selector(next(r for r in sel if r.arm == arm), False)}")
                grid = [r for r in sel if r.arm == arm]
                states = [(read_summary(results / r.rel) or {}).get("status") for r in grid]
                if all(st in TERMINAL for st in states):
                    raise ConfigError(f"--only {s}: every {spec.selection.key} in {arm}'s grid diverged; "
                                      "its other seeds are not run")
                raise ConfigError(f"--only {s}: {arm}'s {spec.selection.key} is chosen by its selection runs on "
                                  f"seed {seeds[0]}, which are not all done; run them first (rerun --plan)")
            examples = ", ".join(list(index)[:4])
            raise ConfigError(f"--only {s}: no such run in {where}; e.g. {examples}")
        if want is not None and want != run.hash:
            raise ConfigError(f"--only {s}: this spec and these options give {key} the hash {run.hash}, not {want}; "
                              "the spec or the options changed since --plan: rerun --plan")
        if run not in out:
            out.append(run)
    return out


def _grid_example(spec: AblationSpec) -> str:
    return f"{spec.selection.short}-VALUE/" if spec.selection is not None else ""


def update_manifest(spec: AblationSpec, scale: str, seeds: Sequence[int], overrides: Mapping[str, Any],
                    results: Path) -> Path:
    """Rewrite the manifest from what is on disk now, under a lock, so that concurrent
    `--only` processes leave the most recent state (a later writer sees at least as much)."""
    from repro.ablate import _manifest, choose, main_runs, selection_runs, write_json
    from repro.rundir import manifest_path

    path = manifest_path(results, spec.name, scale)
    path.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(path) + ".lock"):
        sel = selection_runs(spec, scale, seeds, overrides)
        chosen = choose(spec, sel, results) if sel else None
        main = main_runs(spec, scale, seeds, overrides, chosen)
        write_json(path, _manifest(spec, scale, seeds, overrides, sel, main, chosen))
    return path


# ----------------------------------------------------------------------------- --plan


def _fmt(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if v is None:
        return "none"
    if isinstance(v, (tuple, list)):
        return ",".join(_fmt(x) for x in v)
    return str(v)


def cli_options(scale: str, seeds: int | None, epochs: int | None, data_dir: str | None, device: str | None,
                results: str | os.PathLike, overrides: Mapping[str, Any] | None) -> list[str]:
    """The `repro ablate` options that reproduce these settings (and so the same run hashes)."""
    args = ["--scale", scale]
    if seeds is not None:
        args += ["--seeds", str(seeds)]
    if epochs is not None:
        args += ["--epochs", str(epochs)]
    if data_dir is not None:
        args += ["--data-dir", str(data_dir)]
    if device is not None:
        args += ["--device", device]
    if str(results) != "results":
        args += ["--results", str(results)]
    for k, v in (overrides or {}).items():
        args += ["--set", f"{k}={_fmt(v)}"]
    return args


def plan(spec: AblationSpec, name_arg: str, scale: str, seeds: Sequence[int], overrides: Mapping[str, Any],
         results: Path, options: Sequence[str]) -> tuple[list[str], list[str]]:
    """(commands, comments) for one ablation: a command per run that is neither done, diverged
    nor running; comments for what is left out and why."""
    from repro.ablate import choose, main_runs, selection_runs, state, total_runs

    sel = selection_runs(spec, scale, seeds, overrides)
    chosen = choose(spec, sel, results) if sel else None
    main = main_runs(spec, scale, seeds, overrides, chosen)
    commands, comments, counts = [], [], {"done": 0, "diverged": 0, "running": 0}
    for r in [*sel, *main]:
        st = state(results / r.rel)
        if st in ("pending", "partial"):
            commands.append(shlex.join(["repro", "ablate", name_arg, *options, "--only", selector(r)]))
        else:
            counts[st] += 1
            if st == "running":
                comments.append(f"# {r.label}: running in another process now (not listed)")
    if chosen is not None and len(seeds) > 1:
        later = [a for a, v in chosen.items() if v is None and not _all_diverged(spec, sel, a, results)]
        gone = [a for a, v in chosen.items() if v is None and a not in later]
        others = f"seed {seeds[1]}" if len(seeds) == 2 else f"seeds {seeds[1]}-{seeds[-1]}"
        if later:
            comments.append(f"# {spec.name} ({', '.join(later)}): the main-seed commands ({others}) appear after "
                            f"the selection runs of {'that arm' if len(later) == 1 else 'those arms'} are done "
                            "(rerun --plan then)")
        for a in gone:
            comments.append(f"# {spec.name}/{a}: every {spec.selection.key} in its grid diverged; no other seeds")
    total = total_runs(spec, scale, seeds)
    comments.append(f"# {spec.name} at scale {scale}: {len(commands)} to run, {counts['running']} running elsewhere, "
                    f"{counts['done']} done, {counts['diverged']} diverged, of {total} runs")
    return commands, comments


def _all_diverged(spec: AblationSpec, sel: Sequence, arm: str, results: Path) -> bool:
    from repro.ablate import TERMINAL
    from repro.rundir import read_summary

    return all((read_summary(results / r.rel) or {}).get("status") in TERMINAL
               for r in sel if r.arm == arm)


def print_plan(commands: Sequence[str], comments: Sequence[str], report_cmd: str, stream: TextIO) -> None:
    """Plain text: commands first (lines 1..K, for a SLURM array), then `#` comments."""
    lines = list(commands) + list(comments)
    if commands:
        k = len(commands)
        lines.append(f"# lines 1-{k} are the commands; e.g. sbatch --array=1-{k} "
                     "--wrap 'sed -n \"${SLURM_ARRAY_TASK_ID}p\" jobs.txt | bash'")
    lines.append(f"# after all runs: {report_cmd}")
    stream.write("".join(line + "\n" for line in lines))
    stream.flush()
