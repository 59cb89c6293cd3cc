"""The governed lifecycle end to end, as its users drive it (issue 13): registered, signing
principals; publish from Git; review; two approvals; stage; a 10 % canary; enforce; an
anti-rollback refusal; a rollback at one offset — every decision naming its arm and
bundle, and `policy history` showing the whole trail with actors, signers and bypasses."""

from __future__ import annotations

import datetime as dt
import shutil
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from ordinance.identity.records import identity_datum, key_entry, signed_identity_record
from ordinance.identity.signing import PrincipalSigner
from ordinance.identity.trust import TrustRoot
from ordinance.keys import Signer
from ordinance.policy.bundle import compile_bundle, read_bundle_dir
from ordinance.processors.controller import REVISION_ROLLBACK
from ordinance.processors.rollout import in_canary
from ordinance.replay.source import open_source
from ordinance.replay.verify import verify
from ordinance.streams import Record, open_log
from ordinance.streams.serde import Decoded, Serde
from ordinance.streams.topics import AGENT_ACTIONS, AGENT_DECISIONS, IDENTITY_REGISTRY, topic_specs
from ordinance.wire import request_to_wire
from tests.commands.test_publish_git import git, make_repo
from tests.processors.running import enforcer_thread
from tests.processors.test_controller_auth import Setup
from tests.processors.test_rollout import CANDIDATE_FILES

ON_MEMORY_LOG = True  # also on memory:// (tests/processors/conftest.py)

SPECS = topic_specs()
SERDE = Serde()
AGENTS = [f"agent-{n}" for n in range(40)]


def _register_agents(s: Setup) -> dict[str, PrincipalSigner]:
    """The fleet in one produce, signed by the trust-file admin (as `identity add` would)."""
    admin = PrincipalSigner("root-admin", Signer.from_file(s.key("root-admin")))
    since = dt.datetime.now(dt.UTC) - dt.timedelta(hours=1)
    keys = {a: PrincipalSigner(a, Signer.from_file(s.key(a))) for a in AGENTS}
    records = [
        signed_identity_record(
            SERDE,
            identity_datum(
                a,
                kind="agent",
                version=1,
                at=since,
                keys=[key_entry(keys[a].signer.key.public_key(), since)],
                roles=["billing"],
                attributes={"team": "finance"},
            ),
            admin,
        )
        for a in AGENTS
    ]
    with open_log(s.log) as log:
        log.produce(SPECS[IDENTITY_REGISTRY].name, records)
    return keys


def _send(s: Setup, keys: dict[str, PrincipalSigner], phase: str) -> None:
    now = dt.datetime.now(dt.UTC)
    records = []
    for agent, signer in keys.items():
        request = {
            "agent": {"id": agent},
            "action": {
                "tool": "payments.transfer",
                "args": {"amount": "50", "currency": "EUR", "country": "NL", "iban": "X"},
            },
        }
        datum = request_to_wire(
            request, request_id=f"{phase}-{agent}", event_time=now, client_id="t"
        )
        value = SERDE.encode("ActionRequest", datum)
        records.append(
            Record(agent.encode(), value, signer.headers(value), int(time.time() * 1000))
        )
    with open_log(s.log) as log:
        log.produce(SPECS[AGENT_ACTIONS].name, records)


def _decide(s: Setup, phase: str) -> None:
    """An enforcer runs until every intent of ``phase`` has its decision."""
    wanted = {f"{phase}-{a}" for a in AGENTS}
    with enforcer_thread(s.log, trust=TrustRoot.from_file(s.trust)) as running:
        deadline = time.monotonic() + 60
        while not wanted <= _decisions(s)[0].keys():
            running.check()
            assert time.monotonic() < deadline, "not every intent was decided"
            time.sleep(0.5)


def _decisions(s: Setup) -> tuple[dict[str, dict[str, Any]], list[tuple[int, str]]]:
    by_id: dict[str, dict[str, Any]] = {}
    records: list[tuple[int, str]] = []
    with open_log(s.log) as log:
        for record in log.read_to_end(SPECS[AGENT_DECISIONS].name):
            decoded = SERDE.decode_record(record)
            assert isinstance(decoded, Decoded)
            records.append((record.partition, decoded.name))
            if decoded.name == "Decision":
                by_id[decoded.value["request_id"]] = decoded.value
    return by_id, records


def _lifecycle(s: Setup, action: str, bundle: str, actor: str, *extra: str) -> None:
    """``ordinance policy ACTION`` (the same events as ``lifecycle ACTION``)."""
    code, out = s("policy", action, bundle, "--log", s.log, "--actor", actor,
                  "--key", str(s.key(actor)), *extra)  # fmt: skip
    assert code == 0 and out["ok"], out


