"""Avro single-object encoding of the wire contract in ``ordinance/streams/schemas/``.

Every value on the log is ``C3 01`` + the 8-byte little-endian CRC-64-AVRO
(Rabin) fingerprint of the writer schema's parsing canonical form + the Avro
binary body (the Avro specification's "single object encoding"). A reader finds
the writer schema by fingerprint among the schemas it ships (current ones and
``history/``) and resolves it to its own current schema of the same name, so a
record written by an older or newer Ordinance still decodes.

Decoding never raises: a record that cannot be decoded comes back as an
`UndecodableRecord` carrying its raw bytes and position, for a processor to
answer with a fail-closed deny and keep for inspection.
"""

from __future__ import annotations

import enum
import io
import json
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from importlib import resources
from importlib.resources.abc import Traversable
from typing import Any

import fastavro
from fastavro.schema import fingerprint, to_parsing_canonical_form

from ordinance.streams.codegen import Unsupported
from ordinance.streams.errors import SchemaError
from ordinance.streams.fastdecode import Reader, build_reader
from ordinance.streams.fastencode import Encoder, shared_encoder
from ordinance.streams.log import ConsumedRecord
from ordinance.streams.values import Converter, compile_converter

MAGIC = b"\xc3\x01"
HEADER_SIZE = len(MAGIC) + 8
NAMESPACE = "ordinance.v1"
DEFAULT_MAX_BYTES = 1024 * 1024


def schema_fingerprint(parsed: Any) -> bytes:
    """The 8 header bytes: CRC-64-AVRO of the canonical form, little-endian.

    fastavro renders the Rabin fingerprint as the hex of exactly those bytes.
    """
    return bytes.fromhex(fingerprint(to_parsing_canonical_form(parsed), "CRC-64-AVRO"))


@dataclass(frozen=True)
class _Schema:
    name: str
    parsed: Any
    fingerprint: bytes
    to_avro: Converter | None
    from_avro: Converter | None


class SchemaRegistry:
    """The schemas a process knows: current ones (``*.avsc``, the reader
    schemas, one per record name) and retired writer schemas (``history/``)."""

    def __init__(self, directory: Traversable | None = None) -> None:
        root = directory or resources.files("ordinance.streams").joinpath("schemas")
        self._current: dict[str, _Schema] = {}
        self._by_fingerprint: dict[bytes, _Schema] = {}
        for path in _avsc_files(root):
            schema = self._load(path)
            self._current[schema.name] = schema
            short = schema.name.rsplit(".", 1)[-1]
            if path.name != f"{short}.avsc":
                raise SchemaError(f"{path.name} defines {schema.name}; name it {short}.avsc")
        history = root.joinpath("history")
        if history.is_dir():
            for path in _avsc_files(history):
                self._load(path)
        if not self._current:
            raise SchemaError(f"no schemas found in {root}")

    def _load(self, path: Traversable) -> _Schema:
        try:
            parsed = fastavro.parse_schema(json.loads(path.read_text()), named_schemas={})
        except (ValueError, KeyError, fastavro.schema.SchemaParseException) as exc:
            raise SchemaError(f"{path.name}: {exc}") from exc
        name = parsed["name"] if isinstance(parsed, dict) else ""
        if not name.startswith(NAMESPACE + "."):
            raise SchemaError(f"{path.name}: top-level record must be in namespace {NAMESPACE}")
        schema = _Schema(
            name,
            parsed,
            schema_fingerprint(parsed),
            compile_converter(parsed, to_avro=True),
            compile_converter(parsed, to_avro=False),
        )
        clash = self._by_fingerprint.get(schema.fingerprint)
        if clash is not None and clash.name != name:
            raise SchemaError(f"{path.name}: fingerprint clashes with {clash.name}")
        self._by_fingerprint[schema.fingerprint] = schema
        return schema

    @property
    def names(self) -> list[str]:
        """Short names of the current schemas (``ActionRequest``, ...)."""
        return sorted(n.rsplit(".", 1)[-1] for n in self._current)

    def current(self, name: str) -> _Schema:
        full = name if "." in name else f"{NAMESPACE}.{name}"
        found = self._current.get(full)
        if found is None:
            raise SchemaError(f"no schema named {name!r}; known: {', '.join(self.names)}")
        return found

    def by_fingerprint(self, fp: bytes) -> _Schema | None:
        return self._by_fingerprint.get(fp)


def _avsc_files(root: Traversable) -> Iterable[Traversable]:
    return sorted(
        (p for p in root.iterdir() if p.is_file() and p.name.endswith(".avsc")),
        key=lambda p: p.name,
    )


