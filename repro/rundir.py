"""The run directory: one training run's record on disk. This module alone knows its format.

    <root>/<ablation>/manifest-<scale>.json            which run directories make up an ablation
    <root>/<ablation>/<arm>/[<key>-<value>/]<seed>-<hash>/
        config.json      {"config": RunConfig.to_dict(), "hash": RunConfig.hash()}
        env.json         torch version, device, threads, git revision, command (repro.provenance)
        dataset.json     which data: name, sizes, checksum of the arrays, synthetic or not
        metrics.jsonl    one row per epoch (errors are fractions)
        checkpoint.pt    the trainer's resume state (written and read by repro.train)
        summary.json     written last; its status is finished | target-reached | diverged | outrun
        reused_from.txt  present when the run was copied from an identical run
    <run dir>.lock       a file lock, held by the process training the run

A run directory is named `<seed>-<hash>` (`dir_name`): the config hash leaves out where and
how fast a run executes, so a finished run is found again on another machine. `root` is
whatever folder holds the ablations' run directories (`--results`); `locate` finds a run's
record in the first of several roots that holds one.

A `Store` is where an ablation's runs live: `results` (where runs train) and, at real-data
scales, `records` (`reports/records`, committed to the repository): a run's record (its
RECORD_FILES, never the checkpoint or a lock) is copied there, at the same relative path, as
soon as it is finished (`publish`), and a record found there counts as a finished run
(`find`, `state`), so a fresh clone retrains nothing it already has. Every write is atomic (repro.files),
and every reader returns None (or []) for a record that is missing or half-written.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from filelock import FileLock, Timeout

from repro import config as rc
from repro import files

CONFIG = "config.json"
ENV = "env.json"
DATASET = "dataset.json"
METRICS = "metrics.jsonl"
CHECKPOINT = "checkpoint.pt"
SUMMARY = "summary.json"
REUSED_FROM = "reused_from.txt"
LOCK_SUFFIX = ".lock"
RECORD_FILES = (CONFIG, ENV, DATASET, METRICS, SUMMARY, REUSED_FROM)  # what a committed record holds
RECORDS_DIR = "records"  # under the reports folder

FINISHED, TARGET_REACHED, DIVERGED = "finished", "target-reached", "diverged"
OUTRUN = "outrun"  # a selection run stopped once a rival grid value had reached the target sooner
DONE = (FINISHED, TARGET_REACHED)  # summary statuses of a run that counts (and may be copied)
TERMINAL = (*DONE, DIVERGED, OUTRUN)  # summary statuses of a run that is never trained again
STATES = ("done", "diverged", "outrun", "running", "partial", "pending")  # what `state` answers


def dir_name(seed: int, config_hash: str) -> str:
    """`<seed>-<hash>`: the last part of every run directory's path."""
    return f"{seed}-{config_hash}"


def locate(rel: str | Path, roots: Sequence[Path]) -> Path:
    """`rel` under the first root that holds a summary of it; else under the first that holds
    the directory at all (a partial run); else under the first root."""
    for root in roots:
        if read_summary(Path(root) / rel) is not None:
            return Path(root) / rel
    return next((Path(r) / rel for r in roots if (Path(r) / rel).is_dir()), Path(roots[0]) / rel)


# ----------------------------------------------------------------------------- reading


def read_json(path: Path) -> dict | None:
    """A JSON object, or None if the file is missing or unreadable (e.g. being written)."""
    try:
        obj = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return obj if isinstance(obj, dict) else None


def read_summary(run_dir: Path) -> dict | None:
    return read_json(Path(run_dir) / SUMMARY)


def read_env(run_dir: Path) -> dict | None:
    return read_json(Path(run_dir) / ENV)


def read_dataset(run_dir: Path) -> dict | None:
    return read_json(Path(run_dir) / DATASET)


