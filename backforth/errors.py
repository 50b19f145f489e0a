"""The user-error family: mistakes a user can fix (config, a missing input, a locked metastore, a bad path).

``backforth`` prints a :class:`UserError` as one line and exits with code 2, without a Python or Java trace.
Anything else that escapes a command is a bug and keeps its trace.
"""

from __future__ import annotations


class UserError(Exception):
    """A problem the user can fix; its message says how."""


class ConfigError(UserError, ValueError):
    """A configuration problem, phrased so the user knows which file and key to fix."""


class MissingInputError(UserError):
    """A step's input has not been produced yet: ``run `backforth <step>` first``."""

    def __init__(self, what: str, step: str | None = None, detail: str = "") -> None:
        hint = f": run `backforth {step}` first" if step else ""
        super().__init__(f"{what}{detail}{hint}")
        self.what, self.step = what, step


class MetastoreLockedError(UserError):
    """Another process holds the local metastore (one Spark driver per local data folder at a time)."""


class BadPathError(UserError, FileNotFoundError):
    """An input path that does not exist or cannot be read."""
