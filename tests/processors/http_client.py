"""GET a URL of a test's HTTP server: (status, body), error statuses included."""

from __future__ import annotations

import urllib.error
import urllib.request


def http_get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()