def status(run_dir: Path) -> str | None:
    """The summary's status (see TERMINAL), or None while there is no summary."""
    return (read_summary(run_dir) or {}).get("status")


def stored_hash(run_dir: Path) -> str | None:
    """The config hash config.json records, or None without a readable config.json."""
    return (read_json(Path(run_dir) / CONFIG) or {}).get("hash")


def run_config(run_dir: Path) -> rc.RunConfig | None:
    """The RunConfig config.json records; None if missing or from another version of repro."""
    c = read_json(Path(run_dir) / CONFIG)
    if c is None or "config" not in c:
        return None
    try:
        return rc.from_dict(c["config"])
    except Exception:  # a config from another version of repro: still report what is stored
        return None


def read_metrics(run_dir: Path) -> list[dict]:
    """metrics.jsonl rows, in epoch order; a torn last line is ignored."""
    rows = []
    try:
        lines = (Path(run_dir) / METRICS).read_text(encoding="utf-8").splitlines()
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


def checkpoint_path(run_dir: Path) -> Path:
    return Path(run_dir) / CHECKPOINT


def was_reused(run_dir: Path) -> bool:
    """Whether the run was copied from an identical run rather than trained here."""
    return (Path(run_dir) / REUSED_FROM).exists()


def has_metrics(run_dir: Path) -> bool:
    return (Path(run_dir) / METRICS).exists()


# ----------------------------------------------------------------------------- writing


def write_config(run_dir: Path, cfg: rc.RunConfig) -> None:
    files.write_json(Path(run_dir) / CONFIG, {"config": cfg.to_dict(), "hash": cfg.hash()})


def write_env(run_dir: Path, env: dict[str, Any]) -> None:
    files.write_json(Path(run_dir) / ENV, env)


def write_dataset(run_dir: Path, identity: dict[str, Any]) -> None:
    files.write_json(Path(run_dir) / DATASET, identity)


def write_metrics(run_dir: Path, rows: Iterable[dict]) -> None:
    """metrics.jsonl: one JSON row per epoch, rewritten whole (and atomically) each epoch."""
    files.write_text(Path(run_dir) / METRICS, "".join(json.dumps(r) + "\n" for r in rows))


def write_summary(run_dir: Path, summary: dict[str, Any]) -> None:
    files.write_json(Path(run_dir) / SUMMARY, summary)


# ----------------------------------------------------------------------------- locks and state


def lock_path(run_dir: Path) -> Path:
    return Path(str(run_dir) + LOCK_SUFFIX)


def lock(run_dir: Path) -> FileLock:
    """The file lock a process holds while it trains the run in `run_dir`."""
    return FileLock(str(lock_path(run_dir)))


def is_locked(run_dir: Path) -> bool:
    """Whether a live process holds the run's lock (never creates a lock file just to look)."""
    if not lock_path(run_dir).exists():
        return False
    held = lock(run_dir)
    try:
        held.acquire(timeout=0)
    except Timeout:
        return True
    held.release()
    return False


def state(run_dir: Path) -> str:
    """done | diverged | outrun | running (locked by a live process) | partial | pending."""
    st = status(run_dir)
    if st in DONE:
        return "done"
    if st in (DIVERGED, OUTRUN):
        return st
    if is_locked(run_dir):
        return "running"
    if checkpoint_path(run_dir).exists() or has_metrics(run_dir):
        return "partial"
    return "pending"


# ----------------------------------------------------------------------------- reuse


def find_identical(root: Path | Sequence[Path], seed: int, config_hash: str, exclude: Path | Sequence[Path]
                   ) -> Path | None:
    """A finished run directory with this seed and hash elsewhere under `root` (or any of
    several roots; any ablation), other than `exclude` (one directory or several)."""
    name = dir_name(seed, config_hash)
    excluded = {Path(exclude)} if isinstance(exclude, (str, Path)) else {Path(x) for x in exclude}
    for r in ([Path(root)] if isinstance(root, (str, Path)) else root):
        for pattern in (f"*/*/{name}", f"*/*/*/{name}"):
            for d in sorted(Path(r).glob(pattern)):
                if d not in excluded and status(d) in DONE:
                    return d
    return None


