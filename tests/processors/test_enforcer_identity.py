"""Verified intents at the enforcer (issue 12), on both backends: with a trust root the
enforcer decides with the registry's roles and attributes, denies what its agent did not
sign with a valid key, and registry changes take effect at one decisions offset."""

from __future__ import annotations

import functools
import json
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from ordinance.cli import main
from ordinance.client import ClientDecision, SyncClient
from ordinance.identity.records import identity_datum, key_entry, signed_identity_record
from ordinance.identity.registry import BAD_SIGNATURE, IDENTITY_MISMATCH, KEY_NOT_VALID, UNSIGNED
from ordinance.identity.registry_log import load_registry
from ordinance.identity.signing import AGENT_KEY_ENV, KEY_HEADER, SIGNATURE_HEADER, PrincipalSigner
from ordinance.keys import Keyring, generate
from ordinance.policy.bundle import compile_bundle, read_bundle_dir
from ordinance.processors.audit.verify import verify_log
from ordinance.processors.controller_loop import run_controller
from ordinance.processors.enforcer import Enforcer
from ordinance.processors.identity_gate import (
    AGENT_REVOKED,
    AGENT_SUSPENDED,
    UNKNOWN_AGENT,
    WRONG_TARGET,
)
from ordinance.processors.policy_log import publish_bundle
from ordinance.processors.state_cache import StateCache
from ordinance.replay.findings import VerifyReport
from ordinance.replay.source import open_source
from ordinance.replay.verify import verify
from ordinance.replay.whatif import whatif
from ordinance.streams import Record, open_log
from ordinance.streams.serde import Decoded
from ordinance.streams.topics import IDENTITY_REGISTRY
from tests.identity.helpers import new_signer

from .identity_helpers import (
    BEFORE,
    SERDE,
    Registry,
    at,
    by_request,
    decisions,
    enforce,
    intent,
    send_records,
    signed,
)
from .test_enforcer import EXAMPLES, T0, publish

BILLING_ATTRS = {"team": "finance"}


def _swap_header(record: Record, name: str, value: bytes) -> Record:
    headers = tuple((n, value if n == name else v) for n, v in record.headers)
    return record._replace(headers=headers)


def test_intents_are_verified_and_decided_with_the_registrys_roles(log_url: str) -> None:
    url = log_url
    registry = Registry(url)
    publish(url, EXAMPLES, registry.controller())
    bot = registry.put("billing-bot", roles=("billing",), attributes=BILLING_ATTRS)
    mallory = registry.put("mallory", roles=("support",), attributes={"team": "cx"})
    registry.put("sleepy", roles=("billing",), attributes=BILLING_ATTRS, status="suspended")
    gone = registry.put("gone", roles=("billing",), attributes=BILLING_ATTRS)
    registry.put("gone", roles=("billing",), attributes=BILLING_ATTRS, status="revoked")
    expired = registry.put(
        "expired", roles=("billing",), attributes=BILLING_ATTRS, windows=[(BEFORE, at(-1))]
    )
    stranger = new_signer("billing-bot")  # a key nobody registered, claiming billing-bot
    first = signed(intent("ok-empty", "billing-bot"), bot)
    replayed_value = signed(intent("replayed", "billing-bot"), None).value
    assert replayed_value is not None
    altered = signed(intent("altered", "billing-bot", amount="9000"), None)
    send_records(
        url,
        first,
        signed(intent("ok-exact", "billing-bot", roles=["billing"], attributes=BILLING_ATTRS), bot),
        # Role spoofing: mallory claims billing; without claims she is support and the
        # payments policy does not apply to her.
        signed(intent("spoof", "mallory", roles=["billing"], attributes=BILLING_ATTRS), mallory),
        signed(intent("spoof-attr", "billing-bot", attributes={"team": "cx"}), bot),
        signed(intent("mallory-plain", "mallory"), mallory),
        signed(intent("unsigned", "billing-bot"), None),
        signed(intent("as-other", "billing-bot"), mallory),  # mallory signs for billing-bot
        signed(intent("forged-key", "billing-bot"), stranger),
        _swap_header(
            signed(intent("forged-sig", "billing-bot"), bot), SIGNATURE_HEADER, b"\0" * 64
        ),
        # The first request's signature on another request id, and on altered content.
        Record(b"billing-bot", replayed_value, first.headers, int(T0 * 1000)),
        Record(altered.key, altered.value, first.headers, int(T0 * 1000)),
        signed(intent("ghost", "ghost"), new_signer("ghost")),
        signed(intent("sleepy", "sleepy"), registry.keys["sleepy"]),
        signed(intent("gone", "gone"), gone),
        signed(intent("expired", "expired"), expired),
        _swap_header(signed(intent("bad-header", "billing-bot"), bot), KEY_HEADER, b"\xff"),
    )
    enforcer = enforce(url, registry.trust)
    got = {rid: (d["effect"], d["code"]) for rid, d in by_request(url).items()}
    assert got == {
        "ok-empty": ("allow", "matched"),
        "ok-exact": ("allow", "matched"),
        "spoof": ("deny", IDENTITY_MISMATCH),
        "spoof-attr": ("deny", IDENTITY_MISMATCH),
        "mallory-plain": got["mallory-plain"],
        "unsigned": ("deny", UNSIGNED),
        "as-other": ("deny", IDENTITY_MISMATCH),
        "forged-key": ("deny", KEY_NOT_VALID),
        "forged-sig": ("deny", BAD_SIGNATURE),
        "replayed": ("deny", BAD_SIGNATURE),
        "altered": ("deny", BAD_SIGNATURE),
        "ghost": ("deny", UNKNOWN_AGENT),
        "sleepy": ("deny", AGENT_SUSPENDED),
        "gone": ("deny", AGENT_REVOKED),
        "expired": ("deny", KEY_NOT_VALID),
        "bad-header": ("deny", BAD_SIGNATURE),
    }
    # Mallory's own request is judged as support: the billing policy never allows it.
    assert got["mallory-plain"][0] == "deny" and "payments" not in str(
        by_request(url)["mallory-plain"]["rule_ids"]
    )
    decided = by_request(url)
    assert decided["ok-empty"]["key_id"] == bot.key_id
    assert decided["unsigned"]["key_id"] is None
    # Every installed registry record reached each owned partition once, before any decision.
    updates = [(p, o, d) for p, o, n, d in decisions(url) if n == "IdentityUpdate"]
    partitions = {p for p, _, n, _ in decisions(url) if n == "EnforcerTakeover"}
    # Six agents and the controller service.
    assert enforcer.report.identity_updates == len(updates) == 7 * len(partitions)
    for p in partitions:
        first_decision = min(
            (o for q, o, n, _ in decisions(url) if q == p and n == "Decision"), default=None
        )
        if first_decision is not None:
            assert all(o < first_decision for q, o, _ in updates if q == p)


