"""What the generated Avro readers (`fastdecode`) and writers (`fastencode`) share: the
namespace their generated source runs in, with fresh names for what it binds."""

from __future__ import annotations

from typing import Any


class Unsupported(Exception):
    """A schema construct a fast path does not handle: its records take fastavro's path."""


class GeneratedNamespace:
    """Globals for generated source: constants bound under fresh names, so the source
    holds no data from schemas or records, only names."""

    def __init__(self, helpers: dict[str, Any]) -> None:
        self.namespace: dict[str, Any] = dict(helpers)
        self.counter = 0

    def bind(self, value: Any) -> str:
        self.counter += 1
        name = f"_k{self.counter}"
        self.namespace[name] = value
        return name

    def local(self, stem: str) -> str:
        self.counter += 1
        return f"{stem}{self.counter}"
