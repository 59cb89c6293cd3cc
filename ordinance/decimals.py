"""The one decimal grammar of Ordinance, on the wire and in requests: ``-?digits(.digits)?``,
with no leading zero before other integer digits (JSON's number grammar without exponent).

Why not ``Decimal(text)``: Python's grammar also takes ``" 5"``, ``"+5"``, ``"1_000"``,
``"1e1"``, ``"NaN"`` and ``"Infinity"``, which other consumers (a payment API, a JSON
schema, a database) read differently or not at all — the engine would judge a number the
tool never sees. Text outside the grammar is refused, never repaired.
"""

from __future__ import annotations

import re
from decimal import Decimal

MAX_DECIMAL_CHARS = 400  # sign, digits and point: every finite float fits (5e-324 is 326)
# No leading zeros: "007" is 7 to Decimal, an error to JSON and octal to some parsers.
DECIMAL_RE = re.compile(r"-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?")


class DecimalSyntaxError(ValueError):
    """Text that is not a decimal in Ordinance's grammar."""


def parse_decimal(text: str) -> Decimal:
    if len(text) > MAX_DECIMAL_CHARS:
        raise DecimalSyntaxError(f"a decimal longer than {MAX_DECIMAL_CHARS} characters")
    if not DECIMAL_RE.fullmatch(text):
        raise DecimalSyntaxError(
            f"{text[:40]!r} is not a decimal: write -?digits(.digits)? (no exponent, spaces,"
            " underscores, plus sign or leading zeros)"
        )
    return Decimal(text)
