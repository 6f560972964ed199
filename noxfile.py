"""Sessions: `nox -s tests` (the whole CPU suite, what CI runs), `nox -s lint`, `nox -s bench`.

Environments are reused between runs (`reuse_venv`): torch alone is a 5 GB install.
"""

import nox

nox.options.reuse_venv = "yes"
nox.options.sessions = ["tests"]


@nox.session(python="3.11")
def tests(session: nox.Session) -> None:
    """The whole CPU test suite (GPU tests are marked and skip themselves)."""
    session.install("-e", ".[test]")
    session.run("pytest", "-q", *session.posargs)


@nox.session(python="3.11")
def lint(session: nox.Session) -> None:
    session.install("ruff>=0.5")
    session.run("ruff", "check", "repro", "tests", "noxfile.py")


@nox.session(python="3.11")
def bench(session: nox.Session) -> None:
    """Throughput figures as ratios measured side by side in one run (never a test)."""
    session.install("-e", ".")
    session.run("repro", "bench", *session.posargs)
