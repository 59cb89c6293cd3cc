"""Freeze test (issue 18, item 4; docs/guarantees.md, "Zombie writers"): two ``ordinance
serve`` processes decide a steady stream of actions while one of them, again and again, is
frozen with SIGSTOP past its consumer-group session, so that the other takes its partitions
over, and is then resumed with SIGCONT. A resumed enforcer may write into a partition it no
longer owns before it learns it lost it; those writes land after the new owner's takeover
marker and are *fenced* (`audit.fence`): every reader of the log must leave them out.

Every other freeze hits the enforcer that has just taken partitions over (the case that
broke before the fence existed: it was deciding a backlog when frozen); the rest hit one at
a random moment. The stream has budgets that double counting would change, requests sent
twice at once and requests re-sent later, and half of it goes through a real `Client`, so
what an agent acts on is checked too. Afterwards:

* every action has exactly one effective (not fenced) decision, and the effective decisions
  equal a from-scratch recomputation over the same actions (the SIGKILL test's);
* every answer the client took is the effective decision of its request, never a fenced one;
* ``audit verify`` (after the checkpointer signed the log) finds nothing and lists exactly
  the fenced writes the fold leaves out; ``replay verify`` agrees and counts the same;
* the scenario happened: the other enforcer took partitions over while one was frozen.

Fenced writes need the freeze to catch an enforcer between reading actions and writing
their decisions; on the embedded log the log itself refuses such writes (the commit
checks group ownership in the same transaction), so there a frozen enforcer's are not
expected at all. On Kafka every run had some. The test prints how many appeared (``-s``).

What the test found (reproduced deterministically by the last test): a takeover marker
can be written by an enforcer that has already lost the partition, and then the real
owner's decisions were the fenced ones, and their actions lost (`LostDecision`: often on
the embedded log, nearly always on Kafka). The owner now notices a marker after its own
and takes the partition over again, reading the actions of its fenced decisions again
(`processors/ownership.py`)."""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from ordinance.cli import main as cli
from ordinance.client import Client
from ordinance.client.decision import ClientDecision
from ordinance.keys import Keyring, Signer, generate
from ordinance.policy.bundle import compile_bundle, read_bundle_dir
from ordinance.processors.approvals import answer
from ordinance.processors.audit.checkpointer import Checkpointer
from ordinance.processors.audit.verify import verify_log
from ordinance.processors.enforcer import Enforcer
from ordinance.processors.enforcer_state import PartitionState
from ordinance.processors.policy_log import publish_bundle
from ordinance.replay.findings import VerifyReport as ReplayReport
from ordinance.replay.source import LogSource
from ordinance.replay.verify import verify as replay_verify
from ordinance.replay.walk import walk
from ordinance.streams import Log, Position, Record, TopicPartition, open_log, partition_for
from ordinance.streams.serde import Decoded, Serde
from ordinance.streams.topics import AGENT_ACTIONS, AGENT_DECISIONS, ensure_topics, topic_specs

from .running import enforcer_thread
from .test_enforcer import EXAMPLES, T0, send, transfer
from .test_enforcer_faults import recompute_effects

SPECS = topic_specs()
ACTIONS = SPECS[AGENT_ACTIONS].name
DECISIONS = SPECS[AGENT_DECISIONS].name
NAMES = ("A", "B")
AMOUNTS = ("50", "900", "4000", "9500", "12000")  # 12000: require_approval
# Event times 10 minutes apart: the 24 h budget window holds ~36 requests per agent, so
# the stream keeps alternating between allows and budget denies (a double count shows).
MINUTES_APART = 10
# An answer may wait for a whole freeze plus a rebalance (~30 s on Kafka); one never
# decided ends when the client closes (`Traffic`), not by this.
CLIENT_TIMEOUT_S = 120.0


@dataclass(frozen=True)
class Backend:
    freezes: int
    interval_s: float  # between two requests of the stream
    max_freeze_s: float  # resumed anyway if no takeover came by then (see `_freeze`)
    wait_s: float  # for what must happen eventually (a takeover back after a resume)
    quiet_s: float  # the last decisions are waited for while they keep coming this often


