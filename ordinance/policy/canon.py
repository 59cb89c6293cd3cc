"""Canonical forms, applied to requests before matching and to policy literals at compile time.

The point is bypass resistance: a request that spells a tool, path, domain or address
differently (case, Unicode compatibility forms, ``..``, ``//``, percent-encoding) must
reach the same canonical string a rule was written against. Every function here is
idempotent (``f(f(x)) == f(x)``, property-tested) and raises :class:`CanonError` for
input that has no safe canonical form, which the evaluator turns into a deny.
"""

from __future__ import annotations

import re
import unicodedata
from urllib.parse import SplitResult, unquote, urlsplit

from ordinance.errors import OrdinanceError

MAX_DECODE_ROUNDS = 4  # more layers of percent-encoding than this is an evasion attempt


class CanonError(OrdinanceError):
    """A value with no safe canonical form (e.g. a NUL byte in a path)."""


def nfkc(text: str) -> str:
    # ASCII is already NFKC; the check is much cheaper than normalising.
    if text.isascii():
        return text
    return unicodedata.normalize("NFKC", text)


def canonical_tool(name: str) -> str:
    return nfkc(name).casefold() if not name.isascii() else name.lower()


def _decode_fully(text: str) -> str:
    current = text
    for _ in range(MAX_DECODE_ROUNDS + 1):
        try:
            decoded = nfkc(unquote(nfkc(current), errors="strict"))
        except UnicodeDecodeError as exc:
            raise CanonError("percent-encoding that is not UTF-8") from exc
        if decoded == current:
            return current
        current = decoded
    raise CanonError(f"percent-encoded more than {MAX_DECODE_ROUNDS} times")


def _resolve_segments(path: str) -> str:
    absolute = path.startswith("/")
    stack: list[str] = []
    for segment in path.split("/"):
        if segment in ("", "."):
            continue
        if segment == "..":
            if stack and stack[-1] != "..":
                stack.pop()
            elif not absolute:
                stack.append("..")
            # `..` above the root stays at the root, as the kernel resolves it.
            continue
        stack.append(segment)
    body = "/".join(stack)
    if absolute:
        return "/" + body
    return body or "."


# Anything that decoding or segment resolution could change ("/." also catches "/..").
_NON_CANONICAL_MARKERS = ("%", "\\", "\0", "//", "/.")


def canonical_path(raw: str) -> str:
    """Decode percent-encoding to a fixed point, NFKC, treat ``\\`` as a separator,
    collapse ``//``, resolve ``.`` and ``..`` lexically (``..`` never climbs above ``/``)."""
    if (
        raw.startswith("/")
        and raw.isascii()
        and not any(marker in raw for marker in _NON_CANONICAL_MARKERS)
        and (len(raw) == 1 or not raw.endswith("/"))
    ):
        return raw  # already canonical: the common case skips decoding and re-joining
    text = _decode_fully(raw)
    if "\0" in text:
        raise CanonError("NUL byte in path")
    text = text.replace("\\", "/")
    resolved = _resolve_segments(text)
    return resolved


_DOMAIN_RE = re.compile(r"[a-z0-9_-]+(?:\.[a-z0-9_-]+)*")


def canonical_domain(raw: str) -> str:
    """NFKC, casefold, IDNA (punycode) per label, no trailing dot."""
    text = nfkc(raw).casefold()
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


def canonical_email(raw: str) -> str:
    """NFKC and casefold the whole address; the domain part as :func:`canonical_domain`."""
    text = nfkc(raw).casefold()
    local, at, domain = text.rpartition("@")
    if not at or not local or any(ch.isspace() for ch in local):
        raise CanonError(f"not an email address: {raw!r}")
    return f"{local}@{canonical_domain(domain)}"


_UNRESERVED = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")
_PERCENT_RE = re.compile(r"%([0-9A-Fa-f]{2})")
_DEFAULT_PORTS = {"http": 80, "https": 443, "ftp": 21, "ws": 80, "wss": 443}


