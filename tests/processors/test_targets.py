"""Targets never mix (docs/lifecycle.md, 'Targets'): an enforcer refuses a partition that
another target's enforcer decided, before deciding anything in it; and one topic prefix
per environment isolates two environments on one log, each with its own enforcers."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest

from ordinance.processors.controller_loop import run_controller
from ordinance.processors.enforcer import Enforcer, TargetConflictError
from ordinance.processors.policy_log import publish_bundle
from ordinance.streams import open_log
from ordinance.streams.serde import Decoded, Serde
from ordinance.streams.topics import AGENT_DECISIONS, ensure_topics
from tests.processors.test_controller import BUNDLE_ID, FILES
from tests.processors.test_rollout import AGENTS, CANDIDATE, CANDIDATE_FILES, T0, _send


def _decisions(url: str, prefix: str) -> list[tuple[str, dict[str, Any]]]:
    serde = Serde()
    with open_log(url) as log:
        topic = ensure_topics(log, prefix)[AGENT_DECISIONS].name
        out = []
        for record in log.read_to_end(topic):
            decoded = serde.decode_record(record)
            assert isinstance(decoded, Decoded)
            out.append((decoded.name, decoded.value))
    return out


def test_an_enforcer_of_another_target_refuses_before_deciding(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'log.db'}"
    with open_log(url) as log:
        publish_bundle(log, FILES, BUNDLE_ID, actor="test", clock=lambda: T0)
        publish_bundle(
            log, CANDIDATE_FILES, CANDIDATE, actor="test", target="staging", clock=lambda: T0
        )
        run_controller(log, once=True, clock=lambda: T0)
    _send(url, "prod", 1)
    with open_log(url) as log:
        Enforcer(log, clock=lambda: T0 + 600).run(until_idle=True, idle_s=1.0)
    before = [d for name, d in _decisions(url, "ordinance.") if name == "Decision"]
    assert len(before) == len(AGENTS)

    _send(url, "staging", 2)
    with open_log(url) as log, pytest.raises(TargetConflictError, match="'default'"):
        Enforcer(log, target="staging", clock=lambda: T0 + 600).run(until_idle=True, idle_s=1.0)
    after = [(name, d) for name, d in _decisions(url, "ordinance.")]
    decided = [d for name, d in after if name == "Decision"]
    assert decided == before  # staging decided nothing, in any partition
    staging_markers = [d for n, d in after if n == "EnforcerTakeover" and d["target"] == "staging"]
    assert len(staging_markers) == 1  # it stopped at the first partition it took over


def test_one_prefix_per_environment_isolates_two_environments_on_one_log(log_url: str) -> None:
    """prod and staging on one log, two enforcers each: every decision of an environment
    is made with its own bundle, and each environment decides each request once."""
    url = log_url
    bundles = {"prod.": (FILES, BUNDLE_ID), "staging.": (CANDIDATE_FILES, CANDIDATE)}
    with open_log(url) as log:
        for prefix, (files, bundle_id) in bundles.items():
            publish_bundle(log, files, bundle_id, actor="test", prefix=prefix, clock=lambda: T0)
            run_controller(log, once=True, prefix=prefix, clock=lambda: T0)
    for prefix in bundles:
        _send(url, "r", 1, prefix=prefix)
    stop = threading.Event()

    def enforce(prefix: str, n: int) -> None:
        with open_log(url) as log:
            Enforcer(
                log,
                enforcer_id=f"{prefix}{n}",
                prefix=prefix,
                group=f"{prefix}enforcer",
                clock=lambda: T0 + 600,
            ).run(stop=stop)

    threads = [
        threading.Thread(target=enforce, args=(prefix, n), daemon=True)
        for prefix in bundles
        for n in range(2)
    ]
    for thread in threads:
        thread.start()
    try:
        for prefix in bundles:
            _wait_for(url, prefix, len(AGENTS))
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=30)
    for prefix, (_files, bundle_id) in bundles.items():
        decided = [d for name, d in _decisions(url, prefix) if name == "Decision"]
        assert sorted(d["request_id"] for d in decided) == sorted(f"r-{a}" for a in AGENTS)
        assert {d["bundle_id"] for d in decided} == {bundle_id}
        assert {d["enforcer_id"][: len(prefix)] for d in decided} == {prefix}


def _wait_for(url: str, prefix: str, count: int, timeout_s: float = 60.0) -> None:
    import time

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if sum(name == "Decision" for name, _ in _decisions(url, prefix)) >= count:
            return
        time.sleep(0.2)
    raise AssertionError(f"{prefix}: fewer than {count} decisions in {timeout_s}s")
