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


def test_a_cpu_runs_environment_names_its_vector_units(monkeypatch):
    """One CPU model name has come with AVX2 only and with AVX-512 (kernels that round
    differently): a CPU run's record says which units it had."""
    import torch

    monkeypatch.setattr(provenance, "cpu_features", lambda: ["avx2", "avx512f"])
    assert provenance.environment(torch.device("cpu"))["cpu_features"] == ["avx2", "avx512f"]
    assert "cpu_features" not in provenance.environment(torch.device("meta"))  # not a CPU: not its business


def test_bf16_on_a_cpu_without_bf16_units_is_warned_about(monkeypatch):
    """bench measured bf16 autocast at 0.10-0.25x fp32 on an AVX2-only CPU (AMD EPYC): say so."""
    import torch

    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    monkeypatch.setattr(provenance, "cpu_features", lambda: ["avx2"])
    note = provenance.bf16_emulated("bf16", cpu)
    assert note and note.startswith("warning: runtime.precision=bf16 on a CPU without bf16 units") and "\n" not in note
    assert provenance.bf16_emulated("fp32", cpu) is None
    assert provenance.bf16_emulated("bf16", cuda) is None
    for native in (["avx2", "avx512f", "avx512_bf16"], ["avx2", "amx_bf16", "amx_tile"]):
        monkeypatch.setattr(provenance, "cpu_features", lambda native=native: native)
        assert provenance.bf16_emulated("bf16", cpu) is None
    monkeypatch.setattr(provenance, "cpu_features", lambda: [])  # flags unreadable (not Linux): no guess
    assert provenance.bf16_emulated("bf16", cpu) is None
