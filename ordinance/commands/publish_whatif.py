"""The what-if replay ``publish`` runs before it publishes: the recent window of real
traffic on the log decided again under the new bundle, summarised on the published event
(``checks.whatif``, a ``WhatIfSummary``) so a reviewer sees what the bundle would have
changed. It never refuses: it is evidence, not a gate (``replay whatif --fail-on-change``
is the gate)."""

from __future__ import annotations

import datetime as dt
from typing import Any

from ordinance.commands.schema_compat_cmds import missing_embedded_log
from ordinance.policy.ruleset import Ruleset
from ordinance.replay.times import iso
from ordinance.streams.topics import DEFAULT_PREFIX

SKIP_OPTION = "--skip-whatif"


def _summary(
    outcome: str, reason: str | None, start: Any = None, end: Any = None
) -> dict[str, Any]:
    return {
        "outcome": outcome,
        "reason": reason,
        "window_from": iso(start) if start is not None else None,
        "window_to": iso(end) if end is not None else None,
        "evaluated": 0,
        "changed": 0,
        "transitions": [],
    }


def whatif_summary(
    ruleset: Ruleset,
    log_url: str,
    since: dt.datetime | None,
    *,
    prefix: str = DEFAULT_PREFIX,
    now: dt.datetime | None = None,
) -> dict[str, Any]:
    """The ``WhatIfSummary`` of deciding the decisions of ``[since, now)`` again under
    ``ruleset``; ``since`` None is the ``--skip-whatif`` bypass. A log that cannot be read
    is recorded (``unknown`` with the reason), not an error: publishing decides that."""
    from ordinance.replay.source import open_source
    from ordinance.replay.times import Window
    from ordinance.replay.whatif import whatif
    from ordinance.streams.errors import LogError

    if since is None:
        return _summary("skipped", f"bypassed with {SKIP_OPTION}")
    end = now or dt.datetime.now(dt.UTC)
    if missing_embedded_log(log_url):
        return _summary("skipped", "the log does not exist yet: no traffic", since, end)
    try:
        source, log = open_source(log_url, None, prefix)
        try:
            report = whatif(source, ruleset, window=Window(since, end))
        finally:
            if log is not None:
                log.close()
    except LogError as exc:
        return _summary("unknown", f"the log could not be replayed: {exc}"[:500], since, end)
    if report.evaluated == 0:
        return _summary("skipped", "no decisions in the window", since, end)
    return {
        **_summary("ran", None, since, end),
        "evaluated": report.evaluated,
        "changed": len(report.changes),
        "transitions": [
            {"old_effect": old, "new_effect": new, "count": n}
            for (old, new), n in sorted(report.transitions.items())
        ],
    }


def describe(summary: dict[str, Any] | None) -> str:
    """One line for publish's output and ``policy history``."""
    if summary is None:
        return "what-if not run"
    if summary["outcome"] != "ran":
        return f"what-if {summary['outcome']}: {summary['reason']}"
    moves = ", ".join(
        f"{t['count']} {t['old_effect']}→{t['new_effect']}" for t in summary["transitions"]
    )
    return f"what-if: {summary['changed']} of {summary['evaluated']} recent decisions change" + (
        f" ({moves})" if moves else ""
    )
