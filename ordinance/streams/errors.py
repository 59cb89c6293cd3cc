"""Errors raised by the log layer (backends, topics, serde)."""

from __future__ import annotations

from ordinance.errors import OrdinanceError


class LogError(OrdinanceError):
    """Something went wrong talking to a log backend."""


class UnsupportedLogUrlError(LogError):
    """`open_log` was given a URL whose scheme or form no backend understands."""


class TopicConfigError(LogError):
    """A topic is missing, or exists with a configuration that contradicts its spec."""


class ProduceError(LogError):
    """A record was not acknowledged by the log; it must be treated as not written."""


class FencedError(LogError):
    """This consumer no longer owns the partition it tried to commit for.

    Another group member took the partition over (the lease expired or the group
    rebalanced); committing now would overwrite the new owner's progress.
    """


class SchemaError(OrdinanceError):
    """A schema file is invalid, or a value does not fit the schema it is encoded with."""
