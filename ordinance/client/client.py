"""The agent client: publish an intent, await its decision.

How an answer finds its way back
--------------------------------
A request is published to ``agent.actions`` keyed by agent id; the enforcer writes its
Decision to ``agent.decisions`` on the *same partition* as the action. So the client reads
only the decisions partitions its own actions went to, with one reader thread and one
consumer for all of them (each consumer costs the broker a fetch every few milliseconds
even when idle), and hands each Decision to the waiting caller by request id (a second
Decision for the same id finds nobody waiting and is ignored). A Decision written after
another enforcer's takeover marker on its partition is no answer at all: its writer had
lost the partition (frozen past its group session, then resumed), the log's fold leaves
it out, and the partition's owner decides the request itself (`audit.fence`). The reader
knows the owner from the markers it reads; it starts at the end of a partition, so a
writer fenced by a marker written before that start is not recognised (docs/guarantees.md,
"Zombie writers", says when that can matter).

Where a reader starts matters: it must start at or before the offset the Decision will get,
or the answer is skipped. A Decision is written only after its action was published, so the
end of the decisions partition observed *before* publishing is a safe start. On the embedded
log that end is exact. On Kafka it comes from the high watermark, which the local test
broker may under-report — which only makes the reader start earlier and skip a few extra
records; it can never make it start too late. The watermark is used only as this lower
bound: the client never concludes from it that an answer does not exist (only its timeout
says that). AtTime seeks are not used at all: record timestamps are event times set by
clients (and the broker's receive time on the test broker), so they bound nothing.

The partition is the key's partition (`partition_for`, the same murmur2 hashing on both
backends), set explicitly on the record so the client knows it before publishing and can
start the reader first; the delivery report then confirms it.

Failing closed
--------------
``decide`` never raises for a failure to get an answer: a timeout, a log failure or a
request that cannot be encoded all come back as a deny `ClientDecision` with a client-side
code (`ordinance.client.decision`). A late answer after a timeout is ignored.

Threads, not the event loop, do the I/O (the Log API is blocking): one publisher thread
batches what concurrent callers submit into one produce call, and the reader polls. The
publisher does not wait for a batch's acknowledgement before sending the next (on a busy
broker that wait held every request behind the previous batch); acknowledgements are
served between batches, and a batch that fails is denied to its callers. The
asyncio API wraps `concurrent.futures.Future`s, so the same engine serves `SyncClient`.

Bounded by the caller
---------------------
A log call can block far longer than any caller wants to wait: a write waits up to the
SQLite busy timeout (30 s) for another process's lock, a Kafka metadata request up to the
log's ``timeout_s`` for a broker that is down or paused. So no caller waits on a log
call: opening waits at most ``open_timeout`` (and an existing embedded log is opened
without the write lock), ``decide`` at most its ``timeout``, and `close` at most its
``timeout``. A thread still inside a log call when `close` gives up is left to finish on
its own (the threads are daemons); whatever it was doing was already denied to its
callers, and the closed log writes nothing more.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import datetime as dt
import os
import queue
import socket
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from ordinance.client.decision import (
    CLIENT_CLOSED,
    CLIENT_INVALID_REQUEST,
    CLIENT_TIMEOUT,
    TRANSPORT_ERROR,
    ClientDecision,
    client_deny,
    decision_from_wire,
)
from ordinance.closing import Closing
from ordinance.identity.signing import AGENT_KEY_ENV, PrincipalSigner
from ordinance.keys import Signer
from ordinance.policy.decision import REQUIRE_APPROVAL
from ordinance.streams import (
    AtOffset,
    Delivered,
    Log,
    Record,
    TopicPartition,
    open_log,
    partition_for,
    records,
)
from ordinance.streams.errors import ProduceError
from ordinance.streams.log import Headers
from ordinance.streams.serde import Decoded, Serde
from ordinance.streams.topics import AGENT_ACTIONS, AGENT_DECISIONS, DEFAULT_PREFIX
from ordinance.wire import request_to_wire

DEFAULT_TIMEOUT_S = 2.0
_BATCH = 500  # most requests one produce call carries
# How long the reader blocks in poll: bounds how fast close() returns and how soon a newly
# used partition is read (its answers are never missed, only picked up a little later).
_POLL_S = 0.05
_SERVE_S = 0.005  # while acknowledgements are outstanding, how often the publisher serves them
DEFAULT_OPEN_TIMEOUT_S = 5.0  # how long the constructor may wait for the log
DEFAULT_CLOSE_TIMEOUT_S = 5.0  # how long close() may take, letting outstanding publishes finish
_MAX_FOLLOW_UPS = 10_000  # unanswered approvals remembered; a human may never answer
_TAKEOVER = "EnforcerTakeover"
_READ = frozenset({"Decision", _TAKEOVER})  # answers, and who may write them

Request = Mapping[str, Any]


def default_client_id() -> str:
    return f"ordinance-client-{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:8]}"


@dataclass(eq=False, slots=True)
class _Pending:
    request_id: str
    key: bytes
    value: bytes
    event_time_ms: int
    headers: Headers = ()
    future: concurrent.futures.Future[ClientDecision] = field(
        default_factory=concurrent.futures.Future
    )
    partition: int = -1


@dataclass(frozen=True, slots=True)
class _FollowUp:
    ticket: str
    future: concurrent.futures.Future[ClientDecision]


def _settle(future: concurrent.futures.Future[ClientDecision], decision: ClientDecision) -> None:
    # The first answer wins; a caller that gave up has cancelled the future.
    if not future.done():
        with contextlib.suppress(concurrent.futures.InvalidStateError):
            future.set_result(decision)


class _Reader:
    """Reads the decisions partitions the client's actions went to, each from a known-safe
    offset, with one consumer; settles waiting futures."""

    def __init__(self, engine: _Engine) -> None:
        self._engine = engine
        self._stop = threading.Event()
        self._added: queue.SimpleQueue[tuple[int, int]] = queue.SimpleQueue()
        self.starts: dict[int, int] = {}  # partition -> the offset reading began at
        # partition -> the enforcer of the latest takeover marker read there
        self.owners: dict[int, str] = {}
        self.fenced = 0  # decisions ignored: their writer had lost the partition
        self.thread = threading.Thread(
            target=self._run, name="ordinance-client-decisions", daemon=True
        )

    def add(self, partition: int, start: int) -> None:
        """Read ``partition`` from ``start`` on (picked up at the reader's next poll)."""
        self.starts[partition] = start
        self._added.put((partition, start))

    def stop(self) -> None:
        self._stop.set()

    def _fenced(self, partition: int, datum: records.Decision) -> bool:
        """A decision written after another enforcer's takeover marker: its writer had
        lost the partition (frozen, then resumed), the log's fold leaves it out and the
        owner decides the request itself, so it is no answer (`audit.fence`; the rule is
        restated here because the client imports nothing from the processors)."""
        owner = self.owners.get(partition)
        return owner is not None and datum["enforcer_id"] != owner

    def _run(self) -> None:
        engine = self._engine
        positions: dict[TopicPartition, int] = {}
        try:
            with engine.log.consumer(None) as consumer:
                while not self._stop.is_set():
                    if not self._added.empty():
                        while not self._added.empty():
                            partition, start = self._added.get()
                            positions[TopicPartition(engine.decisions_topic, partition)] = start
                        # Reassigning restarts each partition where this reader got to.
                        consumer.assign({tp: AtOffset(at) for tp, at in positions.items()})
                    for record in consumer.poll(max_records=500, timeout=_POLL_S):
                        positions[record.position] = record.offset + 1
                        # Control records (swaps) and undecodable bytes are not answers;
                        # an undecodable answer leaves its caller to time out.
                        decoded = engine.serde.decode_record(record, expect=_READ)
                        if not isinstance(decoded, Decoded):
                            continue
                        if decoded.name == _TAKEOVER:
                            takeover = records.decoded_record(decoded, records.EnforcerTakeover)
                            self.owners[record.partition] = takeover["enforcer_id"]
                            continue
                        datum = records.decoded_record(decoded, records.Decision)  # by _READ
                        if self._fenced(record.partition, datum):
                            self.fenced += 1
                        else:
                            engine.answer(datum, record.partition)
        except Exception as exc:  # reported to the callers waiting on this reader
            engine.reader_failed(self, f"reading {engine.decisions_topic}: {exc}")


class _Engine:
    """The thread side of a client: publisher, readers, and the table of waiting requests."""

    def __init__(self, log: Log, prefix: str, client_id: str) -> None:
        self.log = log
        self.client_id = client_id
        self.actions_topic = prefix + AGENT_ACTIONS
        self.decisions_topic = prefix + AGENT_DECISIONS
        self.serde = Serde()
        self._lock = threading.Lock()  # guards _pending, _reader, _closed
        self._pending: dict[str, _Pending] = {}
        self._reader: _Reader | None = None
        self._reader_error = "no reader"  # the last reader failure, for denies
        # require_approval answers whose follow-up may still come, oldest first
        self._follow_ups: OrderedDict[str, _FollowUp] = OrderedDict()
        self._partitions: int | None = None
        self._closed = False
        self._close_deadline = 0.0  # set by close() before it tells the publisher to stop
        self._queue: queue.SimpleQueue[_Pending | None] = queue.SimpleQueue()
        self._publisher = threading.Thread(
            target=self._publish_loop, name="ordinance-client-publisher", daemon=True
        )
        self._publisher.start()

    # -- callers -------------------------------------------------------------------------

    def submit(self, item: _Pending) -> None:
        with self._lock:
            closed = self._closed
        if closed:
            self._deny(item, CLIENT_CLOSED, "the client is closed")
        else:
            self._queue.put(item)

    def forget(self, request_id: str) -> None:
        """The caller stopped waiting: a late answer then finds nobody."""
        with self._lock:
            self._pending.pop(request_id, None)

    # -- readers -------------------------------------------------------------------------

    def answer(self, datum: records.Decision, partition: int) -> None:
        request_id = datum["request_id"]
        with self._lock:
            item = self._pending.pop(request_id, None)
            if item is None:  # not ours, a duplicate, given up — or an approval follow-up
                self._follow_up_answer(datum, partition)
                return
            decision = decision_from_wire(datum, partition)
            if decision.effect == REQUIRE_APPROVAL and decision.approval_ticket:
                # Registered by this reader before it reads on, so the follow-up decision
                # (later on this same partition) cannot slip past unseen.
                self._follow_ups[request_id] = _FollowUp(
                    decision.approval_ticket, concurrent.futures.Future()
                )
                while len(self._follow_ups) > _MAX_FOLLOW_UPS:
                    self._follow_ups.popitem(last=False)  # the oldest unanswered approval
        _settle(item.future, decision)

    def _follow_up_answer(self, datum: records.Decision, partition: int) -> None:
        """Under the lock: settle a waiting approval with its follow-up decision."""
        waiting = self._follow_ups.get(datum["request_id"])
        if waiting is None or datum.get("approval_ticket") != waiting.ticket:
            return  # not awaited, or bound to other content: never an answer
        if datum["effect"] == REQUIRE_APPROVAL:
            return  # a re-delivered copy of the original, not the answer
        # Kept (settled) rather than removed: a caller that starts waiting after the
        # answer arrived still gets it. The cap bounds what is remembered.
        _settle(waiting.future, decision_from_wire(datum, partition))

    def follow_up(self, request_id: str) -> concurrent.futures.Future[ClientDecision] | None:
        with self._lock:
            waiting = self._follow_ups.get(request_id)
        return None if waiting is None else waiting.future

    def reader_failed(self, reader: _Reader, detail: str) -> None:
        with self._lock:
            if self._reader is reader:
                self._reader = None  # the next request starts a fresh one
            self._reader_error = detail
            lost = [i for i in self._pending.values() if i.partition in reader.starts]
            for item in lost:
                del self._pending[item.request_id]
        for item in lost:
            self._deny(item, TRANSPORT_ERROR, detail)

    # -- publisher -----------------------------------------------------------------------

    def _deny(self, item: _Pending, code: str, detail: str) -> None:
        _settle(
            item.future,
            client_deny(code, detail, request_id=item.request_id, client_id=self.client_id),
        )

    def _publish_loop(self) -> None:
        unacknowledged = 0
        while True:
            try:
                first = self._queue.get(timeout=_SERVE_S) if unacknowledged else self._queue.get()
            except queue.Empty:
                unacknowledged = self._serve(0.0)
                continue
            if first is None:
                while unacknowledged and time.monotonic() < self._close_deadline:
                    unacknowledged = self._serve(min(0.1, self._remaining()))
                return
            batch = [first]
            while len(batch) < _BATCH:
                try:
                    nxt = self._queue.get_nowait()
                except queue.Empty:
                    break
                if nxt is None:
                    self._queue.put(None)  # finish this batch, then stop
                    break
                batch.append(nxt)
            # A caller that already timed out was told deny: do not publish its intent.
            batch = [i for i in batch if not i.future.done()]
            if batch:
                try:
                    self._publish(batch)
                except Exception as exc:  # never let the publisher die with callers waiting
                    self._publish_failed(batch, exc)
            unacknowledged = self._serve(0.0)

    def _serve(self, timeout: float) -> int:
        """Settle the batches acknowledged so far; how many records are still out."""
        try:
            return self.log.serve_deliveries(timeout)
        except Exception:  # the log is failing: its waiting callers time out (deny)
            return 0

    def _publish_failed(self, batch: list[_Pending], exc: Exception) -> None:
        for item in batch:
            self.forget(item.request_id)
            self._deny(item, TRANSPORT_ERROR, f"publishing: {exc}")

    def _publish(self, batch: list[_Pending]) -> None:
        if self._partitions is None:
            actions = len(self.log.partitions(self.actions_topic))
            decisions = len(self.log.partitions(self.decisions_topic))
            if actions != decisions:
                raise RuntimeError(
                    f"{self.actions_topic} has {actions} partitions but"
                    f" {self.decisions_topic} has {decisions}; they must match"
                )
            self._partitions = actions
        for item in batch:
            item.partition = partition_for(item.key, self._partitions)
        self._ensure_readers({item.partition for item in batch})
        orphans: list[tuple[_Pending, str]] = []
        with self._lock:
            # Registered before publishing, so even an instant answer finds its caller; one
            # whose caller gave up meanwhile (future cancelled) is not published at all.
            # Registration and the reader check share the lock with `reader_failed`: a
            # reader that died before this point is seen here, one that dies after fails
            # these requests itself — none is left waiting on a reader that is gone.
            live = []
            reading = self._reader.starts if self._reader is not None else {}
            for item in batch:
                if item.future.done():
                    continue
                if item.partition not in reading:
                    orphans.append((item, self._reader_error))
                    continue
                self._pending[item.request_id] = item
                live.append(item)
            batch = live
        for item, why in orphans:
            self._deny(item, TRANSPORT_ERROR, why)
        if not batch:
            return
        records = [
            Record(item.key, item.value, item.headers, item.event_time_ms, item.partition)
            for item in batch
        ]

        def done(result: list[Delivered] | ProduceError) -> None:
            if isinstance(result, ProduceError):
                self._publish_failed(batch, result)
                return
            for item, where in zip(batch, result, strict=True):
                if where.partition != item.partition:
                    # Cannot happen with an explicit partition; if a backend ever moved it,
                    # the answer would go where nobody reads: fail closed now, not at timeout.
                    self.forget(item.request_id)
                    self._deny(
                        item,
                        TRANSPORT_ERROR,
                        f"delivered to partition {where.partition}, expected {item.partition}",
                    )

        self.log.produce_async(self.actions_topic, records, done)

    def _ensure_readers(self, partitions: set[int]) -> None:
        with self._lock:
            if self._reader is not None and partitions <= self._reader.starts.keys():
                return
        # Observed before this batch is published, so no answer to it can lie below.
        ends = self.log.end_offsets(self.decisions_topic)
        with self._lock:
            if self._closed:
                raise RuntimeError("the client is closed")
            reader = self._reader
            if reader is None:  # the first request, or the last reader failed
                reader = self._reader = _Reader(self)
                reader.thread.start()
            for p in sorted(partitions - reader.starts.keys()):
                reader.add(p, ends.get(p, 0))

    # -- shutdown ------------------------------------------------------------------------

    def _remaining(self) -> float:
        return max(0.0, self._close_deadline - time.monotonic())

    def close(self, timeout: float) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._close_deadline = time.monotonic() + max(0.0, timeout)
        self._queue.put(None)
        # Bounded: the publisher may be inside a log call that waits far longer (a held
        # SQLite lock, a metadata request to a broker that does not answer).
        self._publisher.join(self._remaining())
        stopped = not self._publisher.is_alive()
        while True:  # submitted while closing, after the publisher's last batch
            try:
                late = self._queue.get_nowait()
            except queue.Empty:
                break
            if late is not None:
                self._deny(late, CLIENT_CLOSED, "the client is closed")
        if not stopped:
            self._queue.put(None)  # taken above: the stuck publisher stops when it returns
        with self._lock:
            reader, self._reader = self._reader, None
            waiting = list(self._pending.values())
            self._pending.clear()
        if reader is not None:
            reader.stop()
            reader.thread.join(self._remaining())
        for item in waiting:
            self._deny(item, CLIENT_CLOSED, "the client was closed before an answer arrived")
        with self._lock:
            follow_ups = list(self._follow_ups.items())
            self._follow_ups.clear()
        for request_id, entry in follow_ups:
            _settle(
                entry.future,
                client_deny(
                    CLIENT_CLOSED,
                    "the client was closed before the approval was answered",
                    request_id=request_id,
                    client_id=self.client_id,
                ),
            )
        # What is still unacknowledged fails (its callers were all answered above).
        self.log.close(timeout=self._remaining())

    def stats(self) -> dict[str, Any]:
        with self._lock:
            return {
                "in_flight": len(self._pending),
                "readers": dict(sorted(self._reader.starts.items())) if self._reader else {},
                "fenced_ignored": self._reader.fenced if self._reader else 0,
            }


class Client(Closing):
    """An agent's connection to Ordinance: ``await client.decide(action)``.

    ``agent_id`` (with ``roles``/``attributes``) is the agent that requests made with a bare
    action speak for; a full request names its own agent. ``clock`` gives event times
    (seconds since the epoch), injectable for tests and replays. Opening the log happens
    here, within ``open_timeout`` seconds: a bad URL, a missing or unusable log raises
    `LogError`; nothing after that raises for transport reasons. An embedded log is
    created only with ``create=True``: a mistyped path must not become an empty log
    that no enforcer reads.
    """

    def __init__(
        self,
        log_url: str,
        *,
        agent_id: str | None = None,
        roles: tuple[str, ...] | list[str] = (),
        attributes: Mapping[str, Any] | None = None,
        topic_prefix: str = DEFAULT_PREFIX,
        client_id: str | None = None,
        clock: Callable[[], float] = time.time,
        create: bool = False,
        open_timeout: float = DEFAULT_OPEN_TIMEOUT_S,
        key: str | Path | PrincipalSigner | None = None,
    ) -> None:
        """``key``: the agent's private key (a PEM path, or a `PrincipalSigner`) — every
        intent is signed with it over its exact value bytes; None reads the path in
        ``$ORDINANCE_AGENT_KEY`` if set, else sends unsigned (an enforcer with a trust
        root denies those: ``unsigned``). A path's key signs as the request's agent id."""
        self.client_id = client_id or default_client_id()
        self._signer: Signer | None = None
        self._principal: str | None = None
        if isinstance(key, PrincipalSigner):
            self._signer, self._principal = key.signer, key.principal_id
        elif key is not None:
            self._signer = Signer.from_file(Path(key))
        elif os.environ.get(AGENT_KEY_ENV):
            self._signer = Signer.from_file(Path(os.environ[AGENT_KEY_ENV]))
        self.agent: dict[str, Any] | None = None
        if agent_id is not None:
            self.agent = {**(attributes or {}), "id": agent_id, "roles": list(roles)}
        self._clock = clock
        log = open_log(log_url, create=create, open_timeout_s=open_timeout)
        self._engine = _Engine(log, topic_prefix, self.client_id)

    @property
    def actions_topic(self) -> str:
        return self._engine.actions_topic

    @property
    def decisions_topic(self) -> str:
        return self._engine.decisions_topic

    def stats(self) -> dict[str, Any]:
        """In-flight requests and the decisions partitions read (with their start offsets)."""
        return self._engine.stats()

    # -- building a request --------------------------------------------------------------

    def _request(self, action_or_request: Request) -> dict[str, Any]:
        if not isinstance(action_or_request, Mapping):
            raise TypeError(f"expected a request or an action mapping, got {action_or_request!r}")
        if "action" in action_or_request:
            request = dict(action_or_request)
        elif "tool" in action_or_request:
            request = {"action": dict(action_or_request)}
        else:
            raise ValueError("neither a request (with 'action') nor an action (with 'tool')")
        if request.get("agent") is None:
            if self.agent is None:
                raise ValueError("no agent: pass agent_id to the Client or an agent in the request")
            request["agent"] = self.agent
        return request

    def _submit(
        self,
        action_or_request: Request,
        request_id: str | None = None,
        event_time: dt.datetime | None = None,
        headers: Headers | None = None,
    ) -> _Pending | ClientDecision:
        """A queued request, or the deny explaining why it was not sent."""
        request_id = request_id or str(uuid.uuid4())
        try:
            request = self._request(action_or_request)
            if event_time is None:
                event_time = dt.datetime.fromtimestamp(self._clock(), dt.UTC)
            now = event_time.timestamp()
            datum = request_to_wire(
                request,
                request_id=request_id,
                event_time=event_time,
                client_id=self.client_id,
                reply_to=self.decisions_topic,
            )
            value = self._engine.serde.encode("ActionRequest", datum)
            key = str(datum["agent"]["id"]).encode()
            if headers is None:
                headers = ()
                if self._signer is not None:
                    principal = self._principal or str(datum["agent"]["id"])
                    headers = PrincipalSigner(principal, self._signer).headers(value)
        except Exception as exc:  # whatever cannot be sent is denied, never published
            return client_deny(
                CLIENT_INVALID_REQUEST,
                f"request not sent: {type(exc).__name__}: {exc}",
                request_id=request_id,
                client_id=self.client_id,
            )
        item = _Pending(request_id, key, value, int(now * 1000), headers)
        self._engine.submit(item)
        return item

    def _timed_out(self, item: _Pending, timeout: float) -> ClientDecision:
        self._engine.forget(item.request_id)
        return client_deny(
            CLIENT_TIMEOUT,
            f"no decision within {timeout:.3g}s",
            request_id=item.request_id,
            client_id=self.client_id,
        )

    # -- deciding ------------------------------------------------------------------------

    async def decide(
        self,
        action_or_request: Request,
        *,
        timeout: float = DEFAULT_TIMEOUT_S,
        request_id: str | None = None,
        event_time: dt.datetime | None = None,
        headers: Headers | None = None,
    ) -> ClientDecision:
        """Publish the intent and await its decision; deny (client-side) on any failure.

        For a gateway speaking for an agent (``ordinance gateway``): ``request_id`` and
        ``event_time`` as the agent chose them, and ``headers`` the record
        headers to publish instead of this client's own signature (the agent's signature
        over its HTTP body; ``()`` publishes unsigned)."""
        item = self._submit(action_or_request, request_id, event_time, headers)
        if isinstance(item, ClientDecision):
            return item
        waiting = asyncio.wrap_future(item.future)
        try:
            return await asyncio.wait_for(waiting, timeout)
        except TimeoutError:
            return self._timed_out(item, timeout)
        finally:
            # Also when the caller is cancelled: nobody waits any more. Cancel first, so
            # the publisher (which checks under the lock) cannot register it afterwards.
            item.future.cancel()
            self._engine.forget(item.request_id)

    def decide_sync(
        self, action_or_request: Request, *, timeout: float = DEFAULT_TIMEOUT_S
    ) -> ClientDecision:
        """`decide` for synchronous code; blocks the calling thread only."""
        item = self._submit(action_or_request)
        if isinstance(item, ClientDecision):
            return item
        try:
            return item.future.result(timeout)
        except concurrent.futures.TimeoutError:
            item.future.cancel()
            return self._timed_out(item, timeout)

    # -- approvals -----------------------------------------------------------------------

    def _not_awaitable(self, decision: ClientDecision) -> ClientDecision | None:
        """The answer when there is nothing to wait for, else None."""
        if decision.effect != REQUIRE_APPROVAL:
            return decision  # already final
        if self._engine.follow_up(decision.request_id) is None:
            return client_deny(
                CLIENT_TIMEOUT,
                "no approval for this request can be awaited here (not asked by this"
                " client, already answered, or forgotten)",
                request_id=decision.request_id,
                client_id=self.client_id,
            )
        return None

    def _approval_timed_out(self, decision: ClientDecision, timeout: float) -> ClientDecision:
        return client_deny(
            CLIENT_TIMEOUT,
            f"approval ticket {decision.approval_ticket} not answered within {timeout:g}s",
            request_id=decision.request_id,
            client_id=self.client_id,
        )

    def awaits_approval(self, request_id: str) -> bool:
        """Whether this client can still wait for the approval of ``request_id`` (it asked
        and got require_approval, and has not forgotten it; answered or not)."""
        return self._engine.follow_up(request_id) is not None

    async def wait_for_approval(
        self, decision: ClientDecision, *, timeout: float
    ) -> ClientDecision:
        """The follow-up decision to a require_approval answer from this client: allow
        (approved) or deny (rejected, expired). A client-side deny when none arrives within
        ``timeout``; the approval stays awaitable, so waiting again is fine."""
        final = self._not_awaitable(decision)
        if final is not None:
            return final
        future = self._engine.follow_up(decision.request_id)
        if future is None:  # answered or forgotten in between
            return self._not_awaitable(decision) or decision
        try:
            # Shielded: giving up this wait must not cancel the follow-up for a later one.
            return await asyncio.wait_for(asyncio.shield(asyncio.wrap_future(future)), timeout)
        except TimeoutError:
            return self._approval_timed_out(decision, timeout)

    def wait_for_approval_sync(self, decision: ClientDecision, *, timeout: float) -> ClientDecision:
        """`wait_for_approval` for synchronous code."""
        final = self._not_awaitable(decision)
        if final is not None:
            return final
        future = self._engine.follow_up(decision.request_id)
        if future is None:
            return self._not_awaitable(decision) or decision
        try:
            return future.result(timeout)
        except concurrent.futures.TimeoutError:
            return self._approval_timed_out(decision, timeout)

    # -- shutdown ------------------------------------------------------------------------

    def close(self, timeout: float = DEFAULT_CLOSE_TIMEOUT_S) -> None:
        """Stop the threads and close the log, within ``timeout`` seconds whatever the log
        is doing; requests still waiting get client_closed."""
        self._engine.close(timeout)

    async def aclose(self, timeout: float = DEFAULT_CLOSE_TIMEOUT_S) -> None:
        await asyncio.to_thread(self.close, timeout)

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()


class SyncClient(Closing):
    """The blocking face of `Client`, for code without an event loop."""

    def __init__(self, log_url: str, **options: Any) -> None:
        self.client = Client(log_url, **options)

    @property
    def client_id(self) -> str:
        return self.client.client_id

    def decide(
        self, action_or_request: Request, *, timeout: float = DEFAULT_TIMEOUT_S
    ) -> ClientDecision:
        return self.client.decide_sync(action_or_request, timeout=timeout)

    def wait_for_approval(self, decision: ClientDecision, *, timeout: float) -> ClientDecision:
        return self.client.wait_for_approval_sync(decision, timeout=timeout)

    def close(self, timeout: float = DEFAULT_CLOSE_TIMEOUT_S) -> None:
        self.client.close(timeout)
