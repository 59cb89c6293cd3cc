#!/usr/bin/env python3
"""Soak: does `ordinance serve` stay flat for as long as it runs?

A fleet of agents sends actions at a fixed rate (event time = now, keyed by agent id),
with a hot swap every ``--swap-every`` seconds, to `ordinance serve` running in its own
process with a dedupe horizon and a state cache. Every ``--sample`` seconds the table gets
a row: the enforcer's resident memory, the state cache's size on disk, how many actions
were sent and decided, and the decide latency (event time to evaluation) of the
decisions made in the interval. At the end: the takeover time of a restart with the
state cache and without it (folding the whole log), then `replay verify` and
`audit verify` over everything the run wrote.

    python bench/soak.py --minutes 30 --rate 2000              # the embedded backend
    python bench/soak.py --minutes 5 --rate 1000 --horizon 60s --backend kafka
    python bench/soak.py ... --plot soak.png                   # needs matplotlib

Memory and state must stop growing once the horizon (plus the longest window) has
passed; before bounded state they grew with the log. A script that prints a table, not
a test: no timing assertions anywhere.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import io
import json
import os
import random
import re
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from ruamel.yaml import YAML  # noqa: E402

from ordinance.commands.demo_pipeline import stricter  # noqa: E402
from ordinance.keys import Keyring, generate  # noqa: E402
from ordinance.policy.bundle import compile_bundle, read_bundle_dir  # noqa: E402
from ordinance.processors.audit.verify import verify_log  # noqa: E402
from ordinance.processors.controller_loop import run_controller  # noqa: E402
from ordinance.processors.policy_log import publish_bundle  # noqa: E402
from ordinance.replay.source import LogSource  # noqa: E402
from ordinance.replay.verify import verify  # noqa: E402
from ordinance.streams import Record, open_log  # noqa: E402
from ordinance.streams.log import AtOffset, TopicPartition  # noqa: E402
from ordinance.streams.serde import Decoded, Serde  # noqa: E402
from ordinance.streams.topics import AGENT_ACTIONS, AGENT_DECISIONS, ensure_topics  # noqa: E402
from ordinance.wire import request_to_wire  # noqa: E402

EXAMPLES = HERE.parent / "examples" / "policies"
_WINDOW = re.compile(r'(window\.(?:count|sum)\((?:[^()"]*,\s*)?)"[0-9]+[smhd]"\)')


def _policies(window: str | None) -> dict[str, str]:
    """The examples; with ``window``, every window duration replaced by it, so the state's
    plateau (horizon + longest window) comes within a soak rather than after a day. The
    policies' own tests are dropped then (they state 24h of history; the controller would
    refuse the bundle): the soak measures the runtime, `ordinance test` the policies."""
    files = read_bundle_dir(EXAMPLES)
    if window is None:
        return files
    yaml = YAML()
    out = {}
    for path, original in files.items():
        text = _WINDOW.sub(rf'\1"{window}")', original)
        document = yaml.load(text)
        if isinstance(document, dict) and "tests" in document:
            del document["tests"]
            buffer = io.StringIO()
            yaml.dump(document, buffer)
            text = buffer.getvalue()
        out[path] = text
    return out


@dataclass
class Sample:
    t_s: float
    sent: int
    decided: int
    rss_mb: float
    state_mb: float
    p50_ms: float
    p99_ms: float
    request_ids: int  # what the enforcer's partitions remember (`/metrics`)
    window_events: int  # what they keep for windows


def _rss_mb(pid: int) -> float:
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


_GAUGE = re.compile(r"^(ordinance_enforcer_state_\w+) ([0-9.e+]+)$", re.MULTILINE)


def _state_size(port: int) -> tuple[int, int]:
    """(request ids, window events) from serve's /metrics; (-1, -1) when unanswered."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as answer:
            found = dict(_GAUGE.findall(answer.read().decode()))
    except OSError:
        return -1, -1
    return (
        int(float(found.get("ordinance_enforcer_state_request_ids", -1))),
        int(float(found.get("ordinance_enforcer_state_window_events", -1))),
    )