def copy_run(src: Path, dest: Path, origin: str | None = None) -> None:
    """Copy a finished run directory (without its checkpoint) into place atomically, noting
    where it came from (`origin`, e.g. its path relative to the results folder)."""
    with files.atomic(dest, suffix="copy") as tmp:
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.copytree(src, tmp, ignore=shutil.ignore_patterns(CHECKPOINT, ".*.tmp", "*.lock"))
        (tmp / REUSED_FROM).write_text(f"{origin or src}\n", encoding="utf-8")
        if dest.exists():
            dest.rmdir()  # only an empty directory gets here


def copy_record(src: Path, dest: Path) -> None:
    """Copy a finished run's record (RECORD_FILES only) into place atomically."""
    Path(dest).parent.mkdir(parents=True, exist_ok=True)
    with files.atomic(dest, suffix="copy") as tmp:
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        for name in RECORD_FILES:
            if (Path(src) / name).exists():
                shutil.copy2(Path(src) / name, tmp / name)
        if dest.exists():
            shutil.rmtree(dest)


@dataclass(frozen=True)
class Store:
    """Where an ablation's runs live: `results` (where they train) and, at real-data scales,
    `records` (committed records, read first; finished runs are published there)."""

    results: Path
    records: Path | None = None

    @property
    def roots(self) -> tuple[Path, ...]:
        return (self.records, self.results) if self.records is not None else (self.results,)

    def find(self, rel: str | Path) -> Path:
        """The run's record: under the first root with a summary of it, else under results."""
        for root in self.roots:
            if read_summary(root / rel) is not None:
                return root / rel
        return self.results / rel


    def state(self, rel: str | Path) -> str:
        """`state` of the run, a committed record counting as finished."""
        if self.records is not None and status(self.records / rel) in TERMINAL:
            return state(self.records / rel)
        return state(self.results / rel)

    def identical(self, rel: str | Path, seed: int, config_hash: str) -> Path | None:
        """A finished run with this seed and hash under another path of any root (another
        ablation's identical run, to copy instead of training `rel`); None if there is none."""
        return find_identical(self.roots, seed, config_hash, exclude=[root / rel for root in self.roots])

    def publish(self, rel: str | Path) -> bool:
        """Copy a terminal run's record from results into records (once); whether it copied."""
        if self.records is None or status(self.records / rel) in TERMINAL:
            return False
        if status(self.results / rel) not in TERMINAL:
            return False
        copy_record(self.results / rel, self.records / rel)
        return True


def as_store(where: Store | str | Path) -> Store:
    """A Store from a Store or a results folder (no records)."""
    return where if isinstance(where, Store) else Store(Path(where))


def records_root(reports_dir: str | Path) -> Path:
    """Where the committed run records live: `<reports>/records`."""
    return Path(reports_dir) / RECORDS_DIR


# ----------------------------------------------------------------------------- manifests


def manifest_path(root: Path, ablation: str, scale: str) -> Path:
    return Path(root) / ablation / f"manifest-{scale}.json"


def write_manifest(path: Path, manifest: dict[str, Any]) -> None:
    """A manifest, atomically; values JSON has no type for are written as strings."""
    files.write_json(path, manifest, default=str)


def load_manifest(root: Path, ablation: str, scale: str | None, scales: Sequence[str]) -> dict | None:
    """The manifest of `ablation` at `scale`; with no scale, the most recently updated of `scales`."""
    if scale is not None:
        return read_json(manifest_path(root, ablation, scale))
    found = [m for s in scales if (m := read_json(manifest_path(root, ablation, s))) is not None]
    return max(found, key=lambda m: m.get("updated_at", "")) if found else None