def _normalise_percent(text: str) -> str:
    def fix(m: re.Match[str]) -> str:
        ch = chr(int(m.group(1), 16))
        return ch if ch in _UNRESERVED else "%" + m.group(1).upper()

    return _PERCENT_RE.sub(fix, text)


def canonical_url(raw: str) -> str:
    """RFC 3986 normalisation: lower-case scheme and host (IDNA), default port dropped,
    dot segments removed, percent-encoding normalised, fragment dropped."""
    text = nfkc(raw).strip()
    try:
        parts: SplitResult = urlsplit(text)
        port = parts.port
    except ValueError as exc:
        raise CanonError(f"not a URL: {raw!r}") from exc
    scheme = parts.scheme.lower()
    if not scheme or not parts.netloc or any(ch.isspace() or ch == "\0" for ch in text):
        raise CanonError(f"not an absolute URL: {raw!r}")
    hostname = parts.hostname or ""
    if hostname.startswith("[") or ":" in hostname:
        host = f"[{hostname.lower()}]"
    else:
        host = canonical_domain(hostname)
    userinfo = parts.netloc.rpartition("@")[0] if "@" in parts.netloc else ""
    netloc = (userinfo + "@" if userinfo else "") + host
    if port is not None and port != _DEFAULT_PORTS.get(scheme):
        netloc += f":{port}"
    raw_path = "/" + _normalise_percent(parts.path).lstrip("/")
    path = _resolve_segments(raw_path)
    if raw_path.endswith("/") and path != "/":
        path += "/"
    query = _normalise_percent(parts.query)
    return f"{scheme}://{netloc}{path}" + (f"?{query}" if parts.query else "")


# -- fragments: literal arguments of startsWith / endsWith / contains ---------------------
#
# A fragment is compared with part of a canonical value, so it gets the parts of the
# canonical form that are *local* (case folding, IDNA per label, lower-case URL scheme and
# host) and never the ones that depend on the whole value (dot segments, trailing dots,
# default ports): "www." must stay "www.", not become "www".

_LABEL_SPLIT = re.compile(r"([.@])")
_HEX_ESCAPE = re.compile(r"%[0-9A-Fa-f]{2}")


def _idna_labels(text: str) -> str:
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
    folded = _idna_labels(nfkc(text).casefold())
    if method == "endsWith" and folded.endswith(".") and len(folded) > 1:
        folded = folded[
            :-1
        ]  # a suffix ending in "." names the DNS root: "example.com." == "example.com"
    return folded


def email_fragment(text: str, method: str) -> str:
    folded = nfkc(text).casefold()
    local, at, domain = folded.partition("@")
    if not at:
        if not folded.isascii():
            raise CanonError("a non-ASCII fragment of an address is ambiguous")
        return folded
    return local + "@" + _idna_labels(domain)


def url_fragment(text: str, method: str) -> str:
    text = nfkc(text)
    scheme, sep, rest = text.partition("://")
    if not sep:
        return text
    scheme = scheme.lower()
    end = min(
        (i for i in (rest.find("/"), rest.find("?"), rest.find("#")) if i >= 0), default=len(rest)
    )
    authority = _idna_labels(rest[:end].lower())
    default_port = _DEFAULT_PORTS.get(scheme)
    if end < len(rest) and default_port is not None and authority.endswith(f":{default_port}"):
        # the authority is complete (a "/", "?" or "#" follows), so its default port can go
        authority = authority[: -len(f":{default_port}")]
    return f"{scheme}://{authority}{rest[end:]}"


def path_fragment(text: str, method: str) -> str:
    text = nfkc(text)
    for marker in ("\\", "//", "/./", "/../", "\0"):
        if marker in text:
            raise CanonError(f"{marker!r} never occurs in a canonical path")
    if _HEX_ESCAPE.search(text):
        raise CanonError("percent-escapes never occur in a canonical path (it is decoded)")
    return text