def _size_mb(path: Path) -> float:
    total = sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) if path.exists() else 0
    return total / 2**20


def _serve(
    url: str, state_dir: Path, horizon: str, key: Path, http_port: int | None = None
) -> subprocess.Popen[bytes]:
    command = [sys.executable, "-m", "ordinance.cli", "serve", "--log", url]
    command += ["--dedupe-horizon", horizon, "--state-dir", str(state_dir)]
    command += ["--signing-key", str(key)]
    if http_port is not None:
        command += ["--http", f"127.0.0.1:{http_port}"]
    return subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def transfer_request(
    agent: str, rng: random.Random, amounts: tuple[int, ...] = (5, 40, 300, 1200)
) -> dict[str, Any]:
    """One payments transfer of ``agent``: amounts and countries that budgets, limits and
    the sanctioned-country rule all see (the soak's and the takeover bench's traffic)."""
    return {
        "agent": {"id": agent, "roles": ["billing"], "team": "finance"},
        "action": {
            "tool": "payments.transfer",
            "args": {
                "amount": str(rng.choice(amounts)),
                "currency": "EUR",
                "country": rng.choice(["DE", "FR", "RU"]),
                "iban": "DE00",
            },
        },
    }


def _fleet(url: str, rate: float, agents: int, stop: threading.Event, sent: list[int]) -> None:
    """Actions at ``rate``/s in 20 ms batches, from ``agents`` agents, small amounts."""
    serde, rng = Serde(), random.Random(7)
    with open_log(url) as log:
        topic = ensure_topics(log)[AGENT_ACTIONS].name
        per_batch, started, n = max(1, round(rate / 50)), time.monotonic(), 0
        while not stop.is_set():
            now = dt.datetime.now(dt.UTC)
            batch = []
            for _ in range(per_batch):
                agent = f"soak-bot-{n % agents}"
                datum = request_to_wire(
                    # One amount: the budget then lets the same share through all along.
                    # With mixed amounts, small ones refill what an expiring large one
                    # frees, the allowed share drifts up for most of an hour, and so does
                    # the state the windows keep (as they should).
                    transfer_request(agent, rng, (300,)),
                    request_id=f"s{n}",
                    event_time=now,
                    client_id="soak",
                )
                batch.append(
                    Record(
                        agent.encode(),
                        serde.encode("ActionRequest", datum),
                        (),
                        int(now.timestamp() * 1000),
                    )
                )
                n += 1
            log.produce(topic, batch)
            sent[0] = n
            delay = started + n / rate - time.monotonic()
            if delay > 0:
                stop.wait(delay)


def _swapper(url: str, every_s: float, stop: threading.Event, files: dict[str, str]) -> None:
    """Every ``every_s``, a new revision alternating between the examples and a stricter
    variant, each with its own budget ceiling (50,000 plus the turn), so every swap is a
    bundle the enforcer has not seen (going back to an earlier bundle is refused as
    ``revision_rollback``) and the enforcer's compiled bundles must not pile up."""
    turn = 1
    while not stop.wait(every_s):
        base = files if turn % 2 == 0 else stricter(files)
        chosen = {path: text.replace("> 50000", f"> {50000 + turn}") for path, text in base.items()}
        with open_log(url) as log:
            publish_bundle(
                log, chosen, compile_bundle(chosen).bundle_id, actor="soak", reason="soak swap"
            )
        turn += 1


