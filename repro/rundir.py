"""The run directory: one training run's record on disk. This module alone knows its format.

    <root>/<ablation>/manifest-<scale>.json            which run directories make up an ablation
    <root>/<ablation>/<arm>/[<key>-<value>/]<seed>-<hash>/
        config.json      {"config": RunConfig.to_dict(), "hash": RunConfig.hash()}
        env.json         torch version, device, threads, git revision, command (repro.provenance)
        dataset.json     which data: name, sizes, checksum of the arrays, synthetic or not
        metrics.jsonl    one row per epoch (errors are fractions)
        checkpoint.pt    the trainer's resume state (written and read by repro.train)
        summary.json     written last; its status is finished | target-reached | diverged
        reused_from.txt  present when the run was copied from an identical run
    <run dir>.lock       a file lock, held by the process training the run

A run directory is named `<seed>-<hash>` (`dir_name`): the config hash leaves out where and
how fast a run executes, so a finished run is found again on another machine. `root` is
whatever folder holds the ablations' run directories (`--results`); `locate` finds a run's
record in the first of several roots that holds one. Every write is atomic (repro.files),
and every reader returns None (or []) for a record that is missing or half-written.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterable, Sequence
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

FINISHED, TARGET_REACHED, DIVERGED = "finished", "target-reached", "diverged"
DONE = (FINISHED, TARGET_REACHED)  # summary statuses of a run that counts
TERMINAL = (*DONE, DIVERGED)  # summary statuses of a run that is never trained again
STATES = ("done", "diverged", "running", "partial", "pending")  # what `state` answers


def dir_name(seed: int, config_hash: str) -> str:
    """`<seed>-<hash>`: the last part of every run directory's path."""
    return f"{seed}-{config_hash}"


def locate(rel: str | Path, roots: Sequence[Path]) -> Path:
    """`rel` under the first root that holds a summary of it; else under the first root."""
    for root in roots:
        if read_summary(Path(root) / rel) is not None:
            return Path(root) / rel
    return Path(roots[0]) / rel


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
    """done | diverged | running (locked by a live process) | partial | pending."""
    st = status(run_dir)
    if st in DONE:
        return "done"
    if st == DIVERGED:
        return "diverged"
    if is_locked(run_dir):
        return "running"
    if checkpoint_path(run_dir).exists() or has_metrics(run_dir):
        return "partial"
    return "pending"


# ----------------------------------------------------------------------------- reuse


def find_identical(root: Path, seed: int, config_hash: str, exclude: Path) -> Path | None:
    """A finished run directory with this seed and hash elsewhere under `root` (any ablation)."""
    name = dir_name(seed, config_hash)
    for pattern in (f"*/*/{name}", f"*/*/*/{name}"):
        for d in sorted(Path(root).glob(pattern)):
            if d != exclude and status(d) in DONE:
                return d
    return None


def copy_run(src: Path, dest: Path) -> None:
    """Copy a finished run directory (without its checkpoint) into place atomically."""
    with files.atomic(dest, suffix="copy") as tmp:
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.copytree(src, tmp, ignore=shutil.ignore_patterns(CHECKPOINT, ".*.tmp"))
        (tmp / REUSED_FROM).write_text(f"{src}\n", encoding="utf-8")
        if dest.exists():
            dest.rmdir()  # only an empty directory gets here


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
