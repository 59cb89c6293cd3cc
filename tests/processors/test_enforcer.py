"""The enforcer on the embedded log: one decision per request id, bundle and policy offset
named, swap at a single offset, state (dedupe, budgets) rebuilt from the log on restart."""

from __future__ import annotations

import datetime as dt
import shutil
from pathlib import Path
from typing import Any

import pytest

from ordinance.identity.signing import PrincipalSigner
from ordinance.policy.bundle import compile_bundle, read_bundle_dir
from ordinance.processors import enforcer as enforcer_module
from ordinance.processors.controller_loop import run_controller
from ordinance.processors.enforcer import Enforcer
from ordinance.processors.enforcer_state import INTERNAL_ERROR, NO_RULESET, UNDECODABLE
from ordinance.processors.policy_log import publish_bundle
from ordinance.replay.source import open_source
from ordinance.replay.verify import verify
from ordinance.streams import Record, open_log
from ordinance.streams.serde import Decoded, Serde
from ordinance.streams.topics import AGENT_ACTIONS, AGENT_DECISIONS, ensure_topics, topic_specs
from ordinance.wire import request_to_wire

from .caught_up import run_caught_up
from .shared_log import helper_log

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "policies"
BILLING = {"id": "billing-bot", "roles": ["billing"], "team": "finance"}
T0 = 1_767_225_600.0
SPECS = topic_specs()


def transfer(request_id: str, amount: str, minute: int, country: str = "DE") -> dict[str, Any]:
    request = {
        "agent": BILLING,
        "action": {
            "tool": "payments.transfer",
            "args": {"amount": amount, "currency": "EUR", "country": country, "iban": "X"},
        },
    }
    return request_to_wire(
        request,
        request_id=request_id,
        event_time=dt.datetime.fromtimestamp(T0 + 60 * minute, dt.UTC),
        client_id="test",
    )


def send(url: str, *data: dict[str, Any] | bytes) -> None:
    serde = Serde()
    with helper_log(url) as log:
        ensure_topics(log)
        records = [
            Record(
                b"billing-bot",
                d if isinstance(d, bytes) else serde.encode("ActionRequest", d),
                (),
                int(T0 * 1000),
            )
            for d in data
        ]
        log.produce(SPECS[AGENT_ACTIONS].name, records)


def decisions_log(url: str) -> list[tuple[int, str, dict[str, Any]]]:
    """The decisions partition that holds the billing agent's actions, in offset order."""
    serde = Serde()
    with helper_log(url) as log:
        out: dict[int, list[tuple[int, str, dict[str, Any]]]] = {}
        for record in log.read_to_end(SPECS[AGENT_DECISIONS].name):
            decoded = serde.decode_record(record)
            assert isinstance(decoded, Decoded)
            out.setdefault(record.partition, []).append(
                (record.offset, decoded.name, decoded.value)
            )
    [partition] = [p for p, rows in out.items() if any(n == "Decision" for _, n, _ in rows)]
    return out[partition]


def enforce(url: str) -> None:
    with open_log(url) as log:
        run_caught_up(Enforcer(log, clock=lambda: T0))


def publish(url: str, directory: Path, controller: PrincipalSigner | None = None) -> str:
    return publish_at(url, directory, controller)[0]


def publish_at(
    url: str, directory: Path, controller: PrincipalSigner | None = None
) -> tuple[str, int]:
    """Publish and enforce a bundle; (bundle id, offset of the enforced event). With
    ``controller`` the controller signs policy.active (enforcers with a trust root
    believe nothing else)."""
    files = read_bundle_dir(directory)
    bundle_id = compile_bundle(files).bundle_id
    with helper_log(url) as log:
        published = publish_bundle(log, files, bundle_id, actor="test", clock=lambda: T0)
        run_controller(log, once=True, clock=lambda: T0, signer=controller)
    assert published.enforced_offset is not None
    return bundle_id, published.enforced_offset


def test_fail_closed_before_any_bundle(log_url: str) -> None:
    url = log_url
    send(url, transfer("r1", "50", 0))
    enforce(url)
    [(_, _, d)] = [x for x in decisions_log(url) if x[1] == "Decision"]
    assert (d["effect"], d["code"]) == ("deny", NO_RULESET)


