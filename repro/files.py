"""Atomic writes: a reader (or a second `repro ablate` process) sees the old file or the new
one, never half of one. The text goes to a hidden, per-process temporary file beside the
target, which is then renamed over it."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any


def write_text(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def write_json(path: Path, obj: Any, default: Callable[[Any], Any] | None = None) -> None:
    write_text(path, json.dumps(obj, indent=2, default=default) + "\n")
