"""Pipeline benchmark: sustained decisions/s of one enforcer working through a backlog, and
the decide round trip (agent client -> agent.actions -> enforcer -> agent.decisions -> client)
at a fixed request rate — embedded log and local Kafka broker in one run, beside the floor
under the Kafka round trip: the same two hops through the same broker with no Ordinance in
them (`kafka_echo.py`). Each Kafka row gets a fresh broker and shows the broker's CPU use.

    python bench/pipeline_bench.py [--backlog 20000] [--rate 1000] [--seconds 5] [--skip-kafka]

The embedded backlog runs three times in the same run: plain; with identity enforced
(issue 12: a trust root, the agents in the registry, every intent signed by its agent's
key and verified before it is evaluated), beside the cost of that verification per
decision measured alone; and with a shadow bundle (issue 13: a candidate evaluated beside
the enforced bundle on every action and recorded, never enforced) — the enforced answers
are checked equal to the plain run's.

Targets (issue 4): embedded >= 10k decisions/s sustained; Kafka round trip p99 <= 20 ms at
1k actions/s. A script that prints a table, not a test: no timing assertions anywhere.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import kafka_echo
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ordinance.client import Client
from ordinance.identity.records import identity_datum, key_entry, signed_identity_record
from ordinance.identity.registry import Refusal
from ordinance.identity.registry_log import fold_registry_record
from ordinance.identity.signing import PrincipalSigner, signature_valid
from ordinance.identity.trust import TrustedKey, TrustRoot
from ordinance.keys import Signer, key_id_of
from ordinance.policy.bundle import compile_bundle, read_bundle_dir
from ordinance.processors.active_auth import CONTROLLER_ROLE
from ordinance.processors.controller_loop import run_controller
from ordinance.processors.enforcer import Enforcer
from ordinance.processors.enforcer_state import PartitionState
from ordinance.processors.identity_gate import judge_intent
from ordinance.processors.policy_log import append_change, publish_bundle
from ordinance.streams import Record, open_log
from ordinance.streams.serde import Decoded, Serde
from ordinance.streams.topics import (
    AGENT_ACTIONS,
    AGENT_DECISIONS,
    IDENTITY_REGISTRY,
    ensure_topics,
)
from ordinance.wire import request_to_wire

EXAMPLES = Path(__file__).resolve().parents[1] / "examples" / "policies"
AGENTS: list[dict[str, Any]] = [
    {"id": f"billing-bot-{i}", "roles": ["billing"], "team": "finance"} for i in range(8)
]
CONTROLLER = "bench-controller"


def _request(i: int) -> dict[str, Any]:
    args = {"amount": str(10 + i % 900), "currency": "EUR", "country": "DE", "iban": "DE00"}
    return {"agent": AGENTS[i % len(AGENTS)], "action": {"tool": "payments.transfer", "args": args}}


SHADOW_POLICY = """policy: bench-shadow
owner: bench
description: A candidate that would refuse transfers to DE above 500 (about half the bench's).
target:
  agents: {roles: [billing]}
  actions: [payments.transfer]
rules:
  - id: no-large
    effect: deny
    when: action.args.amount > 500 && action.args.country == "DE"
    reason: the candidate caps transfers to DE at 500
"""


def _prepare(url: str, *, shadow: bool = False, controller: PrincipalSigner | None = None) -> None:
    files = read_bundle_dir(EXAMPLES)
    stable = compile_bundle(files).bundle_id
    with open_log(url) as log:
        ensure_topics(log)
        publish_bundle(log, files, stable, actor="bench")
        if shadow:
            candidate_files = {**files, "bench-shadow.yaml": SHADOW_POLICY}
            candidate = compile_bundle(candidate_files).bundle_id
            publish_bundle(log, candidate_files, candidate, actor="bench", enforce=False)
            append_change(log, "shadow", candidate, actor="bench", target="default")
        # With identity the controller signs policy.active: the enforcer believes no other.
        run_controller(log, once=True, signer=controller)


OUTCOMES: dict[str, list[tuple[str, str, str]]] = {}  # variant -> every enforced decision


def _identity(url: str) -> tuple[TrustRoot, dict[str, PrincipalSigner]]:
    """A trust root, and the bench's agents in the registry with one key each (and the
    controller, ``keys[CONTROLLER]``, which signs policy.active)."""
    root = _new_signer("root-admin")
    trust = TrustRoot((TrustedKey("root-admin", root.key_id, root.signer.key.public_key()),))
    keys = {a["id"]: _new_signer(a["id"]) for a in AGENTS}
    keys[CONTROLLER] = _new_signer(CONTROLLER)
    since = dt.datetime.fromtimestamp(time.time() - 3600, dt.UTC)
    serde = Serde()
    records = [
        signed_identity_record(
            serde,
            identity_datum(
                agent["id"],
                kind="service" if agent["id"] == CONTROLLER else "agent",
                version=1,
                at=since,
                keys=[key_entry(keys[agent["id"]].signer.key.public_key(), since)],
                roles=agent["roles"],
                attributes={"team": agent["team"]},
            ),
            root,
        )
        for agent in [*AGENTS, {"id": CONTROLLER, "roles": [CONTROLLER_ROLE], "team": "ops"}]
    ]
    with open_log(url) as log:
        log.produce(ensure_topics(log)[IDENTITY_REGISTRY].name, records)
    return trust, keys


def _new_signer(principal_id: str) -> PrincipalSigner:
    key = Ed25519PrivateKey.generate()
    return PrincipalSigner(principal_id, Signer(key, key_id_of(key.public_key())))


def verification_cost(n: int = 5000) -> tuple[float, float]:
    """(µs per intent for the whole identity check, µs per bare Ed25519 verify), alone."""
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{Path(tmp) / 'v.db'}"
        with open_log(url, create=True) as log:
            ensure_topics(log)
        trust, keys = _identity(url)
        state = PartitionState(0)
        state.fold("EnforcerTakeover", {"trust_root": trust.to_wire()}, 0)
        assert state.identity is not None
        now = dt.datetime.now(dt.UTC)
        with open_log(url) as log:
            for record in log.read_to_end(ensure_topics(log)[IDENTITY_REGISTRY].name):
                installed = fold_registry_record(state.identity.registry, Serde(), record, at=now)
                assert not isinstance(installed, Refusal), installed
    serde = Serde()
    inputs = []
    for i in range(n):
        datum = request_to_wire(_request(i), request_id=f"v{i}", event_time=now, client_id="b")
        value = serde.encode("ActionRequest", datum)
        decoded = serde.decode(value)
        assert isinstance(decoded, Decoded)
        inputs.append((decoded.value, value, keys[datum["agent"]["id"]].headers(value)))
    identity = state.identity
    started = time.perf_counter()
    for datum, value, headers in inputs:
        assert not isinstance(judge_intent(identity, datum, value, headers), Refusal)
    whole = (time.perf_counter() - started) / n * 1e6
    public = keys[AGENTS[0]["id"]].signer.key.public_key()
    value, headers = inputs[0][1], inputs[0][2]
    signature = dict(headers)["ordinance-sig"]
    started = time.perf_counter()
    for _ in range(n):
        signature_valid(public, value, signature)
    bare = (time.perf_counter() - started) / n * 1e6
    return whole, bare


def sustained(url: str, backlog: int, *, identity: bool = False, shadow: bool = False) -> float:
    """Decisions per second of one enforcer over a backlog produced beforehand; with
    ``identity``, every intent signed and verified against the registry; with ``shadow``,
    a shadow bundle evaluated beside the enforced one."""
    trust, keys = _identity(url) if identity else (None, {})
    _prepare(url, shadow=shadow, controller=keys.get(CONTROLLER))
    serde = Serde()
    now = time.time()
    with open_log(url) as log:
        topic = ensure_topics(log)[AGENT_ACTIONS].name
        batch: list[Record] = []
        for i in range(backlog):
            datum = request_to_wire(
                _request(i),
                request_id=f"b{i}",
                event_time=dt.datetime.fromtimestamp(now, dt.UTC),
                client_id="bench",
            )
            value = serde.encode("ActionRequest", datum)
            signer = keys.get(datum["agent"]["id"])
            headers = signer.headers(value) if signer is not None else ()
            batch.append(Record(datum["agent"]["id"].encode(), value, headers, int(now * 1000)))
            if len(batch) == 1000:
                log.produce(topic, batch)
                batch = []
        if batch:
            log.produce(topic, batch)
    with open_log(url) as log:
        enforcer = Enforcer(log, enforcer_id="bench", trust=trust)
        # Generous: on Kafka the first fetch after a group join can take seconds.
        enforcer.run(until_idle=True, idle_s=5.0)
        assert enforcer.report.decided == backlog, enforcer.report
        # From the first decision to the last, by the decisions' own evaluation times:
        # start-up (takeover, compiling the bundle) and the idle wait are not decisions.
        decided = [
            decoded.value
            for record in log.read_to_end(ensure_topics(log)[AGENT_DECISIONS].name)
            if isinstance(decoded := serde.decode_record(record, expect={"Decision"}), Decoded)
        ]
        times = [d["evaluated_at"].timestamp() for d in decided]
        # Both runs decide the same (the registry gives the roles the requests carry):
        # the outcomes are checked equal in main().
        assert all((d["key_id"] is not None) == identity for d in decided)
        assert all((d["shadow"] is not None) == shadow for d in decided)
        variant = "identity" if identity else "shadow" if shadow else "plain"
        OUTCOMES[variant] = sorted((d["request_id"], d["effect"], d["code"]) for d in decided)
    return float((len(times) - 1) / (max(times) - min(times)))


async def _paced(client: Client, rate: float, seconds: float) -> list[float]:
    latencies: list[float] = []
    interval = 1.0 / rate
    start = time.perf_counter()

    async def one(i: int) -> None:
        t0 = time.perf_counter()
        decision = await client.decide(_request(i), timeout=5.0)
        if not decision.code.startswith("client") and decision.code != "transport_error":
            latencies.append((time.perf_counter() - t0) * 1000)

    tasks = []
    for i in range(int(rate * seconds)):
        delay = start + i * interval - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(i)))
    await asyncio.gather(*tasks)
    return latencies


def round_trip(
    url: str, rate: float, seconds: float, broker_pid: int | None = None
) -> tuple[float, float, float, int, float | None]:
    """(p50 ms, p99 ms, achieved rate, answered, broker CPU-s/s) of decide round trips at a
    fixed rate. The enforcer runs as `ordinance serve` in its own process, as it is
    deployed: in the client's process it would compete with the client for the GIL."""
    _prepare(url)
    server = subprocess.Popen(
        [sys.executable, "-m", "ordinance.cli", "serve", "--log", url],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        with Client(url, client_id="bench") as client:
            # Warm-up until answers come from the enforcer: takeover, readers, caches.
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline and len(asyncio.run(_paced(client, 20.0, 0.5))) < 10:
                pass
            cpu_before = kafka_echo.cpu_seconds(broker_pid) if broker_pid else 0.0
            started = time.perf_counter()
            latencies = asyncio.run(_paced(client, rate, seconds))
            elapsed = time.perf_counter() - started
            achieved = len(latencies) / elapsed
            broker_cpu = (
                (kafka_echo.cpu_seconds(broker_pid) - cpu_before) / elapsed if broker_pid else None
            )
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=30)
    latencies.sort()
    p99 = latencies[min(len(latencies) - 1, int(0.99 * len(latencies)))]
    return statistics.median(latencies), p99, achieved, len(latencies), broker_cpu


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backlog", type=int, default=20000)
    parser.add_argument("--rate", type=float, default=1000.0)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--skip-kafka", action="store_true")
    args = parser.parse_args(argv)
    rows: list[tuple[str, float | None, float, float, float, int, float | None]] = []
    signed_rows: list[tuple[str, float]] = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in ("a", "b", "c", "d"):
            url = f"sqlite:///{Path(tmp) / f'{name}.db'}"
            if name == "a":
                rate = sustained(url, args.backlog)
            elif name == "c":
                signed_rows.append(
                    (
                        "embedded (sqlite), identity enforced",
                        sustained(url, args.backlog, identity=True),
                    )
                )
            elif name == "d":
                signed_rows.append(
                    (
                        "embedded (sqlite), a shadow bundle evaluated beside",
                        sustained(url, args.backlog, shadow=True),
                    )
                )
            else:
                p50, p99, achieved, answered, _ = round_trip(url, args.rate, args.seconds)
        rows.append(("embedded (sqlite)", rate, p50, p99, achieved, answered, None))
    assert OUTCOMES["identity"] == OUTCOMES["plain"], "identity changed a decision"
    assert OUTCOMES["shadow"] == OUTCOMES["plain"], "a shadow bundle changed an enforced decision"
    whole_us, bare_us = verification_cost()
    if not args.skip_kafka:
        from ordinance.streams.kafka_broker import start_broker

        with start_broker() as broker:
            rate = sustained(broker.url, args.backlog)
        with start_broker() as broker:
            p50, p99, achieved, answered, cpu = round_trip(
                broker.url, args.rate, args.seconds, broker.pid
            )
        rows.append(("kafka (local broker)", rate, p50, p99, achieved, answered, cpu))
        with start_broker() as broker:
            echo = kafka_echo.round_trip(broker, args.rate, args.seconds)
        rows.append(
            (
                "kafka: bare echo, no Ordinance (floor)",
                None,
                echo["p50_ms"],
                echo["p99_ms"],
                echo["answered"] / args.seconds,
                int(echo["answered"]),
                echo["broker_cpu"],
            )
        )
    print(
        f"\npipeline bench — {os.cpu_count()} CPUs, load {tuple(round(x, 2) for x in os.getloadavg())}, backlog {args.backlog}, round trip at {args.rate:g}/s for {args.seconds:g}s\n"
    )
    print(
        "| backend | sustained decisions/s | round trip p50 ms | p99 ms | achieved rate/s | answered | broker CPU-s/s |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|")
    for name, decisions_per_s, p50, p99, achieved, answered, cpu in rows:
        sustained_cell = "—" if decisions_per_s is None else f"{decisions_per_s:,.0f}"
        cpu_cell = "—" if cpu is None else f"{cpu:.2f}"
        print(
            f"| {name} | {sustained_cell} | {p50:.2f} | {p99:.2f} | {achieved:,.0f} | {answered} | {cpu_cell} |"
        )
    plain = rows[0][1] or 1.0
    for name, decisions_per_s in signed_rows:
        print(
            f"| {name} ({decisions_per_s / plain:.2f}x plain) | {decisions_per_s:,.0f} "
            "| — | — | — | — | — |"
        )
    print(
        f"\nidentity check per intent, alone: {whole_us:.1f} µs (of which one Ed25519 verify: {bare_us:.1f} µs)"
    )
    print(
        "\ntargets: embedded >= 10,000 decisions/s sustained (with identity too); Kafka round trip p99 <= 20 ms at 1k actions/s"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