@pytest.fixture
def governed(
    tmp_path: Path,
    log_url: str,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> Setup:
    """A trust file and the registry's people: alice authors, bob and dora approve, ctl
    is the controller that signs policy.active."""
    for name in ("ORDINANCE_KEY", "ORDINANCE_TRUST", "ORDINANCE_CONTROLLER_KEY"):
        monkeypatch.delenv(name, raising=False)
    s = Setup(tmp_path, log_url, capsys)
    code, out = s("identity", "trust-init", "--trust", str(s.trust), "--principal",
                  "root-admin", "--key", str(s.key("root-admin")))  # fmt: skip
    assert code == 0, out
    s.add("alice", "policy-author")
    s.add("bob", "policy-approver")
    s.add("dora", "policy-approver")
    s.add("ctl", "policy-controller", kind="service")
    return s


def _publish(s: Setup, directory: Path) -> None:
    code, out = s("publish", str(directory), "--log", s.log, "--actor", "alice",
                  "--key", str(s.key("alice")), "--no-enforce", "--skip-analysis",
                  "--skip-whatif")  # fmt: skip
    assert code == 0, out


def test_the_whole_lifecycle_from_git_to_rollback(tmp_path: Path, governed: Setup) -> None:
    s = governed
    keys = _register_agents(s)
    repo = make_repo(tmp_path)
    policies = repo / "policies"
    stable = compile_bundle(read_bundle_dir(policies)).bundle_id

    # v1: alice publishes from Git; the examples are high impact: two approvers enforce it
    _publish(s, policies)
    for approver in ("bob", "dora"):
        _lifecycle(s, "approve", stable, approver)
    _lifecycle(s, "enforce", stable, "bob")

    # v2: a candidate committed and published; reviewed, approved twice, staged, canaried
    (policies / "canary-candidate.yaml").write_text(CANDIDATE_FILES["canary-candidate.yaml"])
    git(repo, "add", ".")
    git(repo, "commit", "-q", "-m", "candidate: no transfers to NL")
    candidate = compile_bundle(read_bundle_dir(policies)).bundle_id
    _publish(s, policies)
    _lifecycle(s, "review", candidate, "bob", "--reason", "NL is out of scope: agreed")
    for approver in ("bob", "dora"):
        _lifecycle(s, "approve", candidate, approver)
    _lifecycle(s, "stage", candidate, "dora")
    _lifecycle(s, "canary", candidate, "bob", "--percent", "10")
    assert s.controller()["rejected"] == 0

    _send(s, keys, "canary")
    _decide(s, "canary")
    decided, _ = _decisions(s)
    canary = {a for a in AGENTS if in_canary(candidate, a, 10)}
    assert canary and canary != set(AGENTS)  # both arms exercised
    for agent in AGENTS:
        d = decided[f"canary-{agent}"]
        expected = (
            ("canary", candidate, "deny") if agent in canary else ("control", stable, "allow")
        )
        assert (d["arm"], d["bundle_id"], d["effect"]) == expected, agent
        assert d["key_id"] == keys[agent].key_id  # judged as the registry's agent

    # enforce v2; then someone enforces v1 again: refused (revision_rollback)
    _lifecycle(s, "enforce", candidate, "dora")
    _lifecycle(s, "enforce", stable, "bob")
    # and rolls back properly: v1 returns at one offset per partition
    _lifecycle(s, "rollback", candidate, "bob", "--to", stable)
    report = s.controller()
    assert report["rejected"] == 1
    _send(s, keys, "rolled-back")
    _decide(s, "rolled-back")
    decided, records = _decisions(s)
    for agent in AGENTS:
        d = decided[f"rolled-back-{agent}"]
        assert (d["arm"], d["bundle_id"], d["effect"]) == (None, stable, "allow")
    # the enforcer swapped each partition to v2 and back to v1 between two runs: the
    # swaps of a partition are single records between decisions
    swaps = Counter(p for p, name in records if name == "RulesetSwap")
    assert set(swaps.values()) == {2}  # the canary, then the rollback (v2 enforced unseen)

    # the trail, with actors, signers, bypasses and the refusal's code
    code, out = s("policy", "history", "--log", s.log)
    assert code == 0
    trail = [(e["event"], e["actor"], e["outcome"], e["rejected_code"]) for e in out["events"]]
    assert trail == [
        ("published", "alice", "accepted", None),
        ("approved", "bob", "accepted", None),
        ("approved", "dora", "accepted", None),
        ("enforced", "bob", "accepted", None),
        ("published", "alice", "accepted", None),
        ("reviewed", "bob", "accepted", None),
        ("approved", "bob", "accepted", None),
        ("approved", "dora", "accepted", None),
        ("staged", "dora", "accepted", None),
        ("canary", "bob", "accepted", None),
        ("enforced", "dora", "accepted", None),
        ("enforced", "bob", "rejected", REVISION_ROLLBACK),
        ("rolled_back", "bob", "accepted", None),
    ]
    assert all(e["signer"] == e["actor"] for e in out["events"])
    published = [e for e in out["events"] if e["event"] == "published"]
    assert [e["git"]["subject"] for e in published] == [
        "payments: tighten limits",
        "candidate: no transfers to NL",
    ]
    assert all(e["bypasses"] == ["--skip-analysis", "--skip-whatif"] for e in published)

    source, log = open_source(s.log, None)
    assert log is not None
    with log:
        verified = verify(source)
    assert verified.ok, [f.to_json() for f in verified.findings]
    shutil.rmtree(repo)
