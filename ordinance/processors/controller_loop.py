"""The controller as a processor: ``policy.changes`` in, the ``policy.active`` table and
rejection alerts out, run by `runtime.Runtime` (the state machine is `controller`).

On start the state is rebuilt (its outputs are in ``policy.active`` already); each change
is then judged and applied, and its outputs are written with its offset commit — one
transaction per batch on the embedded log. ``once`` stops when the changes present at
start are processed.

With a ``trust`` root every change must be signed by a registry principal allowed to
sign it, and come in order (`change_auth`); any other is rejected with its code like an
invalid change. The state is then rebuilt from ``policy.active`` — what was accepted —
rather than by folding the changes again: a change accepted under the registry of its day
stays accepted when a key has since expired. Without one, every well-formed change is
believed (the legacy behaviour).

``signer`` signs every record the controller writes (`active_auth`): a registry principal
with the ``policy-controller`` role, without which enforcers with a trust root believe
nothing on ``policy.active``. It is required with a ``trust`` root — the rebuild from
``policy.active`` believes only signed records too.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ordinance.errors import OrdinanceError
from ordinance.identity.registry import Refusal
from ordinance.identity.signing import PrincipalSigner
from ordinance.identity.trust import TrustRoot
from ordinance.processors.active_auth import CONTROLLER_ROLE
from ordinance.processors.change_auth import DEFAULT_MAX_SKEW, RegistryFollower, judge_change
from ordinance.processors.controller import ControllerState, Output, apply_change, rejection
from ordinance.processors.policy_log import state_from_active
from ordinance.processors.runtime import Emit, ProcessorBase, Runtime
from ordinance.streams import ConsumedRecord, Consumer, Log, Record, TopicPartition
from ordinance.streams.serde import Decoded, Serde
from ordinance.streams.topics import (
    DEFAULT_PREFIX,
    MONITOR_ALERTS,
    POLICY_ACTIVE,
    POLICY_CHANGES,
    ensure_topics,
)

Clock = Callable[[], float]


class ControllerKeyError(OrdinanceError):
    """A controller with a trust root but no key of its own to sign ``policy.active``."""


@dataclass
class ControllerReport:
    applied: int = 0
    rejected: int = 0
    written: int = 0


class Controller(ProcessorBase):
    """The controller's steps (module docstring)."""

    name = "controller"

    def __init__(
        self,
        *,
        prefix: str = DEFAULT_PREFIX,
        group: str = "ordinance.controller",
        once: bool = False,
        clock: Clock = time.time,
        progress: Callable[[str], None] = lambda _message: None,
        trust: TrustRoot | None = None,
        max_skew: dt.timedelta = DEFAULT_MAX_SKEW,
        signer: PrincipalSigner | None = None,
    ) -> None:
        if trust is not None and signer is None:
            raise ControllerKeyError(
                "a controller with a trust root signs what it writes to policy.active, and "
                "believes only signed records there: give it the key of a registry principal "
                f"with the {CONTROLLER_ROLE} role (serve --controller-key, controller --key)"
            )
        self.prefix = prefix
        self.group = group
        self.once = once
        self.clock = clock
        self.progress = progress
        self.trust = trust
        self.max_skew = max_skew
        self.signer = signer
        self.serde = Serde()
        self.state = ControllerState()
        self.report = ControllerReport()
        self.follower = None if trust is None else RegistryFollower.start(trust, prefix)
        self.next_offset = 0
        self.last = -1  # the last change present at start
        self._log: Log | None = None

    def open(self, log: Log, resources: contextlib.ExitStack) -> Consumer:
        self._log = log
        specs = ensure_topics(log, self.prefix)
        changes = specs[POLICY_CHANGES].name
        self.topics = {"active": specs[POLICY_ACTIVE].name, "alerts": specs[MONITOR_ALERTS].name}
        tp = TopicPartition(changes, 0)
        consumer = resources.enter_context(log.consumer(self.group, relaxed=True))
        committed = consumer.committed([tp]).get(tp) or 0
        for record in log.read_to_end(changes):
            self.last = record.offset
            if record.offset < committed and self.follower is None:
                decoded = self.serde.decode_record(record, expect={"PolicyChange"})
                if isinstance(decoded, Decoded):
                    apply_change(self.state, decoded.value, record.offset, self._now())
        if self.follower is not None:
            self.follower.refresh(log)
            self.state = state_from_active(
                log, self.topics["active"], self.serde, self.follower.registry
            )
            self.state.governed = True
            self.progress(
                f"controller: changes must be signed; identity.registry folded to offset "
                f"{self.follower.end_offset} ({len(self.follower.registry.principals)} principal(s))"
            )
        self.progress(
            f"controller: state rebuilt from {committed} change(s); "
            f"{max(0, self.last + 1 - committed)} pending"
        )
        consumer.subscribe([changes])
        self.next_offset = committed
        return consumer

    def finished(self) -> bool:
        return self.once and self.next_offset > self.last

    def prepare(self, records: Sequence[ConsumedRecord]) -> None:
        if self.follower is not None and self._log is not None:
            # Whatever was on the registry before these changes were appended is known.
            self.follower.refresh(self._log)

    def step(self, record: ConsumedRecord) -> list[Emit] | None:
        if record.offset < self.next_offset:
            return None  # redelivered after a rebalance: already applied
        decoded = self.serde.decode_record(record, expect={"PolicyChange"})
        now = self._now()
        if isinstance(decoded, Decoded):
            outputs = self._judge_and_apply(record, decoded.value, now)
        else:
            outputs = [
                rejection(
                    f"undecodable change: {decoded.problem.value}: {decoded.detail}",
                    None,
                    record.offset,
                    now,
                )
            ]
        return self._written(record, outputs, now)

    def failed(self, record: ConsumedRecord, error: Exception) -> list[Emit]:
        """``apply_change`` never raises; a failure around it rejects the change too."""
        reason = f"the controller failed on the change: {type(error).__name__}: {error}"
        return self._written(
            record, [rejection(reason, None, record.offset, self._now())], self._now()
        )

    def _written(
        self, record: ConsumedRecord, outputs: list[Output], now: dt.datetime
    ) -> list[Emit]:
        outputs, encoded = _encode_outputs(
            self.serde, self.topics, outputs, record.offset, now, self.signer
        )
        rejected = any(o.topic == "alerts" for o in outputs)
        self.report.rejected += rejected
        self.report.applied += not rejected
        self.report.written += len(encoded)
        self.next_offset = record.offset + 1
        for o in outputs:
            self.progress(
                f"controller: change {record.offset}: {o.schema} {o.key.decode()}"
                + (f" — {o.datum['message']}" if o.topic == "alerts" else "")
            )
        return [Emit(topic, out) for topic, out in encoded]

    def _judge_and_apply(
        self, record: ConsumedRecord, change: dict[str, Any], now: dt.datetime
    ) -> list[Output]:
        if self.follower is None:
            return apply_change(self.state, change, record.offset, now)
        verdict = judge_change(
            self.follower.registry,
            self.state.rollouts,
            bytes(record.value or b""),
            record.headers,
            change,
            record.offset,
            now,
            self.max_skew,
        )
        if isinstance(verdict, Refusal):
            bundle_id = change.get("bundle_id")
            return [
                rejection(
                    verdict.detail,
                    bundle_id if isinstance(bundle_id, str) else None,
                    record.offset,
                    now,
                    change.get("event"),
                    change.get("actor"),
                    code=verdict.code,
                )
            ]
        self.progress(
            f"controller: change {record.offset} signed by {verdict.principal.id} "
            f"(key {verdict.key_id})"
        )
        return apply_change(self.state, change, record.offset, now)

    def _now(self) -> dt.datetime:
        return dt.datetime.fromtimestamp(self.clock(), dt.UTC)


