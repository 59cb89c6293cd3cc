"""URLs, judged as HTTP clients connect to them.

Two consumers must agree on where a URL goes: a WHATWG parser (browsers, ``ada_url``,
which this module uses) and RFC 3986 clients (urllib3 / requests, curl). The URL is parsed
*first*, with no normalisation before it, and it is refused whenever the two could
disagree or the serialised form would change what the raw text says about scheme,
authority or host: no user info, an ASCII host written exactly as it will be connected to
(no percent-escapes, no IPv4 shorthand, no trailing dot), no characters either parser
strips or reinterprets (tab, newline, ``\\``, spaces, controls), and no percent-escape in
the path or query that a server would decode into something else (``%2e``, ``%2F``, an
escaped unreserved character, lower-case hex), and no raw character that clients send
differently (``[ ] | ^ { } < > " ` `` in the path or query: one escapes it, the other not). The canonical form is the WHATWG
serialisation without the fragment (which is never sent).
"""

from __future__ import annotations

import re

from ada_url import URL

from ordinance.policy.canon.limits import MAX_URL_CHARS, CanonError, check_length
from ordinance.policy.canon.text import idna_labels, nfkc

SCHEMES = ("http", "https")
_DEFAULT_PORTS = {"http": 80, "https": 443}
_SCHEME_RE = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*):")
_LABEL = r"[a-z0-9_](?:[a-z0-9_-]*[a-z0-9_])?"
_HOSTNAME_RE = re.compile(rf"{_LABEL}(?:\.{_LABEL})*")
_IPV4_RE = re.compile(
    r"(?:(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])\.){3}"
    r"(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"
)
_PORT_RE = re.compile(r"[1-9][0-9]{0,4}")
_ESCAPE_RE = re.compile(r"%(.?.?)")
# Escapes a server decodes into a character that means something else, or that a
# normaliser decodes: unreserved characters (RFC 3986 2.3), "/" and "\".
_DECODED_BY_SERVERS = frozenset(
    f"{ord(c):02X}" for c in "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~/\\"
)


def _refuse_characters(text: str) -> None:
    for ch in text:
        if ch <= " " or ch == "\\" or "\x7f" <= ch <= "\xa0" or ch.isspace():
            raise CanonError(f"URL holds {ch!r}, which URL parsers strip or read as a separator")


# Characters one kind of client sends raw and the other percent-escapes (WHATWG keeps
# "[" "]" "|" "^" in a path, urllib3 escapes them; the two escape "{" "}" "<" ">" '"' "`"
# in different parts): the request line would differ, so the sender must escape them.
_ESCAPED_DIFFERENTLY = frozenset('[]|^{}<>"`')


def _check_escapes(text: str, where: str) -> None:
    for ch in text:
        if ch in _ESCAPED_DIFFERENTLY:
            raise CanonError(
                f"URL {where} holds {ch!r}, which HTTP clients escape differently:"
                f" write it as %{ord(ch):02X}"
            )
    for m in _ESCAPE_RE.finditer(text):
        hex2 = m.group(1)
        if len(hex2) != 2 or not all(c in "0123456789ABCDEF" for c in hex2):
            raise CanonError(
                f"percent-escape {m.group(0)!r} in the {where} is not two upper-case hex digits"
            )
        if hex2 in _DECODED_BY_SERVERS:
            raise CanonError(
                f"percent-escape %{hex2} in the {where} decodes to {chr(int(hex2, 16))!r}"
                " on the server: write the character itself"
            )


def canonical_url(raw: str) -> str:
    """The WHATWG serialisation (lower-case scheme and host, default port dropped, dot
    segments resolved, fragment dropped) of an http(s) URL whose meaning every parser
    agrees on; anything else raises CanonError."""
    check_length(raw, MAX_URL_CHARS, "a URL")
    if not raw.isascii() or not raw.isprintable() or " " in raw or "\\" in raw:
        _refuse_characters(raw)
    m = _SCHEME_RE.match(raw)
    if m is None or not raw.startswith("//", m.end()):
        raise CanonError(f"not an absolute URL: {raw!r}")
    scheme = m.group(1).lower()
    if scheme not in SCHEMES:
        raise CanonError(f"URL scheme {m.group(1)!r} is not one of {', '.join(SCHEMES)}")
    rest = raw[m.end() + 2 :]
    end = min(
        (i for i in (rest.find("/"), rest.find("?"), rest.find("#")) if i >= 0), default=len(rest)
    )
    authority, tail = rest[:end], rest[end:]
    if not authority.isascii():
        raise CanonError("URL host is not ASCII: write an internationalised name as xn-- labels")
    if "@" in authority:
        raise CanonError("URL with user info (an @ before the host) is refused")
    if "%" in authority:
        raise CanonError("percent-escape in a URL host")
    host, port = authority, ""
    if authority.startswith("["):
        close = authority.find("]")
        if close < 0:
            raise CanonError(f"not a URL: {raw!r}")
        host, after = authority[: close + 1], authority[close + 1 :]
        if after:
            if not after.startswith(":"):
                raise CanonError(f"not a URL: {raw!r}")
            port = after[1:]
    elif ":" in authority:
        host, _, port = authority.rpartition(":")
    host = host.lower()
    if port and not _PORT_RE.fullmatch(port):
        raise CanonError(f"URL port {port!r} is not a number from 1 to 65535 without leading zeros")
    if (
        not host.startswith("[")
        and not _IPV4_RE.fullmatch(host)
        and not _HOSTNAME_RE.fullmatch(host)
    ):
        raise CanonError(f"URL host {host!r} is not a host name in canonical form")
    query_at = tail.find("?")
    fragment_at = tail.find("#")
    sent = tail if fragment_at < 0 else tail[:fragment_at]
    _check_escapes(sent if query_at < 0 else sent[:query_at], "path")
    if query_at >= 0 and (fragment_at < 0 or query_at < fragment_at):
        _check_escapes(sent[query_at:], "query")
    try:
        url = URL(raw)
    except ValueError:
        raise CanonError(f"not a URL: {raw!r}") from None
    # The parser must connect where the text says: same scheme, host and port.
    expected_port = "" if port == "" or int(port) == _DEFAULT_PORTS[scheme] else port
    if url.protocol != scheme + ":" or url.hostname != host or url.port != expected_port:
        raise CanonError(
            f"URL parsers read {raw!r} as host {url.hostname!r}: the text says {host!r}"
        )
    url.hash = ""
    href: str = url.href
    return href


def url_fragment(text: str, method: str) -> str:
    """A literal argument of startsWith/endsWith/contains on a URL: lower-case scheme and
    host, the default port of a complete authority dropped."""
    text = nfkc(text)
    scheme, sep, rest = text.partition("://")
    if not sep:
        return text
    scheme = scheme.lower()
    end = min(
        (i for i in (rest.find("/"), rest.find("?"), rest.find("#")) if i >= 0), default=len(rest)
    )
    authority = idna_labels(rest[:end].lower())
    default_port = _DEFAULT_PORTS.get(scheme)
    if end < len(rest) and default_port is not None and authority.endswith(f":{default_port}"):
        # the authority is complete (a "/", "?" or "#" follows), so its default port can go
        authority = authority[: -len(f":{default_port}")]
    return f"{scheme}://{authority}{rest[end:]}"
