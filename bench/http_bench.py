"""HTTP decision API benchmark: the decide round trip through ``ordinance gateway`` against
the in-process agent client, on the embedded log, in one run (issue 15 item 1).

    python bench/http_bench.py [--requests 2000] [--concurrency 32]

One ``ordinance serve`` process (controller + enforcer) decides for both; the example
policies are published first. The in-process rows are `Client.decide` in this process;
the HTTP rows are ``POST /v1/decide`` from this process to one ``ordinance gateway``
process, whose own `Client` then takes the same path. The load generator is a minimal
asyncio HTTP/1.1 client on keep-alive connections, one request in flight per connection
(a full HTTP client library cost more CPU than the gateway: with httpx2 generating the
load, the same run measured the generator). Each setting runs a warm-up, then
``--requests`` requests: one at a time (latency) and with ``--concurrency`` in flight
(throughput). Every answer is checked to be the enforcer's allow before anything is
reported.

A script that prints a table, not a test: no timing assertions anywhere. The machine
is shared (the enforcer, the gateway and the load generator compete for its cores), so
compare rows of the same run, not runs.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from ordinance.client import Client
from ordinance.policy.bundle import compile_bundle, read_bundle_dir
from ordinance.processors.controller_loop import run_controller
from ordinance.processors.policy_log import publish_bundle
from ordinance.streams import open_log
from ordinance.streams.topics import ensure_topics

EXAMPLES = Path(__file__).resolve().parents[1] / "examples" / "policies"


def request(i: int) -> dict[str, Any]:
    return {
        "agent": {"id": f"coder-{i % 8}", "team": "eng"},
        "action": {"tool": "fs.read", "args": {"path": f"/workspace/src/f{i}.py"}},
    }


def prepare(url: str) -> None:
    files = read_bundle_dir(EXAMPLES)
    with open_log(url) as log:
        ensure_topics(log)
        publish_bundle(log, files, compile_bundle(files).bundle_id, actor="bench")
        run_controller(log, once=True)


def spawn(*args: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "ordinance.cli", *args],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )


Decide = Callable[[int], Awaitable[tuple[str, bool]]]


async def run(decide: Decide, n: int, concurrency: int, start: int) -> tuple[list[float], float]:
    """Latencies (s) of ``n`` decides with ``concurrency`` in flight, and the wall time."""
    latencies: list[float] = []
    next_i = start
    lock = asyncio.Lock()

    async def worker() -> None:
        nonlocal next_i
        while True:
            async with lock:
                if next_i >= start + n:
                    return
                i = next_i
                next_i += 1
            t0 = time.perf_counter()
            effect, client_side = await decide(i)
            latencies.append(time.perf_counter() - t0)
            if effect != "allow" or client_side:
                raise SystemExit(f"request {i}: {effect} (client_side={client_side})")

    t0 = time.perf_counter()
    await asyncio.gather(*[worker() for _ in range(concurrency)])
    return latencies, time.perf_counter() - t0


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


class Connection:
    """One keep-alive HTTP/1.1 connection: a request, then its whole response."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def open(cls, host: str, port: int) -> Connection:
        return cls(*await asyncio.open_connection(host, port))

    async def post(self, path: str, body: bytes) -> tuple[int, bytes]:
        self.writer.write(
            b"POST %s HTTP/1.1\r\nHost: bench\r\nContent-Type: application/json\r\n"
            b"Content-Length: %d\r\n\r\n%s" % (path.encode(), len(body), body)
        )
        await self.writer.drain()
        head = await self.reader.readuntil(b"\r\n\r\n")
        lines = head.split(b"\r\n")
        length = next(
            int(line.split(b":", 1)[1])
            for line in lines
            if line.lower().startswith(b"content-length:")
        )
        return int(lines[0].split()[1]), await self.reader.readexactly(length)

    def close(self) -> None:
        self.writer.close()


async def bench(url: str, host: str, port: int, args: argparse.Namespace) -> list[dict[str, Any]]:
    rows = []
    pool: asyncio.Queue[Connection] = asyncio.Queue()
    for _ in range(args.concurrency):
        pool.put_nowait(await Connection.open(host, port))
    async with Client(url) as client:

        async def in_process(i: int) -> tuple[str, bool]:
            d = await client.decide(request(i), timeout=30)
            return d.effect, d.client_side

        async def over_http(i: int) -> tuple[str, bool]:
            connection = await pool.get()
            try:
                status, raw = await connection.post("/v1/decide", json.dumps(request(i)).encode())
            finally:
                pool.put_nowait(connection)
            body = json.loads(raw)
            return (body["effect"] if status == 200 else f"HTTP {status}"), body.get("client_side")

        offset = 0
        for concurrency in (1, args.concurrency):
            for name, decide in (("in-process client", in_process), ("HTTP gateway", over_http)):
                await run(decide, 200, concurrency, offset)  # warm-up
                offset += 200
                latencies, wall = await run(decide, args.requests, concurrency, offset)
                offset += args.requests
                rows.append(
                    {
                        "path": name,
                        "in_flight": concurrency,
                        "p50_ms": 1000 * statistics.median(latencies),
                        "p99_ms": 1000 * pct(latencies, 0.99),
                        "rps": args.requests / wall,
                    }
                )
    while not pool.empty():
        pool.get_nowait().close()
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=32)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{Path(tmp) / 'log.db'}"
        prepare(url)
        serve = spawn("serve", "--log", url)
        gateway = spawn("gateway", "--log", url, "--http", "127.0.0.1:0", "--timeout", "30")
        try:
            assert gateway.stderr is not None
            line = gateway.stderr.readline().decode()
            host, port = line.split("http://")[1].split("/v1/")[0].rsplit(":", 1)
            rows = asyncio.run(bench(url, host, int(port), args))
        finally:
            for child in (gateway, serve):
                child.send_signal(signal.SIGTERM)
                child.wait(timeout=30)
    print(f"embedded log, {args.requests} requests per row, {os.cpu_count()} cores\n")
    print("| path | in flight | p50 ms | p99 ms | requests/s |")
    print("|---|---:|---:|---:|---:|")
    for row in rows:
        print(
            f"| {row['path']} | {row['in_flight']} | {row['p50_ms']:.2f} | "
            f"{row['p99_ms']:.2f} | {row['rps']:.0f} |"
        )
    print()
    for concurrency in (1, args.concurrency):
        client, http = (r for r in rows if r["in_flight"] == concurrency)
        print(
            f"{concurrency} in flight: HTTP adds {http['p50_ms'] - client['p50_ms']:.2f} ms at"
            f" p50 ({http['p50_ms'] / client['p50_ms']:.2f}x), "
            f"{http['p99_ms'] - client['p99_ms']:.2f} ms at p99; throughput"
            f" {http['rps'] / client['rps']:.2f}x the in-process client's"
        )


if __name__ == "__main__":
    main()
