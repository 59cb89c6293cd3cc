"""One fresh Z3 context per tool analysis, so that a tool's verdicts do not depend on what
the process asked Z3 before.

Z3's search depends on term ids, and a context hands out ids (recycling freed ones) in
the order terms are built: in one long-lived context, analysing a tool after other tools
(or after a whole bundle) starts from a different id state, so a check can spend a
different share of its rlimit — and a check near the budget can end ``unknown`` in one
process and decided in another. A fresh context per tool starts every tool from the same
state, in one process or in workers, whatever ran before.

The analysis builds its terms with z3py's default context (``ctx=None`` everywhere), so
:func:`fresh_context` installs a new context as z3py's main context for the duration of
one tool, instead of threading a ``ctx`` argument through every constructor call. The
few terms the modules share (sorts, character classes, ``TRUE``/``FALSE``) are built
per context through :func:`per_context`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

import z3
import z3.z3 as _z3py

T = TypeVar("T")

# Terms built by per_context functions, for the context that is current: a term of one
# context cannot be combined with terms of another.
_terms: dict[Callable[[], Any], Any] = {}
_owner: list[Any] = [None]  # the context _terms belong to


def current() -> Any:
    return z3.main_ctx()


def per_context(build: Callable[[], T]) -> Callable[[], T]:
    """``build()`` once per Z3 context (in the context that is current when called)."""

    def get() -> T:
        ctx = current()
        if _owner[0] is not ctx:
            _terms.clear()
            _owner[0] = ctx
        try:
            found: T = _terms[build]
        except KeyError:
            found = _terms[build] = build()
        return found

    get.__name__ = build.__name__
    get.__doc__ = build.__doc__
    return get


@contextmanager
def fresh_context() -> Iterator[Any]:
    """Build and solve in a new Z3 context inside the block; the previous one after."""
    previous = _z3py._main_ctx
    ctx = z3.Context()
    _z3py._main_ctx = ctx
    try:
        yield ctx
    finally:
        _z3py._main_ctx = previous
        if _owner[0] is ctx:
            _terms.clear()
            _owner[0] = None
