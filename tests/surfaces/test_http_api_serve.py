"""``ordinance gateway`` as a process, in front of a real enforcer without identity (the
curl quickstart of docs/http-api.md): every request in examples/requests/ decides over
HTTP what its name says, a few dozen concurrent requests over a handful of connections
are each answered with their own decision, and SIGTERM stops it cleanly."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx2 as httpx
import pytest

from tests.surfaces.http_pipeline import EXAMPLES, Pipeline, pipeline, transfer

EFFECT_BY_SUFFIX = {"-allowed": "allow", "-denied": "deny", "-needs-approval": "require_approval"}


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pipeline]:
    with pipeline(tmp_path_factory.mktemp("http-open"), identity=False) as running:
        yield running


@pytest.fixture(scope="module")
def gateway_url(live: Pipeline) -> Iterator[str]:
    command = ["gateway", "--log", live.url, "--http", "127.0.0.1:0", "--timeout", "20"]
    child = subprocess.Popen(
        [sys.executable, "-m", "ordinance.cli", *command],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        assert child.stderr is not None
        line = child.stderr.readline().decode()
        assert "serving http://" in line, line
        yield line.split("serving ")[1].split("/v1/")[0]
    finally:
        child.send_signal(signal.SIGTERM)
        assert child.wait(timeout=20) == 0


def test_every_example_request_decides_what_its_name_says(gateway_url: str) -> None:
    paths = sorted((EXAMPLES / "requests").glob("*.json"))
    assert len(paths) >= 15
    with httpx.Client(base_url=gateway_url, timeout=30) as http:
        assert http.get("/readyz").json()["ready"] is True
        for path in paths:
            [expected] = [e for s, e in EFFECT_BY_SUFFIX.items() if path.stem.endswith(s)]
            response = http.post(
                "/v1/decide",
                content=path.read_bytes(),
                headers={"content-type": "application/json"},
            )
            assert response.status_code == 200, (path.name, response.text)
            decision = response.json()
            assert decision["effect"] == expected, (path.name, decision)
            assert not decision["client_side"]


def test_concurrent_requests_over_few_connections_each_get_their_own_answer(
    gateway_url: str,
) -> None:
    # 48 requests in flight over at most 4 keep-alive connections: each connection
    # carries a dozen requests, and the one client batches what arrives together.
    countries = ["DE", "KP", "FR", "IR"] * 12
    bodies = [transfer(f"fleet-{i % 6}", "10", country=c) for i, c in enumerate(countries)]
    for body in bodies:
        body["agent"].update(roles=["billing"], team="finance")

    async def run() -> list[dict[str, object]]:
        limits = httpx.Limits(max_connections=4, max_keepalive_connections=4)
        async with httpx.AsyncClient(base_url=gateway_url, limits=limits, timeout=30) as http:
            responses = await asyncio.gather(*[http.post("/v1/decide", json=b) for b in bodies])
        return [r.json() for r in responses]

    answers = asyncio.run(run())
    assert [a["request_id"] for a in answers] == [b["request_id"] for b in bodies]
    expected = ["deny" if c in ("KP", "IR") else "allow" for c in countries]
    assert [a["effect"] for a in answers] == expected
    assert not any(a["client_side"] for a in answers)


def test_a_bad_command_line_is_a_usage_error(tmp_path: Path) -> None:
    from ordinance.cli import main

    url = f"sqlite:///{tmp_path / 'log.db'}"
    assert main(["gateway", "--log", url, "--http", "nowhere"]) == 2
    assert main(["gateway", "--log", url, "--http", ":0", "--max-body", "0"]) == 2