def test_an_enforcer_bug_on_one_action_is_an_internal_error_deny(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The runtime's guard: ``decide`` raising (a bug, simulated) on r2 makes r2 a deny
    ``internal_error`` naming it; r1 and r3 around it are decided as always, and a re-send
    of r2 is not decided a second time. (The runtime's behaviour, not the log's: the
    embedded log only.)"""
    url = f"sqlite:///{tmp_path / 'log.db'}"
    publish_at(url, EXAMPLES)
    send(url, transfer("r1", "50", 0), transfer("r2", "50", 1), transfer("r3", "50", 2))
    real = enforcer_module.decide

    def buggy(state: Any, ruleset: Any, decoded: Any, **kw: Any) -> dict[str, Any] | None:
        if isinstance(decoded, Decoded) and decoded.value["request_id"] == "r2":
            raise KeyError("simulated bug")
        return real(state, ruleset, decoded, **kw)

    monkeypatch.setattr(enforcer_module, "decide", buggy)
    with open_log(url) as log:
        report = run_caught_up(Enforcer(log, clock=lambda: T0))
    assert report.internal_errors == 1 and report.decided == 2
    send(url, transfer("r2", "50", 1))  # re-sent: r2 already has its (deny) decision
    enforce(url)
    decisions = [d for _, n, d in decisions_log(url) if n == "Decision"]
    assert [d["request_id"] for d in decisions] == ["r1", "r2", "r3"]
    r2 = decisions[1]
    assert (r2["effect"], r2["code"]) == ("deny", INTERNAL_ERROR)
    assert "KeyError: 'simulated bug'" in r2["detail"]
    assert decisions[0]["effect"] == decisions[2]["effect"] == "allow"
    # Policy alone does not produce that deny: replay says so, on r2 only.
    source, log = open_source(url, None)
    assert log is not None
    with log:
        report = verify(source)
    assert [(f.kind, f.request_id) for f in report.findings] == [("decision_mismatch", "r2")]


def test_only_the_bundles_in_force_stay_compiled(tmp_path: Path) -> None:
    """A long-running enforcer sees bundle after bundle published: it keeps compiled only
    what is in force, not every bundle it ever saw. (The enforcer's, not the log's.)"""
    url = f"sqlite:///{tmp_path / 'log.db'}"
    old = publish(url, EXAMPLES)
    send(url, transfer("r1", "50", 0))
    with open_log(url) as log:
        enforcer = Enforcer(log, clock=lambda: T0)
        run_caught_up(enforcer)
        assert list(enforcer._compiled) == [old]
        stricter = tmp_path / "stricter"
        shutil.copytree(EXAMPLES, stricter)
        payments = stricter / "payments.yaml"
        payments.write_text(payments.read_text().replace("amount > 10000", "amount > 9500", 1))
        new = publish(url, stricter)
        send(url, transfer("r2", "50", 1))
        run_caught_up(enforcer)  # the same object, as over months of running
        assert list(enforcer._compiled) == [new]


def test_round_trip_dedupe_undecodable_swap_and_restart(log_url: str, tmp_path: Path) -> None:
    url = log_url
    old, old_offset = publish_at(url, EXAMPLES)
    send(
        url,
        transfer("r1", "9000", 0),
        transfer("r2", "50", 1, country="KP"),
        transfer("r1", "9000", 2),  # re-sent: same request id, must not be decided or counted twice
        b"\xc3\x01not avro",
        transfer("r3", "20000", 3),
        transfer("r4", "9000", 4),
    )
    with open_log(url) as log:
        enforcer = Enforcer(log, clock=lambda: T0)
        run_caught_up(enforcer)
    # Every record the enforcer wrote took the generated encoder's fast path (an Effect
    # member where a plain str belongs once sent every decision through fastavro).
    assert enforcer.serde.slow_encodes == 0
    log1 = decisions_log(url)
    decisions = {d["request_id"]: d for _, n, d in log1 if n == "Decision"}
    assert [d["request_id"] for _, n, d in log1 if n == "Decision"].count("r1") == 1
    assert decisions["r1"]["effect"] == "allow" and decisions["r1"]["bundle_id"] == old
    assert decisions["r2"]["rule_ids"] == ["payments-guardrails/block-sanctioned"]
    assert decisions["r3"]["effect"] == "require_approval"
    assert decisions["r4"]["effect"] == "allow"
    [bad] = [d for rid, d in decisions.items() if rid.startswith(UNDECODABLE)]
    assert (bad["effect"], bad["code"]) == ("deny", UNDECODABLE)
    assert all(d["policy_offset"] == old_offset for d in decisions.values())  # the enforced event
    names = [n for _, n, _ in log1]
    assert names.index("EnforcerTakeover") < names.index("RulesetSwap") < names.index("Decision")

    # A stricter bundle arrives: the swap is one record, between two decisions.
    stricter = tmp_path / "stricter"
    shutil.copytree(EXAMPLES, stricter)
    payments = stricter / "payments.yaml"
    payments.write_text(payments.read_text().replace("amount > 10000", "amount > 9500", 1))
    new, new_offset = publish_at(url, stricter)
    assert new != old
    # 18000 was allowed before the restart; the budget (50k / 24h) must still count it
    send(url, transfer("r5", "9800", 5), *(transfer(f"r{i}", "9400", i) for i in (6, 7, 8, 9)))
    enforce(url)  # a new enforcer instance: takeover, state rebuilt from the decisions log
    log2 = decisions_log(url)
    swap_offsets = [o for o, n, d in log2 if n == "RulesetSwap" and d["bundle_id"] == new]
    assert len(swap_offsets) == 1
    for offset, name, d in log2:
        if name == "Decision":
            assert d["bundle_id"] == (new if offset > swap_offsets[0] else old), d["request_id"]
    after = {d["request_id"]: d for _, n, d in log2 if n == "Decision"}
    assert after["r5"]["effect"] == "require_approval"  # 9800 > 9500 under the new bundle
    assert after["r5"]["policy_offset"] == new_offset
    assert [after[f"r{i}"]["effect"] for i in (6, 7, 8, 9)] == ["allow", "allow", "allow", "deny"]
    assert after["r9"]["rule_ids"] == ["payments-guardrails/daily-budget"]
    assert len([1 for _, n, _ in log2 if n == "EnforcerTakeover"]) == 2
    assert sum(1 for _, n, d in log2 if n == "Decision" and d["request_id"] == "r1") == 1
