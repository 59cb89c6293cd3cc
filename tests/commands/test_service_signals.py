"""Graceful shutdown for rolling restarts (docs/deploy.md): `serve`, `monitor` and
`gateway`, each started as a process from a service config file, exit 0 within a bound
after SIGTERM; the gateway answers /readyz 503 while it drains and still decides."""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx2 as httpx

from ordinance.streams import open_log
from ordinance.streams.topics import ensure_topics
from tests.processors.http_client import http_get
from tests.processors.test_enforcer import EXAMPLES, publish

STOP_BOUND_S = 15.0


class Process:
    def __init__(self, child: subprocess.Popen[bytes]) -> None:
        self.child = child
        self.lines: queue.Queue[str] = queue.Queue()
        self.seen: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.child.stderr is not None
        for raw in self.child.stderr:
            self.lines.put(raw.decode(errors="replace"))

    def wait_for(self, marker: str, timeout: float = 30.0) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                line = self.lines.get(timeout=0.2)
            except queue.Empty:
                assert self.child.poll() is None, "".join(self.seen)
                continue
            self.seen.append(line)
            if marker in line:
                return line
        raise AssertionError(f"no {marker!r} in: {''.join(self.seen)}")

    def base_url(self, marker: str) -> str:
        line = self.wait_for(marker)
        return "http://" + line.split("http://", 1)[1].split("/", 1)[0]

    def terminate(self) -> tuple[int, float]:
        """SIGTERM; (exit status, seconds until it exited)."""
        started = time.monotonic()
        self.child.send_signal(signal.SIGTERM)
        try:
            code = self.child.wait(timeout=STOP_BOUND_S + 30)
        finally:
            if self.child.poll() is None:
                self.child.kill()
        return code, time.monotonic() - started


@contextmanager
def started(process: str, config: Path, **env: str) -> Iterator[Process]:
    child = subprocess.Popen(
        [sys.executable, "-m", "ordinance.cli", process],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env={**os.environ, "PYTHONUNBUFFERED": "1", "ORDINANCE_CONFIG": str(config), **env},
    )
    try:
        yield Process(child)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()


def config_file(tmp_path: Path, body: str) -> tuple[Path, str]:
    url = f"sqlite:///{tmp_path / 'log.db'}"
    with open_log(url, create=True) as log:
        ensure_topics(log)
    path = tmp_path / "ordinance.yaml"
    path.write_text(f"log: {url}\n{body}")
    return path, url


def wait_ready(base: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while http_get(base + "/readyz")[0] != 200:
        assert time.monotonic() < deadline, http_get(base + "/readyz")
        time.sleep(0.1)


def test_serve_stops_on_sigterm(tmp_path: Path) -> None:
    config, url = config_file(tmp_path, "serve:\n  http: 127.0.0.1:0\n")
    publish(url, EXAMPLES)
    with started("serve", config) as serve:
        base = serve.base_url("metrics and health on http://")
        wait_ready(base)  # deciding: a bundle in force, partitions owned
        code, took = serve.terminate()
    assert code == 0, "".join(serve.seen)
    assert took < STOP_BOUND_S


def test_monitor_stops_on_sigterm(tmp_path: Path) -> None:
    config, _ = config_file(tmp_path, "monitor:\n  http: 127.0.0.1:0\n")
    with started("monitor", config) as monitor:
        base = monitor.base_url("dashboard at http://")
        wait_ready(base)
        code, took = monitor.terminate()
    assert code == 0, "".join(monitor.seen)
    assert took < STOP_BOUND_S


def test_gateway_drains_with_readyz_503_then_stops(tmp_path: Path) -> None:
    # The file says drain 30 s; the environment says 2 (environment > file): a gateway
    # that ignored it would overrun the bound below.
    config, _ = config_file(tmp_path, "gateway:\n  http: 127.0.0.1:0\n  drain: 30\n  timeout: 1\n")
    with started("gateway", config, ORDINANCE_GATEWAY_DRAIN="2") as gateway:
        base = gateway.base_url("serving http://")
        wait_ready(base)
        started_at = time.monotonic()
        gateway.child.send_signal(signal.SIGTERM)
        gateway.wait_for("draining for 2s")
        status, body = http_get(base + "/readyz")
        assert status == 503 and json.loads(body)["detail"] == "the gateway is closing"
        # Still deciding while it drains (no enforcer here: the client's timeout denies).
        body = (EXAMPLES.parent / "requests" / "transfer-allowed.json").read_bytes()
        decide = httpx.post(
            base + "/v1/decide",
            content=body,
            headers={"content-type": "application/json"},
            timeout=10,
        )
        code = gateway.child.wait(timeout=STOP_BOUND_S + 30)
        took = time.monotonic() - started_at
    assert code == 0, "".join(gateway.seen)
    assert 1.5 < took < STOP_BOUND_S
    answer = decide.json()
    assert decide.status_code == 200 and answer["effect"] == "deny", answer
    assert answer["client_side"], answer  # the enforcer never answered: fail-closed
