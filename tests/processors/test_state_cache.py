"""The RocksDB state cache: a restart folds only the tail, and ends in the same state."""

from __future__ import annotations

from pathlib import Path

from ordinance.processors.enforcer import Enforcer
from ordinance.processors.state_cache import StateCache
from ordinance.streams import open_log
from ordinance.streams.topics import AGENT_DECISIONS, topic_specs

from .test_enforcer import EXAMPLES, T0, decisions_log, publish, send, transfer


def _enforce(url: str, state_dir: Path | None) -> Enforcer:
    with open_log(url) as log:
        enforcer = Enforcer(log, clock=lambda: T0, state_dir=state_dir)
        enforcer.run(until_idle=True, idle_s=1.0)
    return enforcer


def test_restart_folds_only_the_tail_and_keeps_budgets(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'log.db'}"
    cache = tmp_path / "state"
    publish(url, EXAMPLES)
    send(url, *(transfer(f"a{i}", "9400", i) for i in range(4)))  # 37,600 of the 50k budget
    first = _enforce(url, cache)
    assert first.report.decided == 4
    send(url, transfer("a4", "9400", 10), transfer("a5", "9400", 11))
    second = _enforce(url, cache)
    # Without the cache a takeover refolds its whole partition; with it each takeover
    # folds only what follows the snapshot: its own new marker.
    assert second.report.replayed == second.report.takeovers
    effects = {d["request_id"]: d["effect"] for _, n, d in decisions_log(url) if n == "Decision"}
    assert [effects[f"a{i}"] for i in range(6)] == ["allow"] * 5 + [
        "deny"
    ]  # the budget carried over

    third = _enforce(url, None)  # the same state, rebuilt from the whole log instead
    assert third.report.replayed > second.report.replayed


def test_a_cache_from_another_log_is_not_used(tmp_path: Path) -> None:
    cache = tmp_path / "state"
    url_a, url_b = f"sqlite:///{tmp_path / 'a.db'}", f"sqlite:///{tmp_path / 'b.db'}"
    for url in (url_a, url_b):
        publish(url, EXAMPLES)
    send(url_a, *(transfer(f"x{i}", "9400", i) for i in range(5)))
    _enforce(url_a, cache)
    send(url_b, transfer("y0", "9400", 0))
    _enforce(url_b, cache)  # b's partition is shorter than a's snapshot: refold from scratch
    [(_, _, d)] = [x for x in decisions_log(url_b) if x[1] == "Decision"]
    assert d["effect"] == "allow"  # a's 47,000 were not counted against b
    snapshot = StateCache(cache, topic_specs()[AGENT_DECISIONS].name)
    try:
        assert any(snapshot.load(p) is not None for p in range(4))
    finally:
        snapshot.close()
