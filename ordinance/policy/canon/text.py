"""NFKC, tool names, domain names and plain strings: the canonical forms built from Unicode
normalisation and case folding.

Why these may normalise while paths and URLs may not: a domain's consumer (IDNA / UTS #46
in resolvers and URL parsers) applies the same compatibility mapping and case folding
itself, so NFKC + casefold is what it acts on; a tool name is looked up by Ordinance's own
schema. Plain strings normalise only as their schema field says (``normalize``).
"""

from __future__ import annotations

import re
import unicodedata

from ordinance.policy.canon.limits import (
    MAX_DOMAIN_CHARS,
    MAX_STRING_CHARS,
    CanonError,
    check_length,
    check_stream_safe,
)

# The ``normalize`` options of a string field (schema.yaml), in the order documented.
NORMALIZE_NONE = "none"  # kept exactly as sent
NORMALIZE_NFKC = "nfkc"  # the default: compatibility characters folded
NORMALIZE_FOLD = "nfkc_casefold_trim"  # identifiers and codes: case and outer space ignored
NORMALIZATIONS = (NORMALIZE_NFKC, NORMALIZE_NONE, NORMALIZE_FOLD)


def nfkc(text: str) -> str:
    """NFKC of text already bounded by the caller (see :func:`bounded_nfkc` for requests)."""
    # ASCII is already NFKC; the check is much cheaper than normalising.
    if text.isascii():
        return text
    return unicodedata.normalize("NFKC", text)


def bounded_nfkc(text: str, limit: int = MAX_STRING_CHARS) -> str:
    """NFKC of a request value: length and combining-mark runs are checked first, so the
    normalisation is linear in a bounded input."""
    check_length(text, limit, "a string")
    if text.isascii():
        return text
    check_stream_safe(text)
    return unicodedata.normalize("NFKC", text)


def is_nfkc(text: str) -> bool:
    """Whether NFKC leaves ``text`` unchanged (callers bound it first)."""
    if text.isascii():
        return True
    check_stream_safe(text)
    return unicodedata.is_normalized("NFKC", text)


def normalize_string(text: str, how: str) -> str:
    if how == NORMALIZE_NONE:
        check_length(text, MAX_STRING_CHARS, "a string")
        return text
    text = bounded_nfkc(text)
    if how == NORMALIZE_FOLD:
        return text.casefold().strip()
    return text


def canonical_tool(name: str) -> str:
    check_length(name, MAX_DOMAIN_CHARS, "a tool name")
    return bounded_nfkc(name).casefold() if not name.isascii() else name.lower()


_DOMAIN_RE = re.compile(r"[a-z0-9_-]+(?:\.[a-z0-9_-]+)*")


def canonical_domain(raw: str) -> str:
    """NFKC, casefold, IDNA (punycode) per label, no trailing dot: what a resolver looks up."""
    check_length(raw, MAX_DOMAIN_CHARS + 1, "a domain name")
    text = bounded_nfkc(raw).casefold()
    if text.endswith("."):
        text = text[:-1]
    if not text.isascii():
        try:
            text = text.encode("idna").decode("ascii")
        except UnicodeError as exc:
            raise CanonError(f"not a valid domain name: {raw!r}") from exc
    if not _DOMAIN_RE.fullmatch(text):
        raise CanonError(f"not a valid domain name: {raw!r}")
    return text


# -- fragments: literal arguments of startsWith / endsWith / contains ---------------------
#
# A fragment is compared with part of a canonical value, so it gets the parts of the
# canonical form that are *local* (case folding, IDNA per label, lower-case URL scheme and
# host) and never the ones that depend on the whole value (dot segments, trailing dots,
# default ports): "www." must stay "www.", not become "www".

_LABEL_SPLIT = re.compile(r"([.@])")


def idna_labels(text: str) -> str:
    out = []
    for part in _LABEL_SPLIT.split(text):
        if part and not part.isascii():
            try:
                out.append(part.encode("idna").decode("ascii"))
            except UnicodeError as exc:
                raise CanonError(f"{part!r} is not a valid domain label") from exc
        else:
            out.append(part)
    return "".join(out)


def domain_fragment(text: str, method: str) -> str:
    folded = idna_labels(nfkc(text).casefold())
    if method == "endsWith" and folded.endswith(".") and len(folded) > 1:
        # a suffix ending in "." names the DNS root: "example.com." == "example.com"
        folded = folded[:-1]
    return folded
