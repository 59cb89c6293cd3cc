"""Shared output helpers: every report has a human form and a ``--json`` form."""

from __future__ import annotations

import enum
import sys
from typing import Any

from rich.console import Console

from ordinance.jsonutil import pretty_json
from ordinance.policy.errors import PolicyErrors


class ExitCode(enum.IntEnum):
    """Every command's exit status, one meaning per number, so a script can branch on it
    without parsing output (README, "Exit codes"; a test keeps the two equal)."""

    OK = 0  # done; `submit`: allowed
    FAILED = 1  # ran but could not finish or found a problem (log, verification, fmt --check)
    USAGE = 2  # the command line or an input file is wrong; nothing was changed
    COMPILE = 3  # the policy bundle does not compile
    TESTS = 4  # policy tests failed
    GATE = 5  # a gate refused: analysis/schema gates (check, publish), a dirty tree, diff --fail-on
    DENIED = 6  # `submit`: denied (by a policy, or the enforcer failing closed)
    APPROVAL = 7  # `submit`: require_approval
    NO_DECISION = 8  # `submit`: no decision reached the client (timeout, log unreachable)


EXIT_OK = ExitCode.OK
EXIT_FAILED = ExitCode.FAILED
EXIT_USAGE = ExitCode.USAGE
EXIT_COMPILE = ExitCode.COMPILE
EXIT_TESTS = ExitCode.TESTS
EXIT_GATE = ExitCode.GATE


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
