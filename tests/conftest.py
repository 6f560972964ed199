"""Shared pytest fixtures.

`cifar10_root`: real CIFAR-10 in the canonical python layout, rebuilt once per test session
from ../shared (shared/tools/cifar10.py, about 10 s) into a temporary folder. Tests that
use it are skipped, with the reason, where ../shared is not beside the repository.
`isolated_cache`: an empty $XDG_CACHE_HOME and no $REPRO_DATA for one test.
`one_thread`: torch on one intra-op thread for one test (see its docstring);
`one_thread_module`: the same for a whole module.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
CIFAR_TOOL = SHARED / "tools" / "cifar10.py"


@pytest.fixture(scope="session")
def cifar10_root(tmp_path_factory) -> Path:
    """A folder holding `cifar-10-batches-py/` (real images, JPEG round-tripped)."""
    if not CIFAR_TOOL.is_file():
        pytest.skip(f"real CIFAR-10 needs {CIFAR_TOOL} (../shared beside the repository)")
    dest = tmp_path_factory.mktemp("cifar10")
    subprocess.run([sys.executable, str(CIFAR_TOOL), str(dest)], check=True, capture_output=True, timeout=300)
    return dest


@pytest.fixture
def isolated_cache(tmp_path, monkeypatch) -> Path:
    """An empty per-user cache ($XDG_CACHE_HOME) and no $REPRO_DATA, so tests never touch the real ones."""
    cache = tmp_path / "xdg-cache"
    cache.mkdir()
    monkeypatch.setenv("XDG_CACHE_HOME", str(cache))
    monkeypatch.delenv("REPRO_DATA", raising=False)
    return cache / "repro"


@contextmanager
def _threads(n: int) -> Iterator[None]:
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@pytest.fixture
def one_thread():
    """Run torch on one intra-op thread (restored afterwards, also after code that sets it,
    such as repro.train.run with runtime.threads): on a shared 2-core machine, 2 OpenMP
    threads make small tensor ops ~100x slower whenever the other core is busy."""
    with _threads(1):
        yield


@pytest.fixture(scope="module")
def one_thread_module():
    """`one_thread` for every test of a module (`pytestmark = pytest.mark.usefixtures(...)`)."""
    with _threads(1):
        yield
