"""Checking a batch's intent signatures in another process while the batch is decided
(Ed25519 verification dominates the cost of identity: ~50 µs a signature).

Processes, not threads: libsodium releases the GIL while it verifies, but a thread that
gave the GIL up waits for the busy deciding thread's switch interval to get it back —
measured here, a verify on a thread beside a thread running Python took ~4.9 ms instead of
45 µs, so worker threads verified ~200 signatures/s.

One worker process and one pipe, not a ``ProcessPoolExecutor``: the executor pickles each
unit of work on a management thread of the deciding process, and that thread competed for
the GIL with the deciding thread — identity ran at 0.52x the plain rate although the
deciding thread alone (signatures taken as valid) kept 0.85x (bench/pipeline_bench.py).
Here `prepare` packs the whole batch into one message (raw key, signature, value per
intent) and returns; the worker answers chunk by chunk (`VERIFY_CHUNK` verdicts a
message) and the deciding thread reads what has arrived when it needs a verdict; one that
has not arrived yet it does not wait for but verifies itself (the worker is usually ahead;
on a busy machine it may not be, and waiting would stall the deciding thread). Every message carries the batch's sequence number, so
verdicts of an earlier batch (intents refused before their signature mattered) are read
and dropped, and the pipe never fills. The worker is started on the first batch of at least
`PARALLEL_FROM` signatures, with ``spawn`` (the enforcer has threads: forking a process with
threads can deadlock), and is sent batches only once it has said it is ready: a new
interpreter takes a few hundred milliseconds to import what it verifies with, and a batch
written to it before then blocked the deciding thread for that long (145 ms of a 1.7 s
backlog in bench/pipeline_bench.py). Until then, with one core, for a small batch, or after
the worker died (a new one is started on the next batch), signatures are verified inline.

Only an optimisation, never a judgement: `PreVerifier.verify` answers from the batch's
results only for the very key object (the registry does not change inside a batch) and the
same value bytes and signature; anything else is verified on the spot. Which key a
signature is checked with, and whether that key may be used, stays ``judge_intent``'s
decision, so replay — which verifies everything itself — decides the same.
"""

from __future__ import annotations

import multiprocessing
import struct
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from ordinance.identity.http_signing import signed_body
from ordinance.identity.signing import (
    SignatureError,
    raw_signatures_valid,
    signature_of,
    signature_valid,
)
from ordinance.processors.identity_gate import PartitionIdentity
from ordinance.streams.log import Headers

#: Verdicts per message from the worker: the deciding thread waits at most this many
#: verifications for the first intent of a batch.
VERIFY_CHUNK = 16
#: A batch with fewer signatures is verified by the deciding thread alone: the worker
#: process is started (once, ~0.5 s) only for traffic that gains from it.
PARALLEL_FROM = 64

_BATCH = struct.Struct(">IIH")  # sequence, jobs, chunk size
_JOB = struct.Struct(">32s64sI")  # raw public key, signature, value length
_VERDICTS = struct.Struct(">II")  # sequence, chunk index
_READY = b"ready"  # the worker's first message: it has imported what it verifies with

Job = tuple[Ed25519PublicKey, bytes, bytes]  # key object, value, signature


@dataclass
class _Batch:
    sequence: int
    jobs: list[Job]
    sent: bool  # to the worker; else every chunk is verified here
    verdicts: dict[int, list[bool]] = field(default_factory=dict)  # chunk index -> verdicts


