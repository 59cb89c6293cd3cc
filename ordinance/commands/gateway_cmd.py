"""``ordinance gateway --log URL --http HOST:PORT``: the HTTP decision API
(docs/http-api.md): ``POST /v1/decide``, ``GET /v1/decisions/{id}``, ``POST
/v1/approvals/{id}``, ``/healthz``, ``/readyz`` and ``/openapi.json``, until SIGTERM."""

from __future__ import annotations

import argparse
import signal
import sys
import threading
import time
from collections.abc import Callable

from ordinance import service_config
from ordinance.commands.output import EXIT_FAILED, EXIT_OK, EXIT_USAGE, report_failure
from ordinance.errors import OrdinanceError

Command = Callable[[str, str], argparse.ArgumentParser]


def register(command: Command) -> None:
    p = command(
        "gateway",
        "serve the HTTP decision API: agents in any language decide, poll and approve"
        " over HTTP through the log (docs/http-api.md)",
    )
    p.add_argument("--log", required=True, metavar="URL", help="sqlite:///path.db or kafka://…")
    p.add_argument("--http", required=True, metavar="HOST:PORT", help="where to listen")
    p.add_argument("--prefix", default="ordinance.", help="topic name prefix")
    p.add_argument(
        "--timeout",
        type=float,
        default=5.0,
        metavar="S",
        help="how long a decide waits for the enforcer before denying (client_timeout)",
    )
    p.add_argument(
        "--max-body",
        type=int,
        default=1024 * 1024,
        metavar="BYTES",
        help="largest request body accepted (413 beyond); default 1 MiB",
    )
    p.add_argument(
        "--drain",
        type=float,
        default=0.0,
        metavar="S",
        help="on SIGTERM, answer /readyz 503 for S seconds while still deciding, so a load"
        " balancer stops routing here before the listener closes (default 0)",
    )
    service_config.prepare_parser(p, "gateway")


def run(args: argparse.Namespace) -> int | None:
    if args.command != "gateway":
        return None
    try:
        service_config.resolve("gateway", args)
    except service_config.ServiceConfigError as exc:
        return report_failure(str(exc), args.json, EXIT_USAGE)
    return cmd_gateway(
        args.log, args.http, args.prefix, args.timeout, args.max_body, args.json, args.drain
    )


def cmd_gateway(
    log_url: str,
    http: str,
    prefix: str,
    timeout: float,
    max_body: int,
    as_json: bool,
    drain: float = 0.0,
) -> int:
    from ordinance.identity.http_signing import MAX_SIGNED_BODY_BYTES
    from ordinance.processors.http_server import HttpServer, host_port
    from ordinance.surfaces.http_api import build_app
    from ordinance.surfaces.http_gateway import Gateway

    try:
        address = host_port(http)
        if not 0 < timeout <= 600:
            raise ValueError(f"--timeout wants 0 < S <= 600, not {timeout:g}")
        if not 0 <= drain <= 300:
            raise ValueError(f"--drain wants 0 <= S <= 300, not {drain:g}")
        if not 0 < max_body <= MAX_SIGNED_BODY_BYTES:
            raise ValueError(
                f"--max-body wants 1..{MAX_SIGNED_BODY_BYTES} (what an enforcer parses)"
            )
    except ValueError as exc:
        return report_failure(str(exc), as_json, EXIT_USAGE)
    try:
        gateway = Gateway(log_url, prefix=prefix, timeout_s=timeout)
    except OrdinanceError as exc:
        return report_failure(str(exc), as_json, EXIT_FAILED)
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    server = HttpServer(build_app(gateway, max_body=max_body), *address)
    try:
        server.start()
        print(
            f"gateway: serving http://{address[0]}:{server.bound_port}/v1/decide",
            file=sys.stderr,
            flush=True,
        )
        stop.wait()
        # Rolling restarts: /readyz answers 503 from here on, decides are still served for
        # --drain seconds (a load balancer notices and routes elsewhere), then the listener
        # closes and uvicorn finishes the requests in flight.
        gateway.closed = True
        if drain > 0:
            print(f"gateway: draining for {drain:g}s", file=sys.stderr, flush=True)
            time.sleep(drain)
    except TimeoutError as exc:
        return report_failure(str(exc), as_json, EXIT_FAILED)
    finally:
        gateway.closed = True  # /readyz answers 503 while connections drain
        server.stop()
        gateway.close()
    print("gateway: stopped", file=sys.stderr, flush=True)
    return EXIT_OK
