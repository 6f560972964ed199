"""`repro ablate --jobs N`: N worker processes, a runner with the serial Runner's `execute`.

The parent expands the spec and hands runs one at a time to N worker processes
(multiprocessing, 'spawn': a fresh interpreter, no forked torch or CUDA state). A worker
trains a run exactly as one `repro ablate` process does (repro.ablation.execute.run_one:
the run's file lock, a re-read under it, copy of an identical run, DivergedError recorded
as a diverged run), so workers compose with other `repro ablate` processes on the same
results directory. A run locked by another process is set aside and waited for once
nothing else is left.

Worker runtime (runtime.*, not part of a run's hash): with several CUDA devices and
runtime.device auto or cuda, worker i trains on cuda:(i % count); each worker gets
runtime.threads = max(1, cpus // N) unless the spec or --set gives it. With a [selection]
table an arm's main seeds start as soon as that arm's grid is done
(repro.ablation.execute.run_stages, as for a serial run), not before. The parent draws the
one progress view; workers print nothing but a traceback if one crashes. A crash in one
run is recorded and the others go on; the ablation then ends with a one-line error (rerun
to retry: finished runs are skipped).
"""

from __future__ import annotations

import dataclasses
import multiprocessing as mp
import os
import pickle
import queue
import signal
import threading
import time
import traceback
from collections import deque
from collections.abc import Callable, Iterable
from multiprocessing.connection import Connection, wait
from pathlib import Path
from typing import Any

from rich.markup import escape

from repro import rundir
from repro.ablation.execute import Outcome, Trainer, run_one
from repro.ablation.plan import Run
from repro.config import RunConfig, apply
from repro.errors import ConfigError, ReproError, one_line


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


def worker_runtime(cfg: RunConfig, slot: int, n_cuda: int, threads: int) -> dict[str, Any]:
    """The runtime.* settings worker `slot` trains `cfg` with (none of them is in the hash)."""
    rt: dict[str, Any] = {}
    if n_cuda > 1 and cfg.runtime.device in ("auto", "cuda") and not cfg.runtime.devices:
        rt["runtime.device"] = f"cuda:{slot % n_cuda}"
    if cfg.runtime.threads is None:
        rt["runtime.threads"] = threads
    return rt


def placed(run: Run, slot: int, n_cuda: int, threads: int) -> Run:
    """`run` with the runtime settings of worker `slot` (its hash unchanged)."""
    rt = worker_runtime(run.cfg, slot, n_cuda, threads)
    if not rt:
        return run
    cfg = apply(run.cfg, rt)
    assert cfg.hash() == run.cfg.hash(), "runtime settings must not change a run's identity"
    return dataclasses.replace(run, cfg=cfg)


# ----------------------------------------------------------------------------- worker side


class _WorkerProgress:
    """What a worker's run_one reports, sent to the parent's progress view. A worker whose
    parent has gone (killed outright) stops at its next step: its run keeps its checkpoint,
    and the lock goes with the process."""

    def __init__(self, slot: int, events: Connection):
        self.slot, self.events, self._last = slot, events, 0.0
        self.parent = os.getppid()

    def orphaned(self) -> bool:
        return os.getppid() != self.parent

    def start(self, label: str) -> None:
        self._last = 0.0
        self.events.send(("start", self.slot, label))

    def step(self, steps_done: int, steps_total: int) -> None:
        now = time.monotonic()
        if now - self._last >= 0.2 or steps_done >= steps_total:
            self._last = now
            if self.orphaned():
                raise SystemExit(1)
            self.events.send(("step", self.slot, steps_done, steps_total))

    def finish(self, label: str, what: str, trained: bool = False) -> None:
        self.events.send(("finish", self.slot, label, what, trained))

    def note(self, text: str) -> None:
        self.events.send(("note", self.slot, text))


def _error_text(e: BaseException) -> str:
    """One line: the message, or the type of an exception that has none."""
    return one_line(e) or type(e).__name__


def _work(slot: int, results: rundir.Store, trainer, n_cuda: int, threads: int, tasks, events: Connection) -> None:
    """A worker process: train the runs the parent sends until it sends None. Its events go
    to the parent on a pipe of its own, written synchronously: a worker that dies (even inside
    the trainer, by os._exit) leaves no half-written message and no lock held for the others."""
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
                ok = run_one(run, wait, results, trainer, progress, out)
            except ReproError as e:
                events.send(("error", slot, _error_text(e)))
                continue
            except Exception as e:  # noqa: BLE001  (a bug: keep its traceback, keep the worker)
                traceback.print_exc()
                events.send(("error", slot, f"{type(e).__name__}: {_error_text(e)}"))
                continue
            events.send(("done", slot, ok, (out.trained, out.skipped, out.reused, out.diverged)))
    except KeyboardInterrupt:  # Ctrl-C reaches the whole process group; the parent reports it
        pass


# ----------------------------------------------------------------------------- parent side


class Pool:
    """N worker processes (see the module docstring). A context manager; `execute` is one stage."""

    def __init__(self, jobs: int, results: rundir.Store | Path, trainer: Trainer):
        if jobs < 1:
            raise ConfigError(f"--jobs {jobs}: must be at least 1")
        try:
            pickle.dumps(trainer)
        except Exception as e:  # noqa: BLE001
            raise TypeError(f"--jobs: the trainer must be a module-level function ({e})") from None
        self.jobs, self.results, self.trainer = jobs, rundir.as_store(results), trainer
        self.threads = max(1, cpu_count() // jobs)
        self.n_cuda = cuda_count()
        self._ctx = mp.get_context("spawn")
        self.events: dict[int, Connection] = {}  # slot -> the reading end of its worker's event pipe
        self.procs: dict[int, Any] = {}
        self.tasks: dict[int, Any] = {}

    def __enter__(self) -> Pool:
        self._sigterm = None
        if threading.current_thread() is threading.main_thread():  # `kill PID`: stop the workers too
            self._sigterm = signal.signal(signal.SIGTERM, _terminated)
        for slot in range(self.jobs):
            tasks = self._ctx.Queue()
            events, send = self._ctx.Pipe(duplex=False)
            p = self._ctx.Process(target=_work, name=f"repro-ablate-worker-{slot}", daemon=True,
                                  args=(slot, self.results, self.trainer, self.n_cuda, self.threads,
                                        tasks, send))
            p.start()
            send.close()  # the worker holds the only writing end: its death reads as end-of-file here
            self.procs[slot], self.tasks[slot], self.events[slot] = p, tasks, events
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
        for q in self.tasks.values():
            q.cancel_join_thread()
            q.close()
        for conn in self.events.values():
            conn.close()
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
            ev = self._next_event(timeout=0.5)
            if ev is None:
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

    def _next_event(self, timeout: float) -> tuple | None:
        """The next message from any worker, or None after `timeout` (or from a worker that has
        gone: its pipe is dropped, and `_reap` records its run)."""
        if not self.events:  # every worker has gone
            time.sleep(timeout)
            return None
        for conn in wait(list(self.events.values()), timeout=timeout):
            try:
                return conn.recv()
            except (EOFError, OSError):
                slot = next(s for s, c in self.events.items() if c is conn)
                del self.events[slot]
                conn.close()
        return None

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
