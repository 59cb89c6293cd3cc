"""JSON for Ordinance's values: exact decimals as strings, sets in sorted order.

Bundle ids hash this form, so it must be deterministic; reports use it too."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import orjson


def json_default(value: Any) -> Any:
    if isinstance(value, Decimal):
        return str(value)  # exact; a float would round
    if isinstance(value, frozenset | set):
        return sorted(value)
    if isinstance(value, tuple):
        return list(value)
    raise TypeError(f"not serialisable: {type(value).__name__}")


def canonical_json(value: Any) -> bytes:
    """Sorted keys, no whitespace: the same value always gives the same bytes."""
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS, default=json_default)


def pretty_json(value: Any) -> str:
    return orjson.dumps(value, option=orjson.OPT_INDENT_2, default=json_default).decode()


def parse_request_json(text: str) -> Any:
    """A request as JSON text, numbers with a fraction read as exact decimals: what is
    judged must be what was sent, and a binary float would round ``25000.10``."""
    return json.loads(text, parse_float=Decimal)
