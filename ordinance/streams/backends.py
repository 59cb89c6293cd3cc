"""`open_log(url)`: the one way to get a `Log`, whichever backend.

* ``sqlite:///relative/path.db`` or ``sqlite:////absolute/path.db`` (the
  SQLAlchemy convention: the path is what follows the third slash). Options as
  query parameters: ``synchronous`` (full|normal|extra), ``busy_timeout_s``,
  ``retention_interval_s``, ``max_record_bytes``, ``session_timeout_ms``,
  ``heartbeat_interval_ms``.
* ``kafka://host:port[,host:port...]``. ``replication_factor`` (default: the
  broker's) and ``timeout_s`` (default 30: how long a produce or admin call may
  take before it fails) are read from the query; every other query parameter
  is passed to librdkafka as is (``security.protocol``, ``sasl.mechanism``...).
* ``memory://NAME``: the in-memory log, for tests and for embedding in one process.
  Every open of the same NAME in a process is a handle onto the same data, which
  closing a handle keeps and which does not survive the process. Options:
  ``session_timeout_ms``, ``heartbeat_interval_ms``, ``max_record_bytes``.

Who creates an embedded or in-memory log: `open_log` does (``create=True``), for the
processes that own one (``serve``, ``topics``, ``demo``, ``publish``, the controller,
tests).
Whoever only uses an existing log — the agent client, ``submit``, the readers —
opens with ``create=False`` (`open_existing_log`): a mistyped path or name is then a
`LogError`, not a new empty log that waits forever or "verifies clean".
Every failure to open raises `LogError`.
"""

from __future__ import annotations

from collections.abc import Mapping
from urllib.parse import parse_qsl

from ordinance.streams.errors import LogError, UnsupportedLogUrlError
from ordinance.streams.log import Log
from ordinance.streams.record_rules import DEFAULT_MAX_RECORD_BYTES

_SQLITE_FLOAT = ("busy_timeout_s", "retention_interval_s")
_SQLITE_INT = ("max_record_bytes", "session_timeout_ms", "heartbeat_interval_ms")
_MEMORY_INT = ("max_record_bytes", "session_timeout_ms", "heartbeat_interval_ms")


def open_log(url: str, *, create: bool = True, open_timeout_s: float | None = None) -> Log:
    """The log at ``url``. ``create``: an embedded log that does not exist is created
    (else `LogError`); ``open_timeout_s`` bounds how long opening may wait for a lock
    another process holds (Kafka clients connect lazily: opening never waits)."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        raise UnsupportedLogUrlError(
            f"not a log URL (expected sqlite:///, kafka:// or memory://): {url!r}"
        )
    location, _, query = rest.partition("?")
    try:
        options = dict(parse_qsl(query, keep_blank_values=True, strict_parsing=bool(query)))
    except ValueError as exc:
        raise UnsupportedLogUrlError(f"bad query in log URL {url!r}: {exc}") from exc
    if scheme == "sqlite":
        return _open_sqlite(location, options, create, open_timeout_s)
    if scheme == "kafka":
        return _open_kafka(location, options)
    if scheme == "memory":
        return _open_memory(location, options, create)
    raise UnsupportedLogUrlError(f"no log backend for scheme {scheme!r} in {url!r}")


def open_existing_log(url: str, *, open_timeout_s: float | None = None) -> Log:
    """`open_log` for readers (verify, prove, replay): an embedded log that does not
    exist is an error, not a new empty database that then "verifies clean"."""
    return open_log(url, create=False, open_timeout_s=open_timeout_s)


def _open_sqlite(
    location: str, options: Mapping[str, str], create: bool, open_timeout_s: float | None
) -> Log:
    from ordinance.streams.sqlite_log import SqliteLog

    if not location.startswith("/") or location == "/":
        raise UnsupportedLogUrlError(
            "sqlite URL needs a path: sqlite:///relative.db, sqlite:////abs.db"
        )
    path = location[1:]
    floats: dict[str, float] = {}
    ints: dict[str, int] = {}
    synchronous = "full"
    try:
        for name, value in options.items():
            if name == "synchronous":
                synchronous = value
            elif name in _SQLITE_FLOAT:
                floats[name] = float(value)
            elif name in _SQLITE_INT:
                ints[name] = int(value)
            else:
                raise UnsupportedLogUrlError(f"unknown sqlite log option {name!r}")
    except ValueError as exc:
        raise UnsupportedLogUrlError(f"bad sqlite log option: {exc}") from exc
    return SqliteLog(
        path,
        synchronous=synchronous,
        busy_timeout_s=floats.get("busy_timeout_s", 30.0),
        retention_interval_s=floats.get("retention_interval_s", 10.0),
        max_record_bytes=ints.get("max_record_bytes", DEFAULT_MAX_RECORD_BYTES),
        session_timeout_ms=ints.get("session_timeout_ms", 10_000),
        heartbeat_interval_ms=ints.get("heartbeat_interval_ms", 250),
        create=create,
        open_timeout_s=open_timeout_s,
    )


def _open_kafka(location: str, options: Mapping[str, str]) -> Log:
    from ordinance.streams.kafka_log import KafkaLog

    hosts = [h for h in location.strip("/").split(",") if h]
    if not hosts or any(":" not in h for h in hosts):
        raise UnsupportedLogUrlError(f"kafka URL needs host:port[,host:port]: {location!r}")
    config: dict[str, str] = dict(options)
    try:
        replication = int(config.pop("replication_factor", "-1"))
        timeout_s = float(config.pop("timeout_s", "30"))
    except ValueError as exc:
        raise UnsupportedLogUrlError(f"bad kafka log option: {exc}") from exc
    try:
        return KafkaLog(
            ",".join(hosts),
            replication_factor=replication,
            client_config=config,
            timeout_s=timeout_s,
        )
    except LogError as exc:  # librdkafka refused a setting given in the URL
        raise UnsupportedLogUrlError(f"bad kafka log option: {exc}") from exc


def _open_memory(location: str, options: Mapping[str, str], create: bool) -> Log:
    from ordinance.streams.memory_log import MemoryLog

    if not location:
        raise UnsupportedLogUrlError("memory URL needs a name: memory://NAME")
    ints: dict[str, int] = {}
    try:
        for name, value in options.items():
            if name not in _MEMORY_INT:
                raise UnsupportedLogUrlError(f"unknown memory log option {name!r}")
            ints[name] = int(value)
    except ValueError as exc:
        raise UnsupportedLogUrlError(f"bad memory log option: {exc}") from exc
    return MemoryLog(
        location,
        session_timeout_ms=ints.get("session_timeout_ms", 10_000),
        heartbeat_interval_ms=ints.get("heartbeat_interval_ms", 250),
        max_record_bytes=ints.get("max_record_bytes", DEFAULT_MAX_RECORD_BYTES),
        create=create,
    )
