"""repro.provenance.code_fingerprint: changes with the training code, and only with it."""

import shutil
from pathlib import Path

from repro import provenance


def _copy_package(tmp_path: Path) -> Path:
    dest = tmp_path / "repro"
    shutil.copytree(provenance.PACKAGE, dest, ignore=shutil.ignore_patterns("__pycache__"))
    return dest


def test_fingerprint_follows_the_training_code_only(tmp_path):
    pkg = _copy_package(tmp_path)
    before = provenance.code_fingerprint(pkg)
    assert before == provenance.code_fingerprint(provenance.PACKAGE)  # a pure function of the files
    (pkg / "cli.py").write_text((pkg / "cli.py").read_text() + "\n# a comment in the CLI\n")
    assert provenance.code_fingerprint(pkg) == before  # the CLI cannot change a run's numbers
    layers = pkg / "layers.py"
    layers.write_text(layers.read_text().replace("beta", "beta ", 1))
    changed = provenance.code_fingerprint(pkg)
    assert changed != before
    (pkg / "models" / "extra.py").write_text("X = 1\n")  # a new model file counts too
    assert provenance.code_fingerprint(pkg) not in (before, changed)


def test_environment_records_the_fingerprint():
    import torch

    env = provenance.environment(torch.device("cpu"))
    assert env["code_fingerprint"] == provenance.code_fingerprint()
