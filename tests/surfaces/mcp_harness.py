"""Harness for the MCP gateway's end-to-end tests: an embedded log with the example
policies enforced by a real `Enforcer` thread, and the SDK's own MCP client talking to
``ordinance mcp-gateway`` as a subprocess over stdio (the gateway starting or reaching
the recording upstream in ``mcp_upstream.py``).

The MCP client lives in an event loop on its own thread for the whole module, so tests
make plain blocking calls (`Agent.call`) on one long-lived gateway session."""

from __future__ import annotations

import asyncio
import json
import os
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import Future
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import mcp_types as types
from mcp.client.client import Client as McpClient
from mcp.client.stdio import StdioServerParameters

from ordinance.identity.trust import TrustRoot
from ordinance.policy.bundle import compile_bundle, read_bundle_dir
from ordinance.processors.approvals import answer, pending_approvals
from ordinance.processors.controller_loop import run_controller
from ordinance.processors.enforcer import Enforcer
from ordinance.processors.policy_log import publish_bundle
from ordinance.streams import open_log
from ordinance.streams.serde import Decoded, Serde
from ordinance.streams.topics import ensure_topics, topic_specs
from tests.processors.identity_helpers import Registry
from tests.processors.running import enforcer_thread

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples" / "policies"
UPSTREAM = Path(__file__).resolve().parent / "mcp_upstream.py"
ACTIONS = topic_specs()["agent.actions"].name

MAPPING = """\
version: 1
tools:
  read_file: fs.read
  write_file: fs.write
  delete_path: fs.delete
  transfer: payments.transfer
"""


def log_url_in(directory: Path) -> str:
    return f"sqlite:///{directory / 'log.db'}"


def new_log(directory: Path, registry: Registry | None = None) -> str:
    """An embedded log with the topics created and the example bundle enforced; with a
    ``registry`` (of `log_url_in` the directory), by a registered, signing controller."""
    url = log_url_in(directory)
    files = read_bundle_dir(EXAMPLES)
    with open_log(url, create=True) as log:
        ensure_topics(log)
        controller = registry.controller() if registry is not None else None
        publish_bundle(log, files, compile_bundle(files).bundle_id, actor="test")
        run_controller(log, once=True, signer=controller)
    return url


@contextmanager
def enforcer(
    url: str, ready_timeout: float = 60.0, trust: TrustRoot | None = None
) -> Iterator[Enforcer]:
    """A real enforcer in a thread, yielded once it owns every actions partition; with
    ``trust`` it enforces identity (signed intents, the registry's roles)."""
    with enforcer_thread(url, ready_timeout=ready_timeout, trust=trust) as running:
        yield running.enforcer


def gateway_command(
    url: str, mapping: Path, *options: str, upstream: Sequence[str] | None = None
) -> StdioServerParameters:
    """``python -m ordinance.cli mcp-gateway ...`` as the MCP client starts it."""
    args = ["-m", "ordinance.cli", "mcp-gateway", "--log", url, "--map", str(mapping), *options]
    if upstream is not None:
        args += ["--", *upstream]
    env = {"PYTHONPATH": str(ROOT)}
    for name in ("COVERAGE_PROCESS_START",):
        if name in os.environ:
            env[name] = os.environ[name]
    return StdioServerParameters(command=sys.executable, args=args, env=env, cwd=str(ROOT))


class Agent:
    """The SDK's MCP client connected to a gateway, driven from blocking test code."""

    def __init__(self, server: StdioServerParameters) -> None:
        self._server = server
        self._loop = asyncio.new_event_loop()
        self._ready: Future[None] = Future()
        self._stop: asyncio.Event | None = None
        self._client: McpClient | None = None
        self._thread = threading.Thread(target=self._run, name="mcp-agent", daemon=True)

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._loop.run_until_complete(self._main())

    async def _main(self) -> None:
        self._stop = asyncio.Event()
        try:
            async with McpClient(self._server, read_timeout_seconds=60) as client:
                self._client = client
                self._ready.set_result(None)
                await self._stop.wait()
        except BaseException as exc:
            if not self._ready.done():
                self._ready.set_exception(exc)
            else:
                raise

    def __enter__(self) -> Agent:
        self._thread.start()
        self._ready.result(timeout=60)
        return self

    def __exit__(self, *exc: object) -> None:
        stop = self._stop
        if stop is not None:
            self._loop.call_soon_threadsafe(stop.set)
        self._thread.join(timeout=30)

    def _do(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout=90)

    def tools(self) -> list[str]:
        assert self._client is not None
        return [t.name for t in self._do(self._client.list_tools()).tools]

    def call(self, name: str, arguments: dict[str, Any]) -> types.CallToolResult:
        assert self._client is not None
        result: types.CallToolResult = self._do(self._client.call_tool(name, arguments))
        return result


def text(result: types.CallToolResult) -> str:
    return "\n".join(c.text for c in result.content if isinstance(c, types.TextContent))


def ordinance(result: types.CallToolResult) -> dict[str, Any]:
    """The decision summary a refused call carries."""
    assert result.is_error, text(result)
    assert isinstance(result.structured_content, dict)
    summary: dict[str, Any] = result.structured_content["ordinance"]
    return summary


def received(record: Path) -> list[dict[str, Any]]:
    """Every call the upstream received, in order."""
    if not record.exists():
        return []
    return [json.loads(line) for line in record.read_text().splitlines() if line]


def intents(url: str, agent_id: str) -> dict[str, dict[str, Any]]:
    """The ActionRequests the agent published, by request id."""
    serde = Serde()
    out = {}
    with open_log(url) as log:
        for record in log.read_to_end(ACTIONS):
            decoded = serde.decode_record(record)
            assert isinstance(decoded, Decoded)
            if decoded.value["agent"]["id"] == agent_id:
                out[decoded.value["request_id"]] = decoded.value
    return out


def human(url: str, agent_id: str, *, approve: bool, timeout: float = 30) -> threading.Thread:
    """A human in another thread: answers the agent's first pending approval once it shows."""

    def run() -> None:
        deadline = time.monotonic() + timeout
        with open_log(url) as log:
            while time.monotonic() < deadline:
                waiting = [d for d in pending_approvals(log) if d["agent_id"] == agent_id]
                if waiting:
                    answer(log, waiting[0]["request_id"], approve=approve, approver="dana")
                    return
                time.sleep(0.05)

    thread = threading.Thread(target=run, name="human", daemon=True)
    thread.start()
    return thread


def approve(url: str, request_id: str, *, yes: bool = True) -> None:
    with open_log(url) as log:
        answer(log, request_id, approve=yes, approver="dana")


@dataclass
class Stack:
    """A log, an agent talking to the gateway, and the upstream's record of its calls."""

    url: str
    record: Path
    agent: Agent

    def call(self, name: str, args: dict[str, Any]) -> tuple[types.CallToolResult, list[Any]]:
        """The result, and what the upstream received because of this call."""
        before = len(received(self.record))
        result = self.agent.call(name, args)
        return result, received(self.record)[before:]
