"""The demo's trip through the log: intents in, decisions out, same partition, fail-closed
on records that do not decode."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ordinance.cli import main
from ordinance.commands.demo_log import UNDECODABLE, run_session
from ordinance.policy.loader import load_ruleset
from ordinance.streams import Record, open_log
from ordinance.streams.serde import Decoded, Serde
from ordinance.streams.topics import ensure_topics

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "policies"
BILLING = {"id": "billing-bot", "roles": ["billing"], "team": "finance"}
T0 = 1_767_225_600.0


def _transfer(amount: str, country: str = "DE") -> dict[str, object]:
    args = {"amount": amount, "currency": "EUR", "country": country, "iban": "DE00"}
    return {"agent": BILLING, "action": {"tool": "payments.transfer", "args": args}}


def test_decisions_come_back_on_the_actions_partition(tmp_path: Path) -> None:
    ruleset = load_ruleset(EXAMPLES)
    url = f"sqlite:///{tmp_path / 'log.db'}"
    session = [
        (T0, _transfer("50")),
        (T0 + 60, _transfer("50", "KP")),
        (T0 + 120, _transfer("20000")),
    ]
    run = run_session(ruleset, session, url)
    effects = [run.decisions[f"demo-{i:03d}"]["effect"] for i in range(3)]
    assert effects == ["allow", "deny", "require_approval"]
    assert run.decisions["demo-001"]["rule_ids"] == ["payments-guardrails/block-sanctioned"]
    assert all(d["bundle_id"] == ruleset.bundle_id for d in run.decisions.values())
    with open_log(url) as log:
        action_parts = {r.offset: r.partition for r in log.read_to_end(run.actions_topic)}
        serde = Serde()
        for record in log.read_to_end(run.decisions_topic):
            decoded = serde.decode_record(record)
            assert isinstance(decoded, Decoded)
            assert record.partition == action_parts[decoded.value["action_offset"]]


def test_a_record_that_does_not_decode_is_denied_not_skipped(tmp_path: Path) -> None:
    ruleset = load_ruleset(EXAMPLES)
    url = f"sqlite:///{tmp_path / 'log.db'}"
    with open_log(url) as log:
        specs = ensure_topics(log)
        log.produce(specs["agent.actions"].name, [Record(b"billing-bot", b"\xc3\x01garbage")])
    run = run_session(ruleset, [(T0, _transfer("50"))], url)
    bad = [d for rid, d in run.decisions.items() if rid.startswith(UNDECODABLE)]
    assert len(bad) == 1
    assert (bad[0]["effect"], bad[0]["code"]) == ("deny", UNDECODABLE)
    assert run.decisions["demo-000"]["effect"] == "allow"


@pytest.mark.kafka
def test_demo_runs_through_a_local_kafka_broker(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["demo", "--kafka", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["log"]["url"].startswith("kafka://127.0.0.1:")
    assert all(row["decision"] is not None for row in report["session"])
    assert {row["decision"]["effect"] for row in report["session"]} == {
        "allow",
        "deny",
        "require_approval",
    }
