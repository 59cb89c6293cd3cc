"""What-if reports exactly the decisions a direct per-request evaluation says change:
on the recorded demo against a stricter candidate, and as a property over random traffic
and random candidate policies."""

from __future__ import annotations

import datetime as dt
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ordinance.commands.demo_pipeline import SWAP_COUNTRY, stricter
from ordinance.policy.bundle import compile_bundle
from ordinance.replay.source import open_source
from ordinance.replay.times import Window
from ordinance.replay.whatif import whatif
from tests.policy.helpers import compile_texts, policy

from .conftest import Recorded
from .traffic import direct_changes, record_traffic

SCHEMA = """
agent: {team: string}
tools:
  pay: {args: {amount: int, country: string}}
  read: {args: {path: string}}
settings: {default_effect: DEFAULT, combining: deny-overrides}
"""

RECORDED_POLICY = policy(
    """
    - id: small
      actions: [pay]
      effect: allow
      when: action.args.amount <= 100
    - id: large
      actions: [pay]
      effect: require_approval
      when: action.args.amount > 100
    - id: budget
      actions: [pay]
      effect: deny
      when: window.sum(action.args.amount, "1h") + action.args.amount > 400
    - id: reads
      effect: allow
      actions: [read]
      when: "true"
    """,
    "{actions: [pay, read]}",
)


def test_whatif_of_the_demo_against_a_stricter_candidate(recorded: Recorded) -> None:
    candidate = stricter(recorded.files)
    # Stricter still: a budget a tenth of the recorded one, so window state matters.
    candidate["payments.yaml"] = candidate["payments.yaml"].replace("> 50000", "> 5000")
    ruleset = compile_bundle(candidate)
    source, log = open_source(recorded.url, None)
    assert log is not None
    with log:
        report = whatif(source, ruleset)
        expected, evaluated = direct_changes(source, ruleset)
    assert {c.request_id for c in report.changes} == expected
    # Every outcome but the impersonation attempts, which identity denied before any
    # bundle ran: whatif skips them, whatever the candidate says.
    judged = [o for o in recorded.run.outcomes if o.code != "identity_mismatch"]
    assert report.evaluated == evaluated == len(judged)
    assert any("daily-budget" in c.rules_key for c in report.changes)
    assert any(
        c.request["action"]["args"].get("country") == SWAP_COUNTRY and c.old_effect == "allow"
        for c in report.changes
    )
    assert all(c.new_effect == "deny" for c in report.changes)  # stricter only denies more


_RULE_TEMPLATES = [
    "action.args.amount > {n}",
    "action.args.amount <= {n}",
    'action.args.country in ["{c}"]',
    'window.sum(action.args.amount, "1h") + action.args.amount > {n}',
    'window.count("30m") > {k}',
    "true",
]


@st.composite
def candidates(draw: st.DrawFn) -> Any:
    rules = []
    for i in range(draw(st.integers(1, 4))):
        template = draw(st.sampled_from(_RULE_TEMPLATES))
        condition = template.format(
            n=draw(st.integers(0, 500)),
            k=draw(st.integers(0, 5)),
            c=draw(st.sampled_from(["DE", "RU"])),
        )
        effect = draw(st.sampled_from(["allow", "deny", "require_approval"]))
        rules.append(f"- id: r{i}\n  effect: {effect}\n  actions: [pay]\n  when: '{condition}'\n")
    rules.append(
        f"- id: reads\n  effect: {draw(st.sampled_from(['allow', 'deny']))}\n  actions: [read]\n  when: 'true'\n"
    )
    default = draw(st.sampled_from(["allow", "deny"]))
    return compile_texts(
        policy("".join(rules), "{actions: [pay, read]}"), schema=SCHEMA.replace("DEFAULT", default)
    )


_RECORDED = compile_texts(RECORDED_POLICY, schema=SCHEMA.replace("DEFAULT", "deny"))
_T0 = dt.datetime(2026, 3, 1, tzinfo=dt.UTC)


@st.composite
def traffic(draw: st.DrawFn) -> list[tuple[dict[str, Any], dt.datetime]]:
    at = _T0
    out = []
    for _ in range(draw(st.integers(1, 40))):
        at += dt.timedelta(seconds=draw(st.integers(0, 1200)))
        agent = {"id": draw(st.sampled_from(["a1", "a2", "a3"])), "roles": [], "team": "t"}
        if draw(st.booleans()):
            action = {
                "tool": "pay",
                "args": {
                    "amount": draw(st.integers(0, 300)),
                    "country": draw(st.sampled_from(["DE", "RU"])),
                },
            }
        else:
            action = {
                "tool": draw(st.sampled_from(["read", "READ", "shell"])),
                "args": {"path": "/x"},
            }
        out.append(({"agent": agent, "action": action}, at))
    return out


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(requests=traffic(), candidate=candidates())
def test_whatif_agrees_with_direct_evaluation(
    requests: list[tuple[dict[str, Any], dt.datetime]], candidate: Any
) -> None:
    source = record_traffic(_RECORDED, requests)
    report = whatif(source, candidate)
    expected, evaluated = direct_changes(source, candidate)
    assert report.evaluated == evaluated == len(requests)
    assert {c.request_id for c in report.changes} == expected
    assert report.unchanged + len(report.changes) == evaluated


def test_whatif_window_and_agent_select_by_event_time(recorded: Recorded) -> None:
    ruleset = compile_bundle(stricter(recorded.files))
    decisions = [d.value for _r, d in recorded.records("agent.decisions") if d.name == "Decision"]
    times = sorted(d["event_time"] for d in decisions)
    start, end = times[len(times) // 4], times[3 * len(times) // 4]
    chosen = {
        d["request_id"]
        for d in decisions
        if start <= d["event_time"] < end and d["agent_id"] == "billing-bot-1"
    }
    source, log = open_source(recorded.url, None)
    assert log is not None
    with log:
        report = whatif(source, ruleset, window=Window(start, end), agents=["billing-bot-1"])
        expected, _ = direct_changes(source, ruleset)
    assert report.evaluated == len(chosen) > 0
    assert {c.request_id for c in report.changes} == expected & chosen
