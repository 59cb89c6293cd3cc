"""Input size limits, checked before any normalisation.

Why first: NFKC is quadratic on long runs of combining marks (32k code points cost ~2 s)
and every canonicaliser is at least linear, so a bound that came after normalisation
would bound nothing. Each limit is a documented constant (docs/policy-language.md,
"Input limits"); a value over one is refused as an invalid request, never truncated.
"""

from __future__ import annotations

import re
import unicodedata
from typing import Any

from ordinance.errors import OrdinanceError

MAX_STRING_CHARS = 16_384  # any one string value, in code points
MAX_LIST_ITEMS = 256  # items of any one list or set value
MAX_REQUEST_CHARS = 32_768  # all strings of a request's declared fields together
# A non-ASCII character counts this many times toward MAX_REQUEST_CHARS: it may need NFKC
# (~45 ns a character on reordering text, against nothing for ASCII), so a request holds at
# most 8,192 of them and its normalisation stays well under a millisecond.
NON_ASCII_WEIGHT = 4
MAX_PATH_CHARS = 4_096  # Linux PATH_MAX
MAX_URL_CHARS = 8_192  # what common servers accept in a request line
MAX_DOMAIN_CHARS = 253  # RFC 1035, without the trailing dot
MAX_EMAIL_CHARS = 254  # RFC 5321 forward-path minus the angle brackets
# Unicode's Stream-Safe Text Format (UAX #15): at most 30 non-starters in a row. Text
# within it normalises in linear time; nothing real needs more.
MAX_NONSTARTER_RUN = 30


class CanonError(OrdinanceError):
    """A value with no safe canonical form (e.g. a NUL byte in a path)."""


def check_length(text: str, limit: int, what: str) -> None:
    if len(text) > limit:
        raise CanonError(f"{what} longer than {limit} characters ({len(text)})")


_NONSTARTERS: re.Pattern[str] | None = None


def _nonstarter_run() -> re.Pattern[str]:
    global _NONSTARTERS
    if _NONSTARTERS is None:  # built on first use: it scans all of Unicode once (~50 ms)
        codes = [c for c in range(0x110000) if unicodedata.combining(chr(c))]
        ranges: list[str] = []
        start = prev = codes[0]
        for c in [*codes[1:], -1]:
            if c != prev + 1:
                ranges.append(
                    f"\\U{start:08x}-\\U{prev:08x}" if start != prev else f"\\U{start:08x}"
                )
                start = c
            prev = c
        cls = "[" + "".join(ranges) + "]"
        # The look-behind starts a match only at the start of a run: linear, not 30n.
        _NONSTARTERS = re.compile(f"(?<!{cls}){cls}{{{MAX_NONSTARTER_RUN + 1}}}")
    return _NONSTARTERS


def check_stream_safe(text: str) -> None:
    """Refuse text that NFKC could not normalise in linear time. ASCII has no non-starters."""
    if not text.isascii() and _nonstarter_run().search(text) is not None:
        raise CanonError(f"more than {MAX_NONSTARTER_RUN} combining marks in a row")


def weigh(value: Any) -> int:
    """The characters a declared field's value counts toward ``MAX_REQUEST_CHARS``: the
    length of a string (times ``NON_ASCII_WEIGHT`` if it is not ASCII), the summed weights of a list's strings (nested lists too). A list
    over ``MAX_LIST_ITEMS`` is refused here, before any of its items is looked at; a value
    of any other shape weighs 0 (its converter refuses it)."""
    t = type(value)
    if t is str:
        return len(value) if value.isascii() else NON_ASCII_WEIGHT * len(value)
    if t is list or t is tuple:
        if len(value) > MAX_LIST_ITEMS:
            raise CanonError(f"a list of more than {MAX_LIST_ITEMS} items ({len(value)})")
        total = 0
        for item in value:
            total += weigh(item)
        return total
    return 0


def over_request_limit(total: int) -> CanonError:
    return CanonError(
        f"the request's declared fields hold more than {MAX_REQUEST_CHARS} characters"
        f" ({total} so far)"
    )
