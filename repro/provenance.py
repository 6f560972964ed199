"""Where a result came from: software versions, device, threads, git revision, command.

Written into every run directory (env.json) and every benchmark, and read back by the
reports, so that each figure can be traced to the run that made it.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import platform
import socket
import subprocess
import sys
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parent.parent
PACKAGE = Path(__file__).resolve().parent
# The code that decides what a training run computes: the nets, their layers, the optimizer,
# the data pipeline and the loop. A change anywhere else (CLI, reports, ablation planning)
# cannot change a run's numbers, so it does not change the fingerprint.
TRAINING_CODE = ("models", "layers.py", "optim.py", "data", "train.py", "placement.py", "distributed.py")


def _git(*args: str) -> str | None:
    try:
        out = subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def git_revision() -> tuple[str | None, bool | None]:
    """(commit, dirty): dirty means tracked files differ from the commit."""
    rev = _git("rev-parse", "HEAD")
    if rev is None:
        return None, None
    status = _git("status", "--porcelain", "--untracked-files=no")
    return rev, bool(status)


def code_fingerprint(package: Path = PACKAGE) -> str:
    """sha256 (12 hex digits) over the paths and bytes of the training code's source files."""
    h = hashlib.sha256()
    for entry in TRAINING_CODE:
        root = package / entry
        for f in sorted(root.rglob("*.py")) if root.is_dir() else [root]:
            h.update(f.relative_to(package).as_posix().encode() + b"\0" + f.read_bytes() + b"\0")
    return h.hexdigest()[:12]


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    if device.type == "cpu":
        return _cpuinfo("model name") or platform.processor() or platform.machine()
    return device.type


def _cpuinfo(field: str) -> str | None:
    """The first `field` of /proc/cpuinfo (Linux), e.g. "model name"; None elsewhere."""
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        return None
    return next((line.split(":", 1)[1].strip() for line in lines if line.split(":")[0].strip() == field), None)


def now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


def environment(device: torch.device) -> dict:
    import torchvision

    rev, dirty = git_revision()
    return {
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "device": str(device),
        "device_name": device_name(device),
        "threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
        "git_revision": rev,
        "git_dirty": dirty,
        "code_fingerprint": code_fingerprint(),
        "hostname": socket.gethostname(),
        "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]),
        "started_at": now(),
    } | ({"cpu_features": cpu_features()} if device.type == "cpu" else {})


def numerics(runtime) -> dict:
    """The settings that decide a run's arithmetic (a RuntimeConfig's precision and layout)."""
    return {"precision": runtime.precision, "channels_last": runtime.channels_last,
            "autocast": "bfloat16" if runtime.precision == "bf16" else None}


def cpu_features() -> list[str]:
    """The CPU's vector and matrix extensions that decide fp32/bf16 speed (Linux only; else [])."""
    flags = (_cpuinfo("flags") or "").split()
    return [f for f in ("avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile") if f in flags]


BF16_UNITS = ("avx512_bf16", "amx_bf16")


def bf16_emulated(precision: str, device: torch.device) -> str | None:
    """A one-line warning where bf16 is asked of a CPU without bf16 units (neither avx512_bf16
    nor amx_bf16): autocast then emulates it, far slower than fp32. None where bf16 is native,
    on other devices, or where the CPU's flags cannot be read."""
    if precision != "bf16" or device.type != "cpu":
        return None
    features = cpu_features()
    if not features or any(f in features for f in BF16_UNITS):
        return None
    return ("warning: runtime.precision=bf16 on a CPU without bf16 units (no avx512_bf16 or amx_bf16): "
            "autocast emulates it, 4-10x slower than fp32 on an AVX2 CPU (`repro bench`); fp32 is faster here")
