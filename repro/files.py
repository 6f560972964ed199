"""Atomic writes: a reader (or a second `repro ablate` process) sees the old file or the new
one, never half of one. Whatever is written goes to a hidden, per-process temporary path
beside the target, which is then renamed over it. Every writer in `repro` goes through here.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any


@contextmanager
def atomic(path: Path, suffix: str = "tmp") -> Iterator[Path]:
    """Yield a temporary path beside `path`; on success, rename it over `path`.

    Write any file (torch.save, savefig) or a whole directory to the yielded path. On an
    exception the temporary file or directory is removed and `path` is left as it was."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{suffix}")
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        if tmp.is_dir():
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            tmp.unlink(missing_ok=True)
        raise


def write_text(path: Path, text: str) -> None:
    with atomic(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_json(path: Path, obj: Any, default: Callable[[Any], Any] | None = None) -> None:
    write_text(path, json.dumps(obj, indent=2, default=default) + "\n")

