"""Email addresses, judged as Python's mailer reads them.

``smtplib.send_message`` takes recipients from ``email.utils.getaddresses`` over the
header, which splits on commas, reads display names, comments and quoted local parts. An
element is therefore accepted only when it is *one* bare RFC 5322 addr-spec in dot-atom
form — no display name, angle brackets, comma, semicolon, quotes, comments or whitespace —
so that every parser reads exactly the one address that was judged. Also refused: ``%``
and ``!`` in the local part (old relays route on them), a trailing dot on the domain, and
any character NFKC would change (``＠`` is not ``@`` to a mailer). The canonical form
case-folds the whole address (mail servers treat local parts case-insensitively in
practice) and writes the domain in IDNA form.
"""

from __future__ import annotations

import re

from ordinance.policy.canon.limits import MAX_EMAIL_CHARS, CanonError, check_length
from ordinance.policy.canon.text import canonical_domain, idna_labels, is_nfkc, nfkc

# RFC 5322 atext, less "%" and "!" (source routing on some relays); ASCII only, because
# Python's mailer refuses non-ASCII local parts (NonASCIILocalPartDefect); dot-atom: atoms
# joined by single dots.
_ATOM = r"[A-Za-z0-9#$&'*+/=?^_`{|}~\-]+"
_LOCAL_RE = re.compile(rf"{_ATOM}(?:\.{_ATOM})*")
_DOMAIN_CHARS_RE = re.compile(r"[A-Za-z0-9_\-.\u0080-\U0010ffff]+")


def canonical_email(raw: str) -> str:
    check_length(raw, MAX_EMAIL_CHARS, "an email address")
    local, at, domain = raw.rpartition("@")
    if not at or not local or not domain:
        raise CanonError(f"not an email address: {raw!r}")
    if not _LOCAL_RE.fullmatch(local):
        raise CanonError(
            f"{raw!r} is not one bare address: the part before @ must be dot-separated atoms"
            " (no display name, <>, comma, semicolon, quotes, spaces, % or !)"
        )
    if not _DOMAIN_CHARS_RE.fullmatch(domain) or domain.endswith(".") or ".." in domain:
        raise CanonError(f"not an email domain: {domain!r}")
    if not raw.isascii():
        if not raw.isprintable():
            raise CanonError(f"invisible or control character in {raw!r}")
        if not is_nfkc(raw):
            raise CanonError(f"{raw!r} holds characters that Unicode normalisation would change")
    return f"{local.casefold()}@{canonical_domain(domain)}"


def email_fragment(text: str, method: str) -> str:
    folded = nfkc(text).casefold()
    local, at, domain = folded.partition("@")
    if not at:
        if not folded.isascii():
            raise CanonError("a non-ASCII fragment of an address is ambiguous")
        return folded
    return local + "@" + idna_labels(domain)