class PreVerifier:
    """See the module docstring. ``workers``: the cores there are; with one, everything is
    verified inline. With more, still one worker process: it verifies ~22k signatures/s
    (~45 µs each), more than the one deciding thread decides with identity (~12-13k/s,
    bench/pipeline_bench.py), so a second worker would wait for the deciding thread."""

    def __init__(self, workers: int) -> None:
        self.workers = max(1, workers)
        self.worker: BaseProcess | None = None
        self._conn: Connection | None = None
        self._ready = False  # the worker has said so: batches go to it from now on
        self._sequence = 0
        self._batch = _Batch(0, [], sent=False)
        # signature -> (key object, value, position in the batch)
        self.index: dict[bytes, tuple[Ed25519PublicKey, bytes, int]] = {}

    def prepare(self, items: list[tuple[PartitionIdentity, bytes | None, Headers]]) -> None:
        """Send each signature whose signer and key the registry knows to the worker."""
        jobs: list[Job] = []
        self.index = {}
        for identity, value, headers in items:
            try:
                signature = signature_of(headers)
                if signed_body(headers) is not None:
                    continue  # signed over an HTTP body: judge_intent verifies that itself
            except SignatureError:
                continue
            if signature is None or value is None:
                continue
            principal = identity.registry.get(signature.signer_id)
            key = principal.key(signature.key_id) if principal is not None else None
            if key is not None and signature.signature not in self.index:
                # A copy in the same batch is verified once.
                self.index[signature.signature] = (key.public, value, len(jobs))
                jobs.append((key.public, value, signature.signature))
        self._sequence += 1
        sent = len(jobs) >= PARALLEL_FROM and self._send(self._sequence, jobs)
        self._batch = _Batch(self._sequence, jobs, sent)

    @property
    def sent(self) -> bool:
        """Whether the last batch went to the worker process."""
        return self._batch.sent

    def verify(self, public: Ed25519PublicKey, value: bytes, signature: bytes) -> bool:
        hit = self.index.get(signature)
        if hit is not None and hit[0] is public and hit[1] == value:
            chunk, position = divmod(hit[2], VERIFY_CHUNK)
            verdicts = self._verdicts(chunk)
            if verdicts is not None:
                return verdicts[position]
        return signature_valid(public, value, signature)

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()  # the worker reads EOF and exits
            self._conn = None
        if self.worker is not None:
            self.worker.join(timeout=5)
            if self.worker.is_alive():
                self.worker.kill()
            self.worker = None

    # -- the worker ---------------------------------------------------------------------
    def _send(self, sequence: int, jobs: list[Job]) -> bool:
        """Whether the batch went to the worker (started on first use)."""
        if self.workers < 2:
            return False
        try:
            conn = self._connection()
            if not self._ready:
                # Started, not ready yet: writing now would block until it is.
                self._ready = conn.poll() and conn.recv_bytes() == _READY
                if not self._ready:
                    return False
            self._drain(conn)
            parts = [_BATCH.pack(sequence, len(jobs), VERIFY_CHUNK)]
            for public, value, signature in jobs:
                # Any length but 64 is never valid (signature_valid): sent as zeros, refused.
                sent = signature if len(signature) == 64 else b"\0" * 64
                parts.append(_JOB.pack(public.public_bytes_raw(), sent, len(value)))
                parts.append(value)
            conn.send_bytes(b"".join(parts))
        except (OSError, EOFError, ValueError):
            self._lost()
            return False
        return True

    def _connection(self) -> Connection:
        if self._conn is None:
            spawn = multiprocessing.get_context("spawn")
            ours, theirs = spawn.Pipe(duplex=True)
            worker = spawn.Process(
                target=_serve, args=(theirs,), name="ordinance-verify", daemon=True
            )
            try:
                worker.start()
            except BaseException:
                ours.close()  # e.g. no processes left (OSError): nothing to join later
                raise
            finally:
                theirs.close()
            self.worker, self._conn, self._ready = worker, ours, False
        return self._conn

    def _drain(self, conn: Connection) -> None:
        """Read and drop what is waiting from earlier batches (the pipe must never fill)."""
        while conn.poll():
            conn.recv_bytes()

    def _verdicts(self, chunk: int) -> list[bool] | None:
        """The chunk's verdicts if the worker has sent them (read what has arrived, never
        wait: a worker behind — on a busy machine — costs a verification here, not a stall
        of the deciding thread), or the whole chunk verified here when the batch was not
        sent; None: verify this one signature here."""
        batch = self._batch
        found = batch.verdicts.get(chunk)
        if found is not None:
            return found
        if batch.sent and self._conn is not None:
            try:
                while chunk not in batch.verdicts and self._conn.poll():
                    message = self._conn.recv_bytes()
                    sequence, index = _VERDICTS.unpack_from(message)
                    if sequence == batch.sequence:
                        batch.verdicts[index] = [b == 1 for b in message[_VERDICTS.size :]]
                return batch.verdicts.get(chunk)
            except (OSError, EOFError):
                self._lost()
        jobs = batch.jobs[chunk * VERIFY_CHUNK : (chunk + 1) * VERIFY_CHUNK]
        verdicts = [signature_valid(public, value, sig) for public, value, sig in jobs]
        batch.verdicts[chunk] = verdicts
        return verdicts

    def _lost(self) -> None:
        """The worker died (or its pipe broke): verify here; start a new one next batch."""
        self._batch.sent = False
        self.close()


def _serve(conn: Connection) -> None:
    """The worker: say it is ready, then verify each batch, one message of verdicts per
    chunk, until EOF."""
    try:
        conn.send_bytes(_READY)
    except (OSError, EOFError):
        return
    while True:
        try:
            message = conn.recv_bytes()
        except (EOFError, OSError):
            return
        sequence, count, chunk = _BATCH.unpack_from(message)
        at = _BATCH.size
        jobs: list[tuple[bytes, bytes, bytes]] = []
        for _ in range(count):
            public, signature, length = _JOB.unpack_from(message, at)
            at += _JOB.size
            jobs.append((public, message[at : at + length], signature))
            at += length
        for index, start in enumerate(range(0, count, chunk)):
            verdicts = raw_signatures_valid(jobs[start : start + chunk])
            try:
                conn.send_bytes(_VERDICTS.pack(sequence, index) + bytes(verdicts))
            except (OSError, EOFError):
                return
