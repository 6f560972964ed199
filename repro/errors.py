"""The errors `repro` raises on purpose.

Every one of them carries a message meant for a person, on one line. The CLI catches
`ReproError`, prints the message and exits non-zero without a traceback; anything else
is a bug and keeps its traceback.
"""


def one_line(text: object) -> str:
    """A message (an exception's, or any text) on one line: each run of whitespace becomes one space."""
    return " ".join(str(text).split())


class ReproError(Exception):
    """Base class: a user-facing failure with a one-line message."""

    exit_code = 2


class ConfigError(ReproError):
    """A bad model name, config key or value, or a malformed ablation spec."""


class DataError(ReproError):
    """Missing, corrupt or unsafe data files."""


class DivergedError(ReproError):
    """Training produced a non-finite loss; the run is recorded as diverged."""

    exit_code = 3
