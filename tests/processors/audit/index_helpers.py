"""A decisions log written by the real enforcer for the audit index tests: three agents,
payments, file and web tools, every effect, and decision times one second apart (the
enforcer's clock steps), so time filters have something to cut.

The oracle `log_decisions` reads the log directly; index answers are compared with it."""

from __future__ import annotations

import datetime as dt
import itertools
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson

from ordinance.jsonutil import canonical_json
from ordinance.processors.audit.query import micros
from ordinance.processors.enforcer import Enforcer
from ordinance.streams import Record, open_log
from ordinance.streams.serde import Decoded, Serde
from ordinance.streams.topics import AGENT_ACTIONS, AGENT_DECISIONS, ensure_topics
from ordinance.wire import request_to_wire
from tests.processors.caught_up import run_caught_up

from ..test_enforcer import EXAMPLES, T0, publish

BILLING = {"id": "billing-bot", "roles": ["billing"], "team": "finance"}
BILLING_2 = {"id": "billing-2", "roles": ["billing"], "team": "finance"}
FILES = {"id": "files-bot", "roles": ["dev"], "team": "platform"}


def _transfer(agent: dict[str, Any], amount: str, country: str) -> dict[str, Any]:
    args = {"amount": amount, "currency": "EUR", "country": country, "iban": "X"}
    return {"agent": agent, "action": {"tool": "payments.transfer", "args": args}}


def _fs(tool: str, path: str, **extra: Any) -> dict[str, Any]:
    return {"agent": FILES, "action": {"tool": tool, "args": {"path": path, **extra}}}


def _fetch(url: str, method: str = "GET") -> dict[str, Any]:
    return {
        "agent": FILES,
        "action": {"tool": "http.fetch", "args": {"url": url, "method": method}},
    }


def requests(round_: int) -> list[dict[str, Any]]:
    """One round of intents; rounds differ only in amounts, so each round has every effect."""
    small = str(10 + round_)
    return [
        _transfer(BILLING, small, "DE"),  # allow
        _transfer(BILLING, small, "KP"),  # deny: payments-guardrails/block-sanctioned
        _transfer(BILLING_2, "20000", "DE"),  # require_approval: large-needs-approval
        _transfer(BILLING_2, small, "FR"),  # allow
        _fs("fs.read", "/workspace/notes.txt"),  # allow: filesystem-safety/workspace
        _fs("fs.read", "/etc/shadow"),  # deny: filesystem-safety/deny-system-paths
        _fs("fs.delete", "/workspace/build", recursive=True),  # require_approval
        _fetch("http://169.254.169.254/latest/"),  # deny: web-fetch metadata + plain-http
        _fetch("https://pypi.org/simple/"),  # allow: web-fetch/allowlisted
    ]


class StepClock:
    """The enforcer's clock: one second further at every reading."""

    def __init__(self, start: float) -> None:
        self._ticks = itertools.count()
        self.start = start

    def __call__(self) -> float:
        return self.start + next(self._ticks)


def send_rounds(url: str, rounds: range) -> int:
    serde = Serde()
    records = []
    for r in rounds:
        for i, request in enumerate(requests(r)):
            datum = request_to_wire(
                request,
                request_id=f"q{r}-{i}",
                event_time=dt.datetime.fromtimestamp(T0 + 60 * r + i, dt.UTC),
                client_id="audit-query-test",
            )
            records.append(
                Record(
                    datum["agent"]["id"].encode(),
                    serde.encode("ActionRequest", datum),
                    (),
                    int(T0 * 1000),
                )
            )
    with open_log(url) as log:
        log.produce(ensure_topics(log)[AGENT_ACTIONS].name, records)
    return len(records)


def enforce(url: str, clock: Callable[[], float]) -> None:
    with open_log(url) as log:
        # Until it has read what was sent: on Kafka the first fetch after a group join can
        # take seconds, which an idle wait would have to outlast.
        run_caught_up(Enforcer(log, enforcer_id="enforcer-q", clock=clock))


def build_log(url: str, rounds: int = 6, clock: StepClock | None = None) -> StepClock:
    """Publish the example policies, send ``rounds`` rounds and let the enforcer decide."""
    clock = clock or StepClock(T0 + 3600)
    publish(url, EXAMPLES)
    send_rounds(url, range(rounds))
    enforce(url, clock)
    return clock


def log_decisions(url: str) -> tuple[list[dict[str, Any]], int]:
    """(every Decision on the log as the index should hold it, number of control records)."""
    serde = Serde()
    out: list[dict[str, Any]] = []
    control = 0
    with open_log(url) as log:
        for record in log.read_to_end(ensure_topics(log)[AGENT_DECISIONS].name):
            decoded = serde.decode_record(record)
            assert isinstance(decoded, Decoded)
            if decoded.name != "Decision":
                control += 1
                continue
            v = decoded.value
            shadow = v["shadow"] or {}
            out.append(
                {
                    "partition": record.partition,
                    "offset": record.offset,
                    "request_id": v["request_id"],
                    "agent_id": v["agent_id"],
                    "tool": v["tool"],
                    "effect": v["effect"],
                    "code": v["code"],
                    "rule_ids": list(v["rule_ids"]),
                    "bundle_id": v["bundle_id"],
                    "policy_offset": v["policy_offset"],
                    "arm": v["arm"],
                    "shadow_bundle_id": shadow.get("bundle_id"),
                    "shadow_effect": shadow.get("effect"),
                    "shadow_code": shadow.get("code"),
                    "shadow_rule_ids": list(shadow["rule_ids"]) if shadow else None,
                    "event_time": None if v["event_time"] is None else micros(v["event_time"]),
                    "evaluated_at": micros(v["evaluated_at"]),
                    "enforcer_id": v["enforcer_id"],
                    "args": orjson.loads(canonical_json(v["args"])),
                }
            )
    out.sort(key=lambda d: (d["evaluated_at"], d["partition"], d["offset"]))
    return out, control


def sqlite_url(directory: Path) -> str:
    return f"sqlite:///{directory / 'log.db'}"