EMBEDDED = Backend(freezes=6, interval_s=0.04, max_freeze_s=6.0, wait_s=30.0, quiet_s=5.0)
# Each freeze costs the 6 s session (kafka_log) plus a rebalance (9-13 s in all on the
# local broker), and each resume another rebalance before the victim takes partitions
# back (3-20 s): two freezes keep the test within its CI budget.
KAFKA = Backend(freezes=2, interval_s=0.08, max_freeze_s=30.0, wait_s=60.0, quiet_s=10.0)


def _agents(partitions: int) -> list[str]:
    """One agent per actions partition, so both enforcers always have traffic to decide."""
    found: dict[int, str] = {}
    n = 0
    while len(found) < partitions:
        name = f"billing-{n}"
        found.setdefault(partition_for(name.encode(), partitions), name)
        n += 1
    return [found[p] for p in range(partitions)]


# -- the enforcers ---------------------------------------------------------------------


@dataclass
class Enforcers:
    """Two ``ordinance serve`` processes named A and B (their enforcer ids, which the
    fold's ownership rule goes by); stderr kept for the failure message."""

    url: str
    directory: Path
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    def start(self) -> None:
        for name in NAMES:
            with (self.directory / f"{name}.err").open("wb") as err:
                self.procs[name] = subprocess.Popen(
                    # Event times are T0 + minutes (2026-01-01), not the enforcers' clock:
                    # no skew bound, and no horizon (they would all be older than a week).
                    [
                        sys.executable,
                        "-m",
                        "ordinance.cli",
                        "serve",
                        "--log",
                        self.url,
                        "--enforcer-id",
                        name,
                        "--max-clock-skew",
                        "off",
                        "--dedupe-horizon",
                        "off",
                    ],
                    stdout=subprocess.DEVNULL,
                    stderr=err,
                    env={**os.environ, "PYTHONUNBUFFERED": "1"},
                )

    def send(self, name: str, sig: signal.Signals) -> None:
        self.procs[name].send_signal(sig)

    def check_alive(self) -> None:
        for name, proc in self.procs.items():
            assert proc.poll() is None, f"enforcer {name} exited:\n{self.stderr(name)}"

    def stderr(self, name: str) -> str:
        return (self.directory / f"{name}.err").read_text(errors="replace")[-3000:]

    def stop(self) -> None:
        """Resume (a stopped process does not act on SIGTERM) and stop both."""
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGCONT)
                proc.send_signal(signal.SIGTERM)
        for proc in self.procs.values():
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


# -- watching the decisions log ----------------------------------------------------------


class Watch:
    """The decisions topic folded in this process as it grows, with the enforcer's own
    fold (`PartitionState.fold`, which leaves fenced writes out): who owns each partition
    (its latest takeover marker), which requests have an effective decision, and how many
    writes were fenced. Only the test's pacing uses it; the checks reread the log."""

    def __init__(self, log: Log) -> None:
        self.serde = Serde()
        self.consumer = log.consumer(None)
        partitions = log.partitions(DECISIONS)
        self.consumer.assign({TopicPartition(DECISIONS, p): Position.BEGINNING for p in partitions})
        self.states = {p: PartitionState(p) for p in partitions}
        self.markers: Counter[str] = Counter()  # takeover markers per enforcer
        self.decided: set[str] = set()  # with an effective decision
        self.written: set[str] = set()  # with any decision, fenced or not
        self.fenced = 0

    def poll(self) -> None:
        for record in self.consumer.poll(max_records=1000, timeout=0.02):
            decoded = self.serde.decode_record(record)
            if not isinstance(decoded, Decoded):
                continue
            if decoded.name == "Decision":
                self.written.add(decoded.value["request_id"])
            if not self.states[record.partition].fold(decoded.name, decoded.value, record.offset):
                self.fenced += 1
            elif decoded.name == "EnforcerTakeover":
                self.markers[decoded.value["enforcer_id"]] += 1
            elif decoded.name == "Decision":
                self.decided.add(decoded.value["request_id"])

    def owned_by(self, name: str) -> set[int]:
        return {p for p, state in self.states.items() if state.owner == name}

    def until_quiet(self, done: Callable[[], bool], quiet_s: float) -> None:
        """Poll until ``done()``, or until no decision came for ``quiet_s``."""
        seen, since = len(self.decided), time.monotonic()
        while not done() and time.monotonic() - since < quiet_s:
            self.poll()
            if len(self.decided) != seen:
                seen, since = len(self.decided), time.monotonic()

    def until(self, done: Callable[[], bool], timeout: float) -> bool:
        """Poll until ``done()``; False if ``timeout`` passed first."""
        deadline = time.monotonic() + timeout
        while not done():
            if time.monotonic() > deadline:
                return False
            self.poll()
        return True