class DecisionTail:
    """Reads new decisions since the last call: how many, and their decide latencies."""

    def __init__(self, log: Any) -> None:
        self.serde = Serde()
        self.consumer = log.consumer(None, relaxed=True)
        topic = ensure_topics(log)[AGENT_DECISIONS].name
        self.consumer.assign({TopicPartition(topic, p): AtOffset(0) for p in log.partitions(topic)})
        self.decided = 0

    def drain(self) -> list[float]:
        latencies: list[float] = []
        while records := self.consumer.poll(max_records=5000, timeout=0.05):
            for record in records:
                decoded = self.serde.decode_record(record, expect={"Decision"})
                if isinstance(decoded, Decoded):
                    d = decoded.value
                    self.decided += 1
                    if d.get("event_time") is not None:
                        latencies.append(
                            (d["evaluated_at"] - d["event_time"]).total_seconds() * 1000
                        )
        return latencies


def _quantile(values: list[float], q: float) -> float:
    return sorted(values)[min(len(values) - 1, int(q * len(values)))] if values else 0.0


def _takeover_s(url: str, state_dir: Path, horizon: str, key: Path, tail: DecisionTail) -> float:
    """Start serve, send one action, and time until it is decided."""
    tail.drain()
    before = tail.decided
    started = time.monotonic()
    server = _serve(url, state_dir, horizon, key)
    try:
        stop, sent = threading.Event(), [0]
        probe = threading.Thread(target=_fleet, args=(url, 50.0, 1, stop, sent))
        probe.start()
        while tail.decided == before and time.monotonic() - started < 600:
            tail.drain()
            time.sleep(0.02)
        stop.set()
        probe.join()
        return time.monotonic() - started
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=60)


