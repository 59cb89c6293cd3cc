"""Paths, judged as the Linux kernel resolves them.

The kernel splits a path on ``/`` only and never decodes anything: ``%`` and ``\\`` are
ordinary filename characters and Unicode is bytes. So a path is never percent-decoded,
``\\`` is refused (a policy cannot tell whether a tool will treat it as a separator, as
Windows code and some libraries do), and any character NFKC would change is refused
(``／`` is not ``/`` to the kernel, but is to anything that normalises). ``//`` and ``.``
are dropped and ``..`` is resolved *lexically*: the kernel resolves ``a/..`` through ``a``,
which differs when ``a`` is a symbolic link — see docs/policy-language.md.
"""

from __future__ import annotations

from ordinance.policy.canon.limits import MAX_PATH_CHARS, CanonError, check_length
from ordinance.policy.canon.text import is_nfkc


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


def _refuse_ambiguous(text: str) -> None:
    if "\0" in text:
        raise CanonError("NUL byte in path")
    if "\\" in text:
        raise CanonError("backslash in path (a separator to some tools, a character to Linux)")
    if not text.isascii() or not text.isprintable():
        if any(ch < " " or "\x7f" <= ch <= "\x9f" for ch in text):
            raise CanonError("control character in path")
        if not is_nfkc(text):
            raise CanonError("path holds characters that Unicode normalisation would change")


def canonical_path(raw: str) -> str:
    """``//`` collapsed, ``.`` dropped, ``..`` resolved lexically (never above ``/``), no
    trailing ``/``; refused: empty, NUL, ``\\``, control characters, anything NFKC changes."""
    check_length(raw, MAX_PATH_CHARS, "a path")
    if (
        raw.startswith("/")
        and raw.isascii()
        and raw.isprintable()
        and not ("\\" in raw or "//" in raw or "/." in raw)
        and (len(raw) == 1 or not raw.endswith("/"))
    ):
        return raw  # already canonical: the common case skips the split and re-join
    if not raw:
        raise CanonError("empty path")
    _refuse_ambiguous(raw)
    return _resolve_segments(raw)


def path_fragment(text: str, method: str) -> str:
    """A literal argument of startsWith/endsWith/contains on a path: kept as written, but
    one that can never occur in a canonical path is a compile error."""
    for marker in ("//", "/./", "/../"):
        if marker in text:
            raise CanonError(f"{marker!r} never occurs in a canonical path")
    _refuse_ambiguous(text)
    return text