# -- the stream --------------------------------------------------------------------------


@dataclass
class Traffic:
    """Requests every ``interval_s`` until ``stop``, round robin over the agents, each
    agent's alternating between a `Client` (its answers kept) and raw records, of which
    about one in ten is sent twice at once and another one re-sent some time later.
    Once ``drained`` (the log has every decision it will get), waiting answers get a
    grace period, then the client closes: one never decided ends as client_closed."""

    url: str
    agents: list[str]
    interval_s: float
    stop: threading.Event = field(default_factory=threading.Event)
    drained: threading.Event = field(default_factory=threading.Event)
    sent: list[str] = field(default_factory=list)  # request ids, once each
    answers: dict[str, ClientDecision] = field(default_factory=dict)
    resent: int = 0
    failures: list[BaseException] = field(default_factory=list)

    def run(self) -> None:
        try:
            asyncio.run(self._stream())
        except BaseException as exc:  # handed to the test; a thread cannot raise
            self.failures.append(exc)

    async def _ask(self, client: Client, request_id: str, agent: str, amount: str, i: int) -> None:
        request = {
            "agent": {"id": agent, "roles": ["billing"], "team": "finance"},
            "action": {
                "tool": "payments.transfer",
                "args": {"amount": amount, "currency": "EUR", "country": "DE", "iban": "X"},
            },
        }
        self.answers[request_id] = await client.decide(
            request,
            request_id=request_id,
            event_time=dt.datetime.fromtimestamp(T0 + 60 * MINUTES_APART * i, dt.UTC),
            timeout=CLIENT_TIMEOUT_S,
        )

    async def _stream(self) -> None:
        rng = random.Random(7)
        serde = Serde()
        earlier: list[Record] = []
        asking: list[asyncio.Task[None]] = []
        async with Client(self.url) as client:
            with open_log(self.url) as log:
                i = 0
                while not self.stop.is_set():
                    agent = self.agents[i % len(self.agents)]
                    amount = rng.choice(AMOUNTS)
                    # Every agent's requests alternate between the two ways in.
                    if (i // len(self.agents)) % 2 == 0:
                        request_id = f"c{i}"
                        asking.append(
                            asyncio.create_task(self._ask(client, request_id, agent, amount, i))
                        )
                    else:
                        request_id = f"r{i}"
                        datum = transfer(request_id, amount, MINUTES_APART * i)
                        datum["agent"] = {**datum["agent"], "id": agent}
                        record = Record(
                            agent.encode(),
                            serde.encode("ActionRequest", datum),
                            (),
                            int(T0 * 1000),
                        )
                        batch = [record]
                        if i % 20 == 1:
                            batch.append(record)  # a retry racing the original
                        if i % 20 == 11 and earlier:
                            batch.append(rng.choice(earlier))  # a retry after a while
                        earlier.append(record)
                        self.resent += len(batch) - 1
                        # Blocking, briefly: the client does its I/O on its own threads.
                        log.produce(ACTIONS, batch)
                    self.sent.append(request_id)
                    i += 1
                    await asyncio.sleep(self.interval_s)
            while not self.drained.is_set():
                await asyncio.sleep(0.1)
            if asking:  # the client's reader may trail the test's own
                await asyncio.wait(asking, timeout=5.0)
        await asyncio.gather(*asking)


# -- the freezes -------------------------------------------------------------------------


@dataclass
class Freezes:
    """The freeze loop: stop one enforcer, resume it once the other holds every
    partition, wait for it to take some back, and again."""

    enforcers: Enforcers
    watch: Watch
    backend: Backend
    rng: random.Random = field(default_factory=lambda: random.Random(3))
    taken_while_frozen: int = 0  # freezes during which the other took every partition
    just_gained: int = 0  # freezes of an enforcer that had just taken partitions over
    log: list[str] = field(default_factory=list)

    def run(self) -> None:
        watch, wait = self.watch, self.backend.wait_s
        # Both deciding first: each owns partitions (markers on the log).
        assert watch.until(lambda: all(watch.owned_by(n) for n in NAMES), wait), self._why()
        last = max(NAMES, key=lambda n: watch.markers[n])  # the latest to take over
        for k in range(self.backend.freezes):
            if k % 2 == 0:
                # The one that has just taken partitions over, at once: it is folding
                # them or deciding the backlog that built up during the rebalance.
                victim = last
                self.just_gained += 1
            else:
                # The other one, at some moment of steady deciding.
                victim = next(n for n in NAMES if n != last)
                watch.until(lambda: False, self.rng.uniform(0.1, 1.0))
            self._freeze(victim)
            last = victim

    def _freeze(self, victim: str) -> None:
        watch, other = self.watch, next(n for n in NAMES if n != victim)
        self.enforcers.check_alive()
        self.enforcers.send(victim, signal.SIGSTOP)
        frozen_at = time.monotonic()
        stopped = dt.datetime.now(dt.UTC).time()
        # Frozen until the other holds every partition, which it can only get once the
        # victim's session expired. Bounded: on the embedded log a victim frozen inside
        # a write transaction holds the database lock, and then nobody takes anything.
        taken = watch.until(
            lambda: not watch.owned_by(victim) and len(watch.owned_by(other)) == len(watch.states),
            self.backend.max_freeze_s,
        )
        self.taken_while_frozen += taken
        markers = watch.markers[victim]
        self.enforcers.send(victim, signal.SIGCONT)
        self.log.append(
            f"{stopped} froze {victim} {time.monotonic() - frozen_at:.1f}s, taken over: {taken},"
            f" fenced so far: {watch.fenced}"
        )
        if taken:
            # Resumed, it rejoins the group and takes partitions back: a marker of its own.
            assert watch.until(lambda: watch.markers[victim] > markers, self.backend.wait_s), (
                self._why()
            )
            self.log.append(f"{dt.datetime.now(dt.UTC).time()} {victim} took partitions back")

    def _why(self) -> str:
        owners = {p: s.owner for p, s in self.watch.states.items()}
        return f"owners {owners}; {self.log}\n" + "\n".join(
            f"--- {n} stderr:\n{self.enforcers.stderr(n)}" for n in NAMES
        )


# -- the checks --------------------------------------------------------------------------


@dataclass
class Decisions:
    """Every decision on the log, split by the fold into effective and fenced, and what
    ``replay verify`` made of the log."""

    effective: dict[str, list[dict[str, Any]]]
    fenced: list[tuple[int, int, dict[str, Any]]]  # (partition, offset, datum)
    replayed: ReplayReport
    timeline: str  # each partition's records in short, for failure messages


def _read_decisions(log: Log) -> Decisions:
    """The log as every reader folds it (`replay.walk`: the enforcer's fold, steps fenced
    where it leaves them out)."""
    source, serde = LogSource(log), Serde()
    effective: dict[str, list[dict[str, Any]]] = defaultdict(list)
    fenced: list[tuple[int, int, dict[str, Any]]] = []
    lines = []
    for partition in source.partitions(AGENT_DECISIONS):
        runs: list[list[Any]] = []  # [what, count, first offset]
        for step in walk(source, partition, PartitionState(partition), serde):
            writer = step.datum.get("enforcer_id") if step.name is not None else None
            what = f"{'fenced ' if step.fenced else ''}{step.name} {writer}"
            if runs and runs[-1][0] == what and step.name != "EnforcerTakeover":
                runs[-1][1] += 1
            else:
                runs.append([what, 1, step.record.offset])
            if step.fenced:
                fenced.append((partition, step.record.offset, step.datum))
            elif step.name == "Decision":
                effective[step.datum["request_id"]].append(step.datum)
        lines.append(f"p{partition}: " + ", ".join(f"@{o} {w} x{n}" for w, n, o in runs))
    return Decisions(effective, fenced, replay_verify(source), "\n".join(lines))


class LostDecision(AssertionError):
    """Actions without an effective decision: what a stale takeover marker caused before
    the owner noticed it (`processors/ownership.py`). Seen on both backends, on Kafka also
    without any freeze while two enforcers start together: an enforcer given a partition,
    frozen before it writes its takeover marker (or still writing markers for an
    assignment the group has already replaced), writes the marker after the new owner's;
    the log names it owner, and the real owner's next decisions are fenced."""


def _whereabouts(log: Log, missing: set[str], found: Decisions) -> str:
    """For a failure message: where the actions without an effective decision are, what
    was written for them, and where the enforcers' group has committed."""
    serde = Serde()
    where: dict[str, list[tuple[int, int]]] = defaultdict(list)
    for record in log.read_to_end(ACTIONS):
        decoded = serde.decode_record(record)
        if isinstance(decoded, Decoded) and decoded.value["request_id"] in missing:
            where[decoded.value["request_id"]].append((record.partition, record.offset))
    fenced = {d.get("request_id"): (p, o, d["enforcer_id"]) for p, o, d in found.fenced}
    with log.consumer("ordinance.enforcer") as group:
        committed = group.committed([TopicPartition(ACTIONS, p) for p in log.partitions(ACTIONS)])
    return (
        f"without an effective decision: {len(missing)}\n"
        + "\n".join(
            f"  {rid}: action at {where.get(rid)}, fenced write {fenced.get(rid)}"
            for rid in sorted(missing)
        )
        + f"\ncommitted: { {tp.partition: o for tp, o in committed.items()} }"
    )


def _check(url: str, traffic: Traffic, tmp_path: Path) -> Decisions:
    """The checks, those that hold even when a decision is missing first, so a failing
    run says as much as it can."""
    ruleset = compile_bundle(read_bundle_dir(EXAMPLES))
    with open_log(url) as log:
        found = _read_decisions(log)
        effective = found.effective
        print(found.timeline)  # shown if a check fails

        # Never two effective decisions for one request (retries, redeliveries, takeovers).
        assert [rid for rid, ds in effective.items() if len(ds) > 1] == []
        # What the agents acted on is never a fenced write (same writer and evaluation
        # time: a frozen enforcer can write a fenced decision and, after taking the
        # partition back, the effective one of the same request).
        fenced_writes = {
            (d.get("request_id"), d["enforcer_id"], d.get("evaluated_at")) for *_, d in found.fenced
        }
        assert len(traffic.answers) == sum(1 for rid in traffic.sent if rid.startswith("c"))
        for answer in traffic.answers.values():
            assert (answer.request_id, answer.enforcer_id, answer.evaluated_at) not in (
                fenced_writes
            ), answer

        # The audit: signed past every fenced write, which it lists (not as tampering).
        key, keyring = tmp_path / "audit.pem", tmp_path / "keyring.json"
        generate(key, keyring)
        signer = Checkpointer(log, Signer.from_file(key), every_records=100)
        assert signer.run(until_idle=True, idle_s=0.5).alerts == []
        report = verify_log(log, Keyring.from_file(keyring))
        assert report.findings == []
        assert sorted((p, f.offset, f.writer) for p, f in report.fenced) == sorted(
            (p, o, d["enforcer_id"]) for p, o, d in found.fenced
        )
        assert all(p.covered == p.records for p in report.partitions)
        # Replay skips the same writes.
        assert sum(p.fenced for p in found.replayed.partitions.values()) == len(found.fenced)

        # One effective decision for every action, whoever wrote it.
        missing = set(traffic.sent) - set(effective)
        if missing:
            raise LostDecision(_whereabouts(log, missing, found))
        assert set(effective) == set(traffic.sent)
        # Both enforcers decided (the freezes moved partitions both ways).
        assert {ds[0]["enforcer_id"] for ds in effective.values()} == set(NAMES)
        # No budget counted twice, no fenced decision counted at all: the same effects as
        # every action decided once, in log order, from scratch; replay agrees.
        logged = {rid: ds[0]["effect"] for rid, ds in effective.items()}
        assert logged == recompute_effects(log, ruleset)
        effects = Counter(logged.values())
        assert effects["allow"] > 0 and effects["deny"] > 0, effects
        assert found.replayed.ok, found.replayed.findings
        # Each agent got an enforcer's answer, and it is the effective decision.
        for request_id, answer in traffic.answers.items():
            assert not answer.client_side, answer
            [decision] = effective[request_id]
            assert (answer.enforcer_id, answer.evaluated_at, answer.effect) == (
                decision["enforcer_id"],
                decision["evaluated_at"],
                decision["effect"],
            )
    return found


def _run(url: str, backend: Backend, tmp_path: Path) -> None:
    files = read_bundle_dir(EXAMPLES)
    with open_log(url) as log:
        ensure_topics(log)
        publish_bundle(log, files, compile_bundle(files).bundle_id, actor="test")
        agents = _agents(len(log.partitions(ACTIONS)))
    # Enforced before any enforcer runs, so no action is denied for want of a ruleset.
    assert cli(["controller", "--log", url, "--once"]) == 0
    enforcers = Enforcers(url, tmp_path)
    traffic = Traffic(url, agents, backend.interval_s)
    stream = threading.Thread(target=traffic.run, name="traffic")
    with open_log(url) as watch_log:
        watch = Watch(watch_log)
        freezes = Freezes(enforcers, watch, backend)
        try:
            # The stream first: the client's reader then starts before the first takeover
            # marker, so it knows every partition's owner (its documented limit).
            stream.start()
            enforcers.start()
            freezes.run()
            traffic.stop.set()
            # Both running again: every request gets its effective decision. Waited for
            # only while decisions keep coming: one that is lost never comes (the checks
            # below say which).
            watch.until_quiet(lambda: set(traffic.sent) <= watch.decided, backend.quiet_s)
        finally:
            traffic.stop.set()
            traffic.drained.set()
            stream.join()
            enforcers.stop()
        fenced_live = watch.fenced
    assert traffic.failures == [], traffic.failures
    # Shown if a check fails: when each freeze began, and what the enforcers said.
    print("\n".join(freezes.log))
    for name in NAMES:
        print(f"--- {name} stderr:\n{enforcers.stderr(name)}")
    found = _check(url, traffic, tmp_path)
    assert freezes.taken_while_frozen >= 1, freezes.log
    print(
        f"\nfreeze test {url.split(':', maxsplit=1)[0]}: {len(traffic.sent)} requests"
        f" ({traffic.resent} re-sent), {backend.freezes} freezes ({freezes.just_gained}"
        f" right after a takeover, {freezes.taken_while_frozen} taken over while frozen),"
        f" fenced writes: {len(found.fenced)} (seen live: {fenced_live})\n  "
        + "\n  ".join(freezes.log)
    )


@pytest.fixture
def sqlite_url(tmp_path: Path) -> Iterator[str]:
    # A short session: a frozen member loses its partitions after 1.5 s.
    yield f"sqlite:///{tmp_path / 'log.db'}?session_timeout_ms=1500&heartbeat_interval_ms=100"


def test_freeze_past_the_session_embedded(sqlite_url: str, tmp_path: Path) -> None:
    _run(sqlite_url, EMBEDDED, tmp_path)


@pytest.mark.kafka
def test_freeze_past_the_session_kafka(tmp_path: Path) -> None:
    from ordinance.streams.kafka_broker import start_broker

    with start_broker() as broker:
        _run(broker.url, KAFKA, tmp_path)


# -- the stale takeover marker -------------------------------------------------------------


def _enforced_log(tmp_path: Path) -> tuple[str, int]:
    """An embedded log with the example bundle in force; the billing agent's partition."""
    url = f"sqlite:///{tmp_path / 'log.db'}"
    files = read_bundle_dir(EXAMPLES)
    with open_log(url) as log:
        ensure_topics(log)
        publish_bundle(log, files, compile_bundle(files).bundle_id, actor="test")
        partition = partition_for(b"billing-bot", len(log.partitions(ACTIONS)))
    assert cli(["controller", "--log", url, "--once"]) == 0
    return url, partition


def test_a_takeover_marker_written_after_losing_the_partition_loses_no_decision(
    tmp_path: Path,
) -> None:
    """What the freeze test ran into: X is given a partition, is frozen before it writes
    its takeover marker, and Y gets the partition (X's session expired) and decides on.
    X resumes and writes the marker it was about to write: by the log's rule X owns the
    partition now, so everything Y decides after it is fenced; Y, still the group's owner,
    commits those actions, and a later owner resumed after them — unless Y notices the
    marker after its own and takes the partition over again. Built on the embedded log
    by writing X's marker while Y runs (nothing but the log tells Y of it)."""
    url, partition = _enforced_log(tmp_path)
    send(url, *(transfer(f"q{i}", "100", i) for i in range(3)))
    with enforcer_thread(url, enforcer_id="Y", clock=lambda: T0) as owner, open_log(url) as log:
        watch = Watch(log)
        assert watch.until(lambda: {"q0", "q1", "q2"} <= watch.decided, 30.0)
        Enforcer(log, enforcer_id="X", clock=lambda: T0)._take_over(partition)  # stale
        send(url, *(transfer(f"q{i}", "100", i) for i in range(3, 5)))
        # Y decides q3 and q4 after X's marker: fenced, and committed.
        assert watch.until(lambda: {"q3", "q4"} <= watch.written, 30.0)
        owner.check()
    with open_log(url) as log:
        Enforcer(log, enforcer_id="Z", clock=lambda: T0).run(until_idle=True, idle_s=0.5)
        found = _read_decisions(log)
    missing = {f"q{i}" for i in range(5)} - found.effective.keys()
    if missing:
        raise LostDecision(f"{sorted(missing)}\n{found.timeline}")


def test_an_approval_answered_after_a_stale_marker_is_answered_again(tmp_path: Path) -> None:
    """The same stale marker, with an approval behind it: Y's follow-up decision for the
    approved request lands after X's marker and is fenced like any other write, and the
    approval, committed, would never be read again — the request would stay pending for
    good. Y's re-takeover reads the approvals again too, and the request is approved."""
    url, partition = _enforced_log(tmp_path)
    send(url, transfer("big", "12000", 0), transfer("q0", "100", 1))
    with enforcer_thread(url, enforcer_id="Y", clock=lambda: T0) as owner, open_log(url) as log:
        watch = Watch(log)
        assert watch.until(lambda: {"big", "q0"} <= watch.decided, 30.0)
        Enforcer(log, enforcer_id="X", clock=lambda: T0)._take_over(partition)  # stale
        answer(log, "big", approve=True, approver="dana")
        # Y's follow-up lands after X's marker (fenced); Y then takes the partition over
        # again: its second marker.
        assert watch.until(lambda: watch.markers["Y"] >= 2, 30.0), watch.markers
        assert watch.until(lambda: watch.fenced >= 1, 30.0)
        send(url, transfer("q1", "100", 2))  # decided after the approvals were read again
        assert watch.until(lambda: "q1" in watch.decided, 30.0)
        owner.check()
    with open_log(url) as log:
        found = _read_decisions(log)
    codes = [d["code"] for d in found.effective["big"]]
    assert codes == ["matched", "approved"], f"{codes}\n{found.timeline}"
    assert any(d["request_id"] == "big" for _, _, d in found.fenced), found.timeline