class Problem(enum.Enum):
    """Why a record did not decode."""

    EMPTY = "empty"
    OVERSIZE = "oversize"
    BAD_MARKER = "bad_marker"
    UNKNOWN_SCHEMA = "unknown_schema"
    TRUNCATED = "truncated"
    MALFORMED = "malformed"
    UNEXPECTED_TYPE = "unexpected_type"


@dataclass(frozen=True, slots=True)
class Decoded:
    """A decoded record: ``name`` is the reader schema's short name
    (``"Decision"``), ``value`` the datum in Python form."""

    name: str
    value: dict[str, Any]
    writer_fingerprint: bytes
    record: ConsumedRecord | None = None


@dataclass(frozen=True, slots=True)
class UndecodableRecord:
    """A record that did not decode, kept whole for inspection.

    ``topic``/``partition``/``offset`` are None when bytes were decoded outside
    a log record."""

    raw: bytes
    problem: Problem
    detail: str
    topic: str | None = None
    partition: int | None = None
    offset: int | None = None


_FAST_READERS: dict[bytes, Reader] = {}  # generated once per process, shared by every Serde


def _non_canonical(raw: bytes, writer: _Schema, datum: Any = None) -> bool:
    """Whether the body differs from fastavro's own encoding of what it decodes to.
    ``datum``: the body already decoded with the writer's schema, if the caller has it."""
    if datum is None:
        datum = fastavro.schemaless_reader(io.BytesIO(raw[HEADER_SIZE:]), writer.parsed, None)
    out = io.BytesIO()
    fastavro.schemaless_writer(out, writer.parsed, datum)
    return out.getvalue() != raw[HEADER_SIZE:]


