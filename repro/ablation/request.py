"""What one `repro ablate` call asks for, as one frozen value.

`AblationRequest` holds the command line's settings (not the trainer or the console, which
are how it runs, not what it asks). It renders itself as `repro ablate` arguments
(`to_args`, `command`) and parses them back (`from_args`): `--plan` prints one such command
per pending run (`for_run`), and a scheduler's workers run exactly those.
"""

from __future__ import annotations

import os
import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from repro.errors import ConfigError

RESULTS, REPORTS = "results", "reports"  # the default folders


def format_value(v: Any) -> str:
    """A `--set` value as the command line writes it: true/false, none, 1,2,3, or str()."""
    if isinstance(v, bool):
        return "true" if v else "false"
    if v is None:
        return "none"
    if isinstance(v, (tuple, list)):
        return ",".join(format_value(x) for x in v)
    return str(v)


@dataclass(frozen=True)
class AblationRequest:
    """`repro ablate NAME|all [options]` (see repro.cli.ablate for what each option means)."""

    name: str
    scale: str | None = None
    seeds: int | None = None
    epochs: int | None = None
    data_dir: str | None = None
    device: str | None = None
    results_dir: str = RESULTS
    reports_dir: str = REPORTS
    overrides: tuple[tuple[str, Any], ...] = ()  # --set key=value, in order
    download: bool = False
    dry_run: bool = False
    quiet: bool = False
    jobs: int = 1
    plan: bool = False
    only: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        # Accept what callers naturally have (a dict, paths, a list) and store immutable values;
        # a key given twice keeps its last value, as on the command line (config.parse_sets).
        pairs = self.overrides.items() if isinstance(self.overrides, Mapping) else self.overrides
        object.__setattr__(self, "overrides", tuple(dict(pairs).items()))
        for name in ("results_dir", "reports_dir"):
            object.__setattr__(self, name, os.fspath(getattr(self, name)))
        if self.data_dir is not None:
            object.__setattr__(self, "data_dir", os.fspath(self.data_dir))
        if self.only is not None:
            object.__setattr__(self, "only", tuple(self.only))

    @property
    def override_map(self) -> dict[str, Any]:
        return dict(self.overrides)

    def for_run(self, selector: str) -> AblationRequest:
        """The request that trains one run of this one: the settings that decide its hash, where
        its directory lies and where its record is published (`--reports`: real-data runs
        publish into `<reports>/records/`, which also counts as done), and `--only selector`."""
        return AblationRequest(self.name, scale=self.scale, seeds=self.seeds, epochs=self.epochs,
                               data_dir=self.data_dir, device=self.device, results_dir=self.results_dir,
                               reports_dir=self.reports_dir, overrides=self.overrides, only=(selector,))

    def to_args(self) -> list[str]:
        """`repro ablate` arguments (after `ablate`) that parse back to this request."""
        args = [self.name]
        for flag, value in (("--scale", self.scale), ("--seeds", self.seeds), ("--epochs", self.epochs),
                            ("--data-dir", self.data_dir), ("--device", self.device)):
            if value is not None:
                args += [flag, str(value)]
        if self.results_dir != RESULTS:
            args += ["--results", self.results_dir]
        if self.reports_dir != REPORTS:
            args += ["--reports", self.reports_dir]
        for k, v in self.overrides:
            args += ["--set", f"{k}={format_value(v)}"]
        for flag, on in (("--download", self.download), ("--dry-run", self.dry_run), ("--quiet", self.quiet),
                         ("--plan", self.plan)):
            if on:
                args.append(flag)
        if self.jobs != 1:
            args += ["--jobs", str(self.jobs)]
        for s in self.only or ():
            args += ["--only", s]
        return args

    def command(self) -> str:
        """This request as one shell line: `repro ablate ...`."""
        return shlex.join(["repro", "ablate", *self.to_args()])

    @classmethod
    def from_args(cls, args: Sequence[str]) -> AblationRequest:
        """Parse `repro ablate` arguments (as `to_args` writes them; `--opt=value` also works)."""
        values: dict[str, Any] = {}
        overrides: list[tuple[str, str]] = []
        only: list[str] = []
        name = None
        it = iter(_split_equals(args))
        for a in it:
            if a in _VALUED:
                field_name, kind = _VALUED[a]
                raw = next(it, None)
                if raw is None:
                    raise ConfigError(f"{a}: needs a value")
                if field_name == "overrides":
                    key, sep, value = raw.partition("=")
                    if not sep or not key.strip():
                        raise ConfigError(f"--set expects key=value, got {raw!r}")
                    overrides.append((key.strip(), value.strip()))
                elif field_name == "only":
                    only.append(raw)
                else:
                    values[field_name] = _parse(a, raw, kind)
            elif a in _FLAGS:
                values[_FLAGS[a]] = True
            elif a.startswith("-") or name is not None:
                raise ConfigError(f"repro ablate: unexpected argument {a!r}")
            else:
                name = a
        if name is None:
            raise ConfigError("repro ablate: missing NAME (an ablation, a spec file or `all`)")
        return cls(name, overrides=tuple(overrides), only=tuple(only) if only else None, **values)


_VALUED = {
    "--scale": ("scale", str), "--seeds": ("seeds", int), "--epochs": ("epochs", int),
    "--data-dir": ("data_dir", str), "--device": ("device", str), "--results": ("results_dir", str),
    "--reports": ("reports_dir", str), "--set": ("overrides", str), "-s": ("overrides", str),
    "--jobs": ("jobs", int), "-j": ("jobs", int), "--only": ("only", str),
}
_FLAGS = {"--download": "download", "--dry-run": "dry_run", "--quiet": "quiet", "-q": "quiet", "--plan": "plan"}


def _split_equals(args: Sequence[str]) -> list[str]:
    """`--scale=smoke` -> `--scale`, `smoke` (for the long options that take a value)."""
    out: list[str] = []
    for a in args:
        flag, sep, value = a.partition("=")
        if sep and flag in _VALUED and flag.startswith("--"):
            out += [flag, value]
        else:
            out.append(a)
    return out


def _parse(flag: str, raw: str, kind: type) -> Any:
    if kind is int:
        try:
            return int(raw)
        except ValueError:
            raise ConfigError(f"{flag} {raw}: not a whole number") from None
    return raw