def run_controller(
    log: Log,
    *,
    prefix: str = DEFAULT_PREFIX,
    group: str = "ordinance.controller",
    once: bool = False,
    stop: threading.Event | None = None,
    clock: Clock = time.time,
    progress: Callable[[str], None] = lambda _message: None,
    trust: TrustRoot | None = None,
    max_skew: dt.timedelta = DEFAULT_MAX_SKEW,
    signer: PrincipalSigner | None = None,
) -> ControllerReport:
    """Process ``policy.changes`` from the group's committed offset until ``stop`` (or,
    with ``once``, the changes present at start); see the module docstring."""
    controller = Controller(
        prefix=prefix,
        group=group,
        once=once,
        clock=clock,
        progress=progress,
        trust=trust,
        max_skew=max_skew,
        signer=signer,
    )
    Runtime(log, controller, max_records=100, poll_timeout_s=0.5, progress=progress).run(stop=stop)
    return controller.report


def _encode_outputs(
    serde: Serde,
    topics: Mapping[str, str],
    outputs: list[Output],
    offset: int,
    now: dt.datetime,
    signer: PrincipalSigner | None = None,
) -> tuple[list[Output], list[tuple[str, Record]]]:
    """The outputs of one change and their records (signed by ``signer`` when given). If
    any output cannot be encoded, the change is rejected instead (one alert): an
    exception here would stop the controller at this record on every restart."""
    try:
        return outputs, [(topics[o.topic], _record(serde, o, now, signer)) for o in outputs]
    except Exception as exc:
        reason = f"the change's outputs could not be encoded for the log: {type(exc).__name__}"
        alert = rejection(reason, None, offset, now)
        return [alert], [(topics[alert.topic], _record(serde, alert, now, signer))]


def _record(
    serde: Serde, output: Output, now: dt.datetime, signer: PrincipalSigner | None
) -> Record:
    value = serde.encode(output.schema, output.datum)
    headers = () if signer is None else signer.headers(value)
    return Record(output.key, value, headers, int(now.timestamp() * 1000))