class Serde:
    """Encodes and decodes the wire contract; ``max_bytes`` caps what a decoder
    accepts (an oversize payload is refused before any parsing)."""

    def __init__(
        self,
        registry: SchemaRegistry | None = None,
        *,
        max_bytes: int = DEFAULT_MAX_BYTES,
        fast: bool = True,
    ) -> None:
        self.registry = registry or SchemaRegistry()
        self.max_bytes = max_bytes
        # Current writer fingerprint -> (short name, generated reader): see fastdecode.
        self._fast: dict[bytes, tuple[str, Reader]] = {}
        for name in self.registry.names if fast else ():
            schema = self.registry.current(name)
            reader = _FAST_READERS.get(schema.fingerprint)
            if reader is None:
                try:
                    reader = _FAST_READERS[schema.fingerprint] = build_reader(schema.parsed)
                except Unsupported:
                    continue  # records of this schema always take the slow path
            self._fast[schema.fingerprint] = (schema.name.rsplit(".", 1)[-1], reader)
        # Schema name as encode takes it (short or full) -> generated encoder: see fastencode.
        self._encoders: dict[str, Encoder] = {}
        # Datums the generated encoder passed to fastavro (~40 µs each instead of ~3):
        # the tests hold the processors' own records to none.
        self.slow_encodes = 0
        for name in self.registry.names if fast else ():
            schema = self.registry.current(name)
            encoder = shared_encoder(schema.parsed, MAGIC + schema.fingerprint)
            if encoder is not None:  # None: this schema's datums always take the fastavro path
                self._encoders[name] = self._encoders[schema.name] = encoder

    def _decode_fast(
        self, raw: bytes, expect: Collection[str] | None, record: ConsumedRecord | None
    ) -> Decoded | None:
        """A record of a current schema, before any of the slow path's checks (the reader
        exists only for a current fingerprint, so they would all pass)."""
        if len(raw) > self.max_bytes or raw[:2] != MAGIC:
            return None
        fingerprint = raw[2:HEADER_SIZE]
        fast = self._fast.get(fingerprint)
        if fast is None or (expect is not None and fast[0] not in expect):
            return None
        try:
            value, end = fast[1](raw, HEADER_SIZE)
        except Exception:
            return None  # any doubt: the slow path decides, and says why
        if end != len(raw) or not isinstance(value, dict):
            return None
        return Decoded(fast[0], value, fingerprint, record)

    def encode(self, name: str, datum: Mapping[str, Any]) -> bytes:
        fast = self._encoders.get(name)
        if fast is not None:
            try:
                return fast(datum)
            except Exception:  # any doubt: the fastavro path below decides, and says why
                self.slow_encodes += 1
        schema = self.registry.current(name)
        wire = schema.to_avro(datum) if schema.to_avro is not None else datum
        out = io.BytesIO()
        out.write(MAGIC)
        out.write(schema.fingerprint)
        try:
            fastavro.schemaless_writer(out, schema.parsed, wire)
        except (ValueError, TypeError, KeyError, AttributeError, OverflowError) as exc:
            raise SchemaError(f"value does not fit {name}: {exc}") from exc
        return out.getvalue()

    def decode(
        self, raw: bytes | None, expect: Collection[str] | None = None
    ) -> Decoded | UndecodableRecord:
        """Decode bytes; ``expect`` lists the acceptable schema short names."""
        if raw:
            raw = bytes(raw)
            fast = self._decode_fast(raw, expect, None)
            if fast is not None:
                return fast
        return self._decode_slow(raw, expect)

    def _decode_slow(
        self, raw: bytes | None, expect: Collection[str] | None
    ) -> Decoded | UndecodableRecord:
        if raw is None or len(raw) == 0:
            return UndecodableRecord(b"", Problem.EMPTY, "no payload")
        raw = bytes(raw)
        if len(raw) > self.max_bytes:
            return UndecodableRecord(
                raw, Problem.OVERSIZE, f"{len(raw)} bytes, over the {self.max_bytes} cap"
            )
        if len(raw) < HEADER_SIZE:
            if MAGIC.startswith(raw[:2]):
                return UndecodableRecord(raw, Problem.TRUNCATED, "shorter than the header")
            return UndecodableRecord(raw, Problem.BAD_MARKER, "not single-object encoded")
        if raw[:2] != MAGIC:
            return UndecodableRecord(raw, Problem.BAD_MARKER, f"marker {raw[:2].hex()}")
        writer = self.registry.by_fingerprint(raw[2:HEADER_SIZE])
        if writer is None:
            return UndecodableRecord(
                raw, Problem.UNKNOWN_SCHEMA, f"fingerprint {raw[2:HEADER_SIZE].hex()}"
            )
        try:
            reader = self.registry.current(writer.name)
        except SchemaError as exc:
            return UndecodableRecord(raw, Problem.UNKNOWN_SCHEMA, str(exc))
        short = reader.name.rsplit(".", 1)[-1]
        if expect is not None and short not in expect:
            return UndecodableRecord(
                raw, Problem.UNEXPECTED_TYPE, f"{short}, expected one of {sorted(expect)}"
            )
        body = io.BytesIO(raw)
        body.seek(HEADER_SIZE)
        try:
            datum = fastavro.schemaless_reader(
                body, writer.parsed, None if reader is writer else reader.parsed
            )
            # Read with the writer's own schema, the datum is what the check re-encodes.
            non_canonical = _non_canonical(raw, writer, datum if reader is writer else None)
        except EOFError as exc:
            return UndecodableRecord(raw, Problem.TRUNCATED, str(exc) or "payload ends early")
        except Exception as exc:  # any parse failure is this record's problem
            return UndecodableRecord(raw, Problem.MALFORMED, f"{type(exc).__name__}: {exc}")
        if body.tell() != len(raw):
            return UndecodableRecord(
                raw, Problem.MALFORMED, f"{len(raw) - body.tell()} bytes after the datum"
            )
        if non_canonical:
            # fastavro reads a negative enum or union index from the end of the list: an
            # altered "effect" byte could read as allow. Only the bytes fastavro itself
            # would write for the datum are accepted.
            return UndecodableRecord(
                raw, Problem.MALFORMED, "not the canonical encoding (e.g. a negative index)"
            )
        if not isinstance(datum, dict):
            return UndecodableRecord(raw, Problem.MALFORMED, "datum is not a record")
        try:
            value = reader.from_avro(datum) if reader.from_avro is not None else datum
        except Exception as exc:  # e.g. a Decimal whose text is no number
            return UndecodableRecord(raw, Problem.MALFORMED, f"{type(exc).__name__}: {exc}")
        return Decoded(short, value, writer.fingerprint)

    def decode_record(
        self, record: ConsumedRecord, expect: Collection[str] | None = None
    ) -> Decoded | UndecodableRecord:
        """Decode a record's value, keeping its position either way."""
        raw = record.value
        if raw:
            raw = bytes(raw)
            fast = self._decode_fast(raw, expect, record)
            if fast is not None:
                return fast
        result = self._decode_slow(raw, expect)
        if isinstance(result, UndecodableRecord):
            return UndecodableRecord(
                result.raw,
                result.problem,
                result.detail,
                record.topic,
                record.partition,
                record.offset,
            )
        return Decoded(result.name, result.value, result.writer_fingerprint, record)
