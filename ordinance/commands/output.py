"""Shared output helpers: every report has a human form and a ``--json`` form."""

from __future__ import annotations

import sys
from typing import Any

from rich.console import Console

from ordinance.jsonutil import pretty_json
from ordinance.policy.errors import PolicyErrors

# Exit codes, as Cerbos uses them: scripts can tell a broken bundle from failing tests.
EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_COMPILE = 3
EXIT_TESTS = 4


def emit_json(value: Any) -> None:
    sys.stdout.write(pretty_json(value))
    sys.stdout.write("\n")


def report_failure(message: str, as_json: bool, code: int = EXIT_USAGE) -> int:
    """A command that cannot go on: ``{"ok": false, "error": ...}`` on stdout for
    ``--json``, else the message in red on stderr. Returns ``code``."""
    if as_json:
        emit_json({"ok": False, "error": message})
    else:
        Console(stderr=True, highlight=False).print(message, style="red", markup=False)
    return code


def console() -> Console:
    out = Console(highlight=False)
    if not out.is_terminal:
        # Piped output (CI logs, files) gets a width that keeps report tables readable.
        out = Console(highlight=False, width=160)
    return out


def report_policy_errors(errors: PolicyErrors, as_json: bool) -> int:
    if as_json:
        emit_json({"ok": False, "errors": [e.to_json() for e in errors.errors]})
    else:
        err = Console(stderr=True, highlight=False, soft_wrap=True)
        for e in errors.errors:
            err.print(e.render(), markup=False)
            err.print()
        err.print(f"{len(errors.errors)} error(s)", style="bold red")
    return EXIT_COMPILE
