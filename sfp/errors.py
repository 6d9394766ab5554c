"""The one error type of the command line.

Every failure a user can cause (a missing file, a bad setting, a corrupted
container, a tool that failed) is raised as :class:`CliError` by the
command modules and printed by :func:`sfp.cli.main` as one line on stderr,
with exit status :data:`EXIT_USAGE`.  The library raises its own errors
(:class:`sfp.model.formats.FormatError`, ``ValueError``...); the commands
translate them.  This module imports nothing of the project, so every
command module can use it without import cycles.
"""

from __future__ import annotations

__all__ = ["CliError", "EXIT_USAGE", "first_line"]

EXIT_USAGE = 2


class CliError(Exception):
    """A user-facing error: printed as one line, exit status 2."""


def first_line(exc: BaseException) -> str:
    """The first line of an exception's message (its type name if it has none)."""
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]