@contextlib.contextmanager
def _log_url(backend: str, tmp: Path) -> Iterator[str]:
    if backend == "sqlite":
        url = f"sqlite:///{tmp / 'soak.db'}"
        with open_log(url, create=True):
            pass
        yield url
        return
    from ordinance.streams.kafka_broker import start_broker

    with start_broker() as broker:
        yield broker.url


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=30.0)
    parser.add_argument("--rate", type=float, default=2000.0, help="actions per second")
    parser.add_argument("--agents", type=int, default=200)
    parser.add_argument("--horizon", default="2m", help="serve --dedupe-horizon")
    parser.add_argument("--swap-every", type=float, default=120.0, help="seconds between swaps")
    parser.add_argument("--sample", type=float, default=15.0, help="seconds between rows")
    parser.add_argument(
        "--window",
        default="1m",
        help="replace the examples' window durations (24h budget) with this; 'as-is' keeps them",
    )
    parser.add_argument("--backend", choices=["sqlite", "kafka"], default="sqlite")
    parser.add_argument("--plot", default=None, metavar="PNG", help="write the curves (matplotlib)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    load = os.getloadavg()
    samples: list[Sample] = []
    with tempfile.TemporaryDirectory() as tmp_name, _log_url(args.backend, Path(tmp_name)) as url:
        tmp = Path(tmp_name)
        key = tmp / "signing.pem"
        generate(key, tmp / "keyring.json")
        files = _policies(None if args.window == "as-is" else args.window)
        with open_log(url) as log:
            ensure_topics(log)
            publish_bundle(log, files, compile_bundle(files).bundle_id, actor="soak")
            run_controller(log, once=True)
        state_dir = tmp / "state"
        port = _free_port()
        server = _serve(url, state_dir, args.horizon, key, port)
        stop, sent = threading.Event(), [0]
        threads = [
            threading.Thread(target=_fleet, args=(url, args.rate, args.agents, stop, sent)),
            threading.Thread(target=_swapper, args=(url, args.swap_every, stop, files)),
        ]
        with open_log(url) as log:
            tail = DecisionTail(log)
            for thread in threads:
                thread.start()
            started = time.monotonic()
            try:
                while time.monotonic() - started < args.minutes * 60:
                    time.sleep(args.sample)
                    latencies = tail.drain()
                    samples.append(
                        Sample(
                            round(time.monotonic() - started, 1),
                            sent[0],
                            tail.decided,
                            round(_rss_mb(server.pid), 1),
                            round(_size_mb(state_dir), 2),
                            round(_quantile(latencies, 0.5), 2),
                            round(_quantile(latencies, 0.99), 2),
                            *_state_size(port),
                        )
                    )
                    print(samples[-1], file=sys.stderr, flush=True)
            finally:
                stop.set()
                for thread in threads:
                    thread.join()
            deadline = time.monotonic() + 600
            while tail.decided < sent[0] and time.monotonic() < deadline:
                tail.drain()
            server.send_signal(signal.SIGTERM)
            server.wait(timeout=60)
            with_cache = _takeover_s(url, state_dir, args.horizon, key, tail)
            without_cache = _takeover_s(url, tmp / "empty-state", args.horizon, key, tail)
            replay = verify(LogSource(log))
            audit = verify_log(log, Keyring.from_file(tmp / "keyring.json"))
    summary = {
        "backend": args.backend,
        "rate": args.rate,
        "horizon": args.horizon,
        "window": args.window,
        "load_at_start": [round(x, 2) for x in load],
        "samples": [asdict(s) for s in samples],
        "takeover_s": {
            "with_state_cache": round(with_cache, 2),
            "without": round(without_cache, 2),
        },
        "replay_verify_ok": replay.ok,
        "replay_decisions": replay.decisions,
        "audit_findings": len(audit.findings),
    }
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        print(
            f"{args.backend}, {args.rate:g} actions/s, horizon {args.horizon}, windows "
            f"{args.window}, swap every "
            f"{args.swap_every:g}s; {os.cpu_count()} CPUs, load at start {summary['load_at_start']}\n"
        )
        print(
            "| t s | sent | decided | enforcer RSS MB | state cache MB | request ids kept "
            "| window events kept | decide p50 ms | p99 ms |"
        )
        print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
        for s in samples:
            print(
                f"| {s.t_s:.0f} | {s.sent:,} | {s.decided:,} | {s.rss_mb} | {s.state_mb} "
                f"| {s.request_ids:,} | {s.window_events:,} | {s.p50_ms} | {s.p99_ms} |"
            )
        rss = [s.rss_mb for s in samples]
        half = rss[len(rss) // 2 :] or rss
        print(
            f"\nRSS second half: median {statistics.median(half):.1f} MB, max {max(half):.1f} MB "
            f"(first sample {rss[0] if rss else 0} MB). Takeover: {with_cache:.2f} s with the "
            f"state cache, {without_cache:.2f} s folding the log. replay verify: "
            f"{'clean' if replay.ok else 'FINDINGS'} over {replay.decisions:,} decisions; "
            f"audit verify: {len(audit.findings)} findings."
        )
    if args.plot:
        _plot(samples, Path(args.plot), summary)
    return 0 if replay.ok and not audit.findings else 1


def _plot(samples: list[Sample], path: Path, summary: dict[str, Any]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    t = [s.t_s / 60 for s in samples]
    fig, (top, middle, bottom) = plt.subplots(3, 1, figsize=(8, 8), sharex=True)
    top.plot(t, [s.rss_mb for s in samples], label="enforcer RSS (MB)")
    top.plot(t, [s.state_mb for s in samples], label="state cache on disk (MB)")
    top.set_ylabel("MB")
    top.legend()
    top.set_title(
        f"soak: {summary['backend']}, {summary['rate']:g}/s, horizon {summary['horizon']}"
    )
    middle.plot(t, [s.request_ids / 1000 for s in samples], label="request ids kept (k)")
    middle.plot(t, [s.window_events / 1000 for s in samples], label="window events kept (k)")
    middle.set_ylabel("thousands")
    middle.legend()
    bottom.plot(t, [s.p50_ms for s in samples], label="decide p50 (ms)")
    bottom.plot(t, [s.p99_ms for s in samples], label="decide p99 (ms)")
    bottom.set_xlabel("minutes")
    bottom.set_ylabel("ms")
    bottom.legend()
    fig.tight_layout()
    fig.savefig(path)


if __name__ == "__main__":
    sys.exit(main())
