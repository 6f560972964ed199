"""The errors `repro` raises on purpose.

Every one of them carries a message meant for a person, on one line. The CLI catches
`ReproError`, prints the message and exits non-zero without a traceback; anything else
is a bug and keeps its traceback.
"""


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
