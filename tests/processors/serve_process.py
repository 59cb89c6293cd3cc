"""What tests of a running ``ordinance serve`` process read back: the request ids its
enforcer decided, and a service config file for it (`tests.commands.test_service_signals`
starts the process)."""

from __future__ import annotations

import time
from collections.abc import Collection
from pathlib import Path

from ordinance.streams import open_log
from ordinance.streams.serde import Decoded, Serde
from ordinance.streams.topics import AGENT_DECISIONS, topic_specs

SPECS = topic_specs()


def decision_ids(url: str) -> list[str]:
    """The request id of every Decision on the log, repeats included (a twice-decided
    action shows twice)."""
    serde = Serde()
    with open_log(url) as log:
        return [
            d.value["request_id"]
            for r in log.read_to_end(SPECS[AGENT_DECISIONS].name)
            if isinstance(d := serde.decode_record(r), Decoded) and d.name == "Decision"
        ]


def wait_decided(url: str, request_ids: Collection[str], timeout: float) -> list[str]:
    """`decision_ids` once every one of ``request_ids`` is among them (or the deadline
    passed: the caller's assertion then names what is missing)."""
    deadline = time.monotonic() + timeout
    while not set(request_ids) <= set(decided := decision_ids(url)):
        if time.monotonic() > deadline:
            break
        time.sleep(0.2)
    return decided


def serve_config(directory: Path, url: str, extra: str = "") -> Path:
    """A service config for ``serve`` on ``url`` with ``/healthz`` on a free port; no clock
    skew or dedupe horizon, since test actions are dated 2026. ``extra``: more ``serve:``
    keys, each line indented by two spaces."""
    path = directory / "ordinance.yaml"
    path.write_text(
        f"log: {url}\nserve:\n  http: 127.0.0.1:0\n  max_clock_skew: off\n"
        f"  dedupe_horizon: off\n{extra}"
    )
    return path
