"""replay verify over a recorded demo run: zero mismatches as recorded; an altered bundle
or counter input is reported on exactly the records it affects."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from ordinance.commands.demo_pipeline import SWAP_COUNTRY, stricter
from ordinance.replay.findings import VerifyReport
from ordinance.replay.source import open_source
from ordinance.replay.times import Window
from ordinance.replay.verify import verify

from .conftest import Recorded, rewrite


def _verify(url: str, **kwargs: object) -> VerifyReport:
    source, log = open_source(url, None)
    try:
        return verify(source, **kwargs)  # type: ignore[arg-type]
    finally:
        if log is not None:
            log.close()


def test_the_recorded_demo_replays_with_zero_mismatches(recorded: Recorded) -> None:
    report = _verify(recorded.url)
    decisions = [d for _r, d in recorded.records("agent.decisions") if d.name == "Decision"]
    swaps = [d for _r, d in recorded.records("agent.decisions") if d.name == "RulesetSwap"]
    assert report.findings == [] and report.bundle_problems == []
    assert report.decisions == len(decisions) == len(recorded.run.outcomes)
    # Both bundles decided something: the hot swap is inside what was replayed.
    assert {d.value["bundle_id"] for d in decisions} == {
        recorded.run.old_bundle,
        recorded.run.new_bundle,
    }
    assert {s.value["bundle_id"] for s in swaps} == {
        recorded.run.old_bundle,
        recorded.run.new_bundle,
    }


def test_a_window_and_an_agent_select_by_event_time_in_the_payload(recorded: Recorded) -> None:
    decisions = [d.value for _r, d in recorded.records("agent.decisions") if d.name == "Decision"]
    times = sorted(d["event_time"] for d in decisions)
    middle = times[len(times) // 2]
    report = _verify(recorded.url, window=Window(middle, None), agents=["billing-bot-1"])
    expected = [
        d for d in decisions if d["event_time"] >= middle and d["agent_id"] == "billing-bot-1"
    ]
    assert report.ok and report.decisions == len(expected) > 0


def _transfer_to_swap_country(request: dict[str, object]) -> bool:
    action = request["action"]
    assert isinstance(action, dict)
    return bool(
        action["tool"].lower() == "payments.transfer"
        and action["args"].get("country") == SWAP_COUNTRY
    )


def test_altering_a_stored_bundle_reports_exactly_the_decisions_it_changes(
    recorded: Recorded, tmp_path: Path
) -> None:
    db = recorded.copy(tmp_path)
    # The last copy: the controller rewrites a bundle's record at each approval, and the
    # latest is the one the table (a compacted topic) keeps.
    *_, (bundle_record, _) = [
        (r, d)
        for r, d in recorded.records("policy.active")
        if d.name == "PolicyBundle" and d.value["bundle_id"] == recorded.run.old_bundle
    ]
    altered = stricter(recorded.files)  # the old bundle's content, now also sanctioning RU

    def edit(datum: dict[str, object]) -> dict[str, object]:
        return {**datum, "files": [{"path": p, "content": c} for p, c in sorted(altered.items())]}

    rewrite(db, "policy.active", 0, bundle_record.offset, edit)
    report = _verify(f"sqlite:///{db}")

    actions = {(r.partition, r.offset): d.value for r, d in recorded.records("agent.actions")}
    expected = {
        (r.partition, r.offset)
        for r, d in recorded.records("agent.decisions")
        if d.name == "Decision"
        and d.value["bundle_id"] == recorded.run.old_bundle
        and _transfer_to_swap_country(actions[(r.partition, d.value["action_offset"])])
        and d.value["agent_id"].startswith("billing")
    }
    assert expected  # the demo sent transfers to RU before the swap
    assert {(f.partition, f.offset) for f in report.findings} == expected
    assert all(f.kind == "decision_mismatch" for f in report.findings)
    assert all(
        "sanctioned" in str(f.recomputed and f.recomputed["reasons"]) for f in report.findings
    )
    # Both said at bundle level: the content no longer hashes to its id, and the copy on
    # policy.changes (untouched here) disagrees with the one the enforcer compiled.
    assert {(p.bundle_id, p.kind) for p in report.bundle_problems} == {
        (recorded.run.old_bundle, "content_mismatch"),
        (recorded.run.old_bundle, "copies_differ"),
    }


def _allowed(recorded: Recorded, tool: str) -> list[tuple[int, int, dict[str, object]]]:
    return [
        (r.partition, r.offset, d.value)
        for r, d in recorded.records("agent.decisions")
        if d.name == "Decision" and d.value["effect"] == "allow" and d.value["tool"] == tool
    ]


def test_altering_a_counter_input_nothing_reads_reports_only_that_record(
    recorded: Recorded, tmp_path: Path
) -> None:
    db = recorded.copy(tmp_path)
    partition, offset, _ = _allowed(recorded, "fs.read")[0]

    def edit(datum: dict[str, object]) -> dict[str, object]:
        return {**datum, "args": {"path": "/workspace/elsewhere.md"}}

    rewrite(db, "agent.decisions", partition, offset, edit)
    [finding] = _verify(f"sqlite:///{db}").findings
    assert (finding.partition, finding.offset) == (partition, offset)
    assert set(finding.differences) == {"args"}


def test_altering_a_budget_counter_reports_it_and_every_later_decision_it_changes(
    recorded: Recorded, tmp_path: Path
) -> None:
    db = recorded.copy(tmp_path)
    partition, offset, first = _allowed(recorded, "payments.transfer")[0]
    agent = first["agent_id"]
    at = first["event_time"]
    assert isinstance(at, dt.datetime)

    def edit(datum: dict[str, object]) -> dict[str, object]:
        args = dict(datum["args"])  # type: ignore[call-overload]
        args["amount"] = 10**9  # far over the 50k daily budget
        return {**datum, "args": args}

    rewrite(db, "agent.decisions", partition, offset, edit)
    report = _verify(f"sqlite:///{db}")
    # Every later transfer of this agent within 24h now reads a sum over the budget: the
    # daily-budget rule matches, so its effect or its rule ids change.
    later = {
        (r.partition, r.offset)
        for r, d in recorded.records("agent.decisions")
        if d.name == "Decision"
        and r.partition == partition
        and r.offset > offset
        and d.value["agent_id"] == agent
        and d.value["tool"] == "payments.transfer"
        and d.value["event_time"] - at < dt.timedelta(hours=24)
    }
    assert later
    assert {(f.partition, f.offset) for f in report.findings} == {(partition, offset)} | later
    first_finding = next(f for f in report.findings if f.offset == offset)
    assert set(first_finding.differences) == {"args"}
    for finding in report.findings:
        if finding.offset != offset:
            assert "payments-guardrails/daily-budget" in finding.recomputed["rule_ids"]  # type: ignore[index]
            assert any(r["fn"] == "sum" and r["value"] >= 10**9 for r in finding.window_reads)


def test_an_altered_swap_record_is_a_swap_finding_and_its_decisions_name_another_offset(
    recorded: Recorded, tmp_path: Path
) -> None:
    db = recorded.copy(tmp_path)
    records = recorded.records("agent.decisions")
    swaps = [(r, d) for r, d in records if d.name == "RulesetSwap"]
    # The busiest partition's first swap (to the old bundle, enforced at policy offset 1).
    busiest = max(
        {r.partition for r, _ in swaps}, key=lambda p: sum(r.partition == p for r, _ in records)
    )
    first, second = [(r, d) for r, d in swaps if r.partition == busiest][:2]
    rewrite(db, "agent.decisions", busiest, first[0].offset, lambda s: {**s, "policy_offset": 0})
    report = _verify(f"sqlite:///{db}")
    between = {
        r.offset
        for r, d in records
        if r.partition == busiest
        and d.name == "Decision"
        and first[0].offset < r.offset < second[0].offset
    }
    assert between
    kinds = {(f.kind, f.offset) for f in report.findings}
    assert kinds == {("swap_mismatch", first[0].offset)} | {
        ("decision_mismatch", o) for o in between
    }
    for finding in report.findings:
        if finding.kind == "decision_mismatch":
            assert set(finding.differences) == {"policy_offset"}


def test_a_published_bundle_no_swap_used_is_nobodys_problem(
    recorded: Recorded, tmp_path: Path
) -> None:
    import functools

    from ordinance.processors.policy_log import publish_bundle
    from ordinance.replay.source import open_source as reopen
    from ordinance.streams import open_log

    db = recorded.copy(tmp_path)
    url = f"sqlite:///{db}"
    with open_log(url) as log:  # published, never enforced, and does not even compile
        publish_bundle(log, {"schema.yaml": "tools: ["}, "sha256:broken", actor="x", enforce=False)
    assert _verify(url).ok
    source, opened = reopen(url, None)
    assert opened is not None
    with opened:  # workers get every bundle compiled up front; only used ones count
        report = verify(source, jobs=2, reopen=functools.partial(reopen, url, None))
    assert report.ok and report.decisions > 0
