"""The one base class of every failure the tool explains in one line.

A failure knows its exit code, so the CLI has one handler instead of a
try/except per command: 1 when a check or a migration step failed, 2 for
bad input, configuration or connection.  Its message is the whole
explanation, with what to do next.
"""
from __future__ import annotations

EXIT_OK, EXIT_CHECK, EXIT_USAGE = 0, 1, 2


class ZakazError(Exception):
    """A failure whose message is a complete one-line explanation."""

    exit_code = EXIT_CHECK


class CheckFailed(ZakazError):
    """A check failed, drift was found, or a migration step failed: exit 1."""

    exit_code = EXIT_CHECK


class UsageError(ZakazError):
    """Bad input, configuration or connection; nothing was changed: exit 2."""

    exit_code = EXIT_USAGE
