"""The monitor's dashboard: one self-contained page at ``/`` (and ``/dashboard``) that a
person can leave open.

The page (``dashboard.html``, shipped in the package and read with importlib.resources)
has its CSS and script inline and loads nothing else: no CDN, no build step. Its script
polls ``/v1/report`` (every 2 s; ``?every=SECONDS`` from 0.5 to 60) and shows the totals
per effect and the fail-closed denies with the decision rate, the open alerts with their
severity, message and evidence, the rollout timeline (swaps, canary regression alerts,
the rollbacks this monitor wrote), the latest denials with their rule ids and reasons,
each canary in force with its arms' samples and deny rates, decisions per arm, shadow
disagreements, the rollbacks this monitor wrote,
consumer lag per group, readiness, health and the time of the last update. When the
report cannot be fetched the page says "disconnected", since when and why, and greys out
the figures it still shows.

It is read-only (it only GETs the report), and everything from the log — tool names,
bundle ids, agent-controlled strings in messages and evidence — is set as text through
the DOM (``textContent``), never parsed as HTML. The response's Content-Security-Policy
is a second wall: only the page's own inline script and style run (by hash), it may
connect only to its origin, and ``require-trusted-types-for 'script'`` makes any
assignment of a string to an HTML sink such as ``innerHTML`` throw.
"""

from __future__ import annotations

import base64
import hashlib
import re
from functools import cache
from importlib import resources

from starlette.requests import Request
from starlette.responses import Response

PAGE = "dashboard.html"


def _sha256(text: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode()).digest()).decode() + "'"


def content_security_policy(html: str) -> str:
    """The page's policy: its inline ``<script>`` and ``<style>`` blocks by hash, fetches
    to its own origin, nothing else."""
    scripts = " ".join(_sha256(s) for s in re.findall(r"<script>(.*?)</script>", html, re.S))
    styles = " ".join(_sha256(s) for s in re.findall(r"<style>(.*?)</style>", html, re.S))
    return (
        f"default-src 'none'; script-src {scripts}; style-src {styles}; "
        "connect-src 'self'; img-src 'none'; base-uri 'none'; form-action 'none'; "
        "frame-ancestors 'none'; require-trusted-types-for 'script'"
    )


@cache
def page() -> tuple[bytes, str]:
    """The page's bytes and its Content-Security-Policy."""
    html = resources.files(__package__ or "ordinance.processors.monitor").joinpath(PAGE)
    text = html.read_text(encoding="utf-8")
    return text.encode(), content_security_policy(text)


async def dashboard(_: Request) -> Response:
    body, policy = page()
    return Response(
        body,
        media_type="text/html; charset=utf-8",
        headers={
            "Content-Security-Policy": policy,
            "X-Content-Type-Options": "nosniff",
            "Referrer-Policy": "no-referrer",
            "Cache-Control": "no-store",
        },
    )