def test_without_a_trust_root_claims_decide_as_before(log_url: str) -> None:
    url = log_url
    publish(url, EXAMPLES)
    send_records(
        url,
        signed(intent("claimed", "billing-bot", roles=["billing"], attributes=BILLING_ATTRS), None),
    )
    enforce(url, None)
    assert by_request(url)["claimed"]["effect"] == "allow"
    assert not [n for _, _, n, _ in decisions(url) if n == "IdentityUpdate"]


def test_client_guard_and_submit_sign_with_the_agents_key(
    log_url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """``Client(key=...)``, ``$ORDINANCE_AGENT_KEY`` (what ``@guard``'s client picks up) and
    ``submit --key`` sign intents the enforcer accepts; the same client without a key is
    denied ``unsigned``."""
    url = log_url
    registry = Registry(url)
    publish(url, EXAMPLES, registry.controller())
    pem = tmp_path / "bot.pem"
    generate(pem, None)
    registry.put(
        "billing-bot",
        roles=("billing",),
        attributes=BILLING_ATTRS,
        signers=[PrincipalSigner.from_file("billing-bot", pem)],
    )
    stop = threading.Event()
    now = time.time()

    def serve() -> None:
        with open_log(url) as log:
            Enforcer(log, clock=time.time, trust=registry.trust).run(stop=stop)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    action = {"tool": "payments.transfer",
              "args": {"amount": "50", "currency": "EUR", "country": "DE", "iban": "X"}}  # fmt: skip
    try:
        # Registry keys are valid from an hour before T0; the client's clock is now.
        assert now > T0
        assert _decide_once(url, action, key=pem).effect == "allow"
        monkeypatch.setenv(AGENT_KEY_ENV, str(pem))
        assert _decide_once(url, action).effect == "allow"
        monkeypatch.delenv(AGENT_KEY_ENV)
        denied = _decide_once(url, action)
        assert (denied.effect, denied.code) == ("deny", UNSIGNED)
        request = tmp_path / "request.json"
        request.write_text(json.dumps({"agent": {"id": "billing-bot"}, "action": action}))
        capsys.readouterr()
        code = main(["submit", str(request), "--log", url, "--key", str(pem), "--json",
                     "--timeout", "60"])  # fmt: skip
        assert json.loads(capsys.readouterr().out)["decision"]["effect"] == "allow"
        assert code == 0
    finally:
        stop.set()
        thread.join(timeout=30)


def _decide_once(url: str, action: dict[str, Any], **options: Any) -> ClientDecision:
    client = SyncClient(url, agent_id="billing-bot", **options)
    try:
        return client.decide(action, timeout=60)
    finally:
        client.close()


def _verify(url: str) -> VerifyReport:
    source, log = open_source(url, None)
    assert log is not None
    with log:
        return verify(source)


def test_rotation_and_revocation_take_effect_at_one_offset_and_replay_agrees(
    log_url: str,
) -> None:
    url = log_url
    registry = Registry(url)
    publish(url, EXAMPLES, registry.controller())
    k1, k2, k3 = (new_signer("billing-bot") for _ in range(3))
    put = functools.partial(
        registry.put, "billing-bot", roles=("billing",), attributes=BILLING_ATTRS
    )
    put(signers=[k1])
    send_records(url, signed(intent("k1-before", "billing-bot"), k1))
    enforce(url, registry.trust)
    # Rotation without overlap: k1 is gone from the next registry version.
    put(signers=[k2])
    send_records(
        url,
        signed(intent("k1-after", "billing-bot", minute=1), k1),  # a revoked key
        signed(intent("k2", "billing-bot", minute=1), k2),
    )
    enforce(url, registry.trust, now=T0 + 60)
    # Rotation with an overlap: k2 stays valid until minute 5.
    put(signers=[k2, k3], windows=[(BEFORE, at(5)), (BEFORE, None)])
    send_records(
        url,
        signed(intent("k2-overlap", "billing-bot", minute=2), k2),
        signed(intent("k2-late", "billing-bot", minute=6), k2),
        signed(intent("k3", "billing-bot", minute=6), k3),
    )
    enforce(url, registry.trust, now=T0 + 360)
    put(signers=[k3], status="revoked")
    send_records(url, signed(intent("k3-revoked", "billing-bot", minute=7), k3))
    enforce(url, registry.trust, now=T0 + 420)
    got = {rid: (d["effect"], d["code"], d["key_id"]) for rid, d in by_request(url).items()}
    assert got == {
        "k1-before": ("allow", "matched", k1.key_id),
        "k1-after": ("deny", KEY_NOT_VALID, None),
        "k2": ("allow", "matched", k2.key_id),
        "k2-overlap": ("allow", "matched", k2.key_id),
        "k2-late": ("deny", KEY_NOT_VALID, None),
        "k3": ("allow", "matched", k3.key_id),
        "k3-revoked": ("deny", AGENT_REVOKED, None),
    }
    # On the agent's partition, each change sits at one offset between the decisions
    # judged before it and those judged after it.
    home = _partition_of(url, "k1-before")  # read once: each read is a marker round on Kafka
    records = [(o, n, d) for p, o, n, d in decisions(url) if p == home]
    order = [
        d["request_id"] if n == "Decision" else f"v{_version(d)}"
        for _, n, d in records
        if n == "Decision" or (n == "IdentityUpdate" and d["principal_id"] == "billing-bot")
    ]
    assert order == [
        "v1", "k1-before", "v2", "k1-after", "k2", "v3", "k2-overlap", "k2-late", "k3", "v4",
        "k3-revoked",
    ]  # fmt: skip
    report = _verify(url)
    assert report.ok, [f.to_json() for f in report.findings]
    assert sum(c.agreed for c in report.partitions.values()) == 7
    # What-if with the bundle in force changes nothing: it judges with the registry's
    # roles too (these requests claim none), and skips the intents identity denied.
    source, log = open_source(url, None)
    assert log is not None
    with log:
        same = whatif(source, compile_bundle(read_bundle_dir(EXAMPLES)))
    assert (same.evaluated, same.changes, same.skipped) == (4, [], 3)
    # audit verify is unchanged: the IdentityUpdate records are links of the hash chain.
    with open_log(url) as log:
        audited = verify_log(log, Keyring({}))
    assert audited.findings == [] and audited.records == len(decisions(url))


def _partition_of(url: str, request_id: str) -> int:
    return next(
        p for p, _, n, d in decisions(url) if n == "Decision" and d["request_id"] == request_id
    )


def _version(update: dict[str, Any]) -> int:
    decoded = SERDE.decode(update["record"])
    assert isinstance(decoded, Decoded)
    return int(decoded.value["version"])


def test_the_registry_survives_the_state_cache(tmp_path: Path) -> None:
    """A partition state snapshotted with its registry (public keys do not pickle: the
    installed records are re-folded on load) judges as the state it was saved from, and
    a restart from the snapshot folds only the tail."""
    url = f"sqlite:///{tmp_path / 'log.db'}"
    registry = Registry(url)
    publish(url, EXAMPLES, registry.controller())
    bot = registry.put("billing-bot", roles=("billing",), attributes=BILLING_ATTRS)
    send_records(url, signed(intent("before", "billing-bot"), bot))
    cache = tmp_path / "state"

    def run(now: float) -> Enforcer:
        with open_log(url) as log:
            enforcer = Enforcer(
                log,
                clock=lambda: now,
                trust=registry.trust,
                state_dir=cache,
                max_clock_skew_s=86_400,
            )
            enforcer.run(until_idle=True, idle_s=1.0)
        return enforcer

    first = run(T0)
    partition = _partition_of(url, "before")
    loaded = StateCache(cache, first.decisions).load(partition)
    assert loaded is not None and loaded.identity is not None
    principal = loaded.identity.registry.get("billing-bot")
    assert principal is not None and principal.key(bot.key_id) is not None
    assert loaded.identity.registry_offset == 1  # the controller (0), then the bot
    send_records(
        url,
        signed(intent("after", "billing-bot", minute=1), bot),
        signed(intent("spoof", "billing-bot", minute=1, roles=["admin"]), bot),
    )
    second = run(T0 + 60)
    # Each partition folded only the snapshot's tail: its own new takeover marker.
    assert second.report.replayed == len(second.states)
    assert second.report.identity_updates == 0  # the registry came back with the snapshot
    got = {rid: (d["effect"], d["code"]) for rid, d in by_request(url).items()}
    assert got == {
        "before": ("allow", "matched"),
        "after": ("allow", "matched"),
        "spoof": ("deny", IDENTITY_MISMATCH),
    }


def test_a_back_dated_registry_change_is_judged_at_the_enforcers_clock(log_url: str) -> None:
    """A registry admin whose key window has ended signs a change dated inside the old
    window: a reader judging at the record's ``at`` installs it, the enforcer — judging at
    its own clock — does not, and the agent it would create stays unknown."""
    url = log_url
    registry = Registry(url)
    publish(url, EXAMPLES, registry.controller())
    ops = registry.put("ops", kind="person", roles=("admin",), windows=[(BEFORE, at(1))])
    sneaky = new_signer("sneaky")
    datum = identity_datum(
        "sneaky",
        kind="agent",
        version=1,
        at=BEFORE,  # back-dated into ops's window
        keys=[key_entry(sneaky.signer.key.public_key(), BEFORE)],
        roles=["billing"],
        attributes=BILLING_ATTRS,
    )
    with open_log(url) as log:
        log.produce("ordinance." + IDENTITY_REGISTRY, [signed_identity_record(SERDE, datum, ops)])
        assert load_registry(log, registry.trust).get("sneaky") is not None  # judged at `at`
    send_records(url, signed(intent("sneaky", "sneaky", minute=10), sneaky))
    enforce(url, registry.trust, now=T0 + 600)  # ops's key ended at minute 1
    decided = by_request(url)["sneaky"]
    assert (decided["effect"], decided["code"]) == ("deny", UNKNOWN_AGENT)
    installed = {d["principal_id"] for _, _, n, d in decisions(url) if n == "IdentityUpdate"}
    assert installed == {"ops", "policy-controller"}


def test_an_agent_the_registry_assigns_to_another_target_is_denied_wrong_target(
    tmp_path: Path,
) -> None:
    """Agent -> target mapping by the registry's ``target`` attribute: prod's enforcer
    decides for prod's agents and for agents the registry assigns to no target, and
    denies one assigned elsewhere instead of judging it with prod's bundle."""
    url = f"sqlite:///{tmp_path / 'log.db'}"
    registry = Registry(url)
    controller = registry.controller()
    files = read_bundle_dir(EXAMPLES)
    with open_log(url) as log:
        publish_bundle(
            log, files, compile_bundle(files).bundle_id, actor="t", target="prod", clock=lambda: T0
        )
        run_controller(log, once=True, clock=lambda: T0, signer=controller)
    agents = {
        "prod-bot": {**BILLING_ATTRS, "target": "prod"},
        "staging-bot": {**BILLING_ATTRS, "target": ["staging", "dev"]},
        "free-bot": BILLING_ATTRS,
    }
    send_records(
        url,
        *(
            signed(intent(name, name), registry.put(name, roles=("billing",), attributes=attrs))
            for name, attrs in agents.items()
        ),
    )
    with open_log(url) as log:
        Enforcer(
            log, clock=lambda: T0, trust=registry.trust, target="prod", max_clock_skew_s=86_400
        ).run(until_idle=True, idle_s=1.0)
    got = {rid: (d["effect"], d["code"]) for rid, d in by_request(url).items()}
    assert got == {
        "prod-bot": ("allow", "matched"),
        "staging-bot": ("deny", WRONG_TARGET),
        "free-bot": ("allow", "matched"),
    }
