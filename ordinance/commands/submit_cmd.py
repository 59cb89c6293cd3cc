"""``ordinance submit request.json --log URL``: one intent through the log, its decision out.

Exit codes (scripts can branch on the answer without parsing it):

* 0 allow
* 2 usage: the request file is unreadable or not JSON, the log URL is not understood, or
  the request cannot be sent (not a request, no agent, a value with no wire form) —
  nothing was published
* 6 deny (by a policy, or the enforcer failing closed)
* 7 require_approval
* 8 no decision: the client gave up (timeout, log unreachable, locked, or missing: a path
  that is not a log is never created) — a client-side deny

``--timeout`` bounds the whole command, not only the wait for the answer: opening the
log, publishing, waiting and closing together take at most the timeout plus a short
grace for closing (a locked embedded log or a broker that is down cannot stretch it).
"""

from __future__ import annotations

import json
import sys
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

from rich.console import Console

from ordinance.client import CLIENT_INVALID_REQUEST, ClientDecision, SyncClient
from ordinance.commands.output import EXIT_OK, EXIT_USAGE, ExitCode, console, emit_json
from ordinance.errors import OrdinanceError
from ordinance.keys import KeyFileError
from ordinance.policy.decision import ALLOW, REQUIRE_APPROVAL, Effect
from ordinance.streams.errors import UnsupportedLogUrlError

EXIT_DENY = ExitCode.DENIED
EXIT_APPROVAL = ExitCode.APPROVAL
EXIT_NO_DECISION = ExitCode.NO_DECISION

_STYLE: dict[str, str] = {
    Effect.ALLOW: "green",
    Effect.DENY: "red",
    Effect.REQUIRE_APPROVAL: "yellow",
}
#: What closing may take beyond the timeout: when the answer took the whole timeout,
#: closing still gets a moment to stop the threads cleanly (it takes milliseconds when
#: the log is healthy, and gives up after this when it is not).
CLOSE_GRACE_S = 0.5


def exit_code(decision: ClientDecision) -> int:
    if decision.code == CLIENT_INVALID_REQUEST:
        return EXIT_USAGE
    if decision.client_side:
        return EXIT_NO_DECISION
    if decision.effect == ALLOW:
        return EXIT_OK
    return EXIT_APPROVAL if decision.effect == REQUIRE_APPROVAL else EXIT_DENY


def _read(source: str) -> Any:
    text = sys.stdin.read() if source == "-" else Path(source).read_text(encoding="utf-8")
    # Exact decimals: 25000.10 in the file is 25000.10 in the policy, not a binary float.
    return json.loads(text, parse_float=Decimal)


def cmd_submit(
    request_file: str,
    log_url: str,
    timeout: float,
    as_json: bool,
    prefix: str = "ordinance.",
    key: str | None = None,
) -> int:
    """``key``: the agent's private key file; every intent is signed with it (None: the
    file ``$ORDINANCE_AGENT_KEY`` names, if any)."""
    err = Console(stderr=True, highlight=False)
    try:
        request = _read(request_file)
    except (OSError, ValueError) as exc:
        err.print(f"[red]cannot read request {request_file}:[/] {exc}", markup=True)
        return EXIT_USAGE
    deadline = time.monotonic() + timeout

    def remaining() -> float:
        return max(0.0, deadline - time.monotonic())

    try:
        # Never creates the log: submitting to a mistyped path must fail, not wait for an
        # answer from an empty database no enforcer reads.
        client = SyncClient(log_url, topic_prefix=prefix, open_timeout=timeout, key=key)
    except UnsupportedLogUrlError as exc:
        err.print(f"[red]bad log URL:[/] {exc}")
        return EXIT_USAGE
    except KeyFileError as exc:
        err.print(f"[red]cannot use the key:[/] {exc}")
        return EXIT_USAGE
    except OrdinanceError as exc:
        err.print(f"[red]the log is not usable:[/] {exc}")
        return EXIT_NO_DECISION
    try:
        decision = client.decide(request, timeout=remaining())
    finally:
        client.close(timeout=max(remaining(), CLOSE_GRACE_S))
    code = exit_code(decision)
    if as_json:
        emit_json({"decision": decision.to_json(), "exit_code": code})
        return code
    out = console()
    style = _STYLE.get(decision.effect, "white")
    side = "  [dim](client-side: no decision from the enforcer)[/]" if decision.client_side else ""
    out.print(f"[bold {style}]{decision.effect}[/]  ({decision.code}){side}")
    out.print(f"request   {decision.request_id}", markup=False)
    for rule_id, reason in zip(decision.rule_ids, decision.reasons, strict=False):
        out.print(f"rule      {rule_id}: {reason}", markup=False)
    if not decision.rule_ids:
        why = decision.detail or (decision.reasons[0] if decision.reasons else "-")
        out.print(f"reason    {why}", markup=False)
    for obligation in decision.obligations:
        out.print(f"obligation {json.dumps(obligation, default=str)}", markup=False)
    if decision.approval_ticket:
        out.print(f"ticket    {decision.approval_ticket}", markup=False)
    if not decision.client_side:
        out.print(f"bundle    {decision.bundle_id or '-'}", markup=False)
        out.print(
            f"enforcer  {decision.enforcer_id}, action at partition {decision.action_partition}"
            f" offset {decision.action_offset}",
            markup=False,
        )
    return code
