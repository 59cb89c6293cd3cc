"""``ordinance monitor --log URL``: the policy monitor (docs/monitor.md).

Runs until SIGTERM/SIGINT, folding ``agent.decisions`` into metrics and alerts; ``--http
HOST:PORT`` serves ``/metrics``, ``/healthz``, ``/readyz``, ``/v1/report`` and the
dashboard at ``/``.
``--report`` instead folds the log as it stands, writes nothing, prints the report (the
same one ``/v1/report`` serves) and exits. ``--rollback-actor NAME`` (with ``--key`` or
``$ORDINANCE_KEY``) lets it roll back a canary started with ``--auto-rollback`` when its
regression alert opens (docs/lifecycle.md).
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rich.markup import escape
from rich.table import Table

from ordinance import service_config
from ordinance.commands.output import (
    EXIT_FAILED,
    EXIT_OK,
    EXIT_USAGE,
    console,
    emit_json,
    report_failure,
)
from ordinance.errors import OrdinanceError

Command = Callable[[str, str], argparse.ArgumentParser]


def register(command: Command) -> None:
    p = command(
        "monitor",
        "fold the decisions log into metrics and alerts (drift, fail-closed spikes, lag,"
        " silence); serve /metrics and health checks",
    )
    p.add_argument("--log", required=True, metavar="URL", help="sqlite:///path.db or kafka://…")
    p.add_argument("--prefix", default="ordinance.", help="topic name prefix")
    p.add_argument(
        "--config",
        "--thresholds",
        dest="config",
        default=None,
        metavar="FILE",
        help="monitor thresholds (YAML; docs/monitor.md); `thresholds:` in the service config",
    )
    p.add_argument(
        "--http",
        default=None,
        metavar="HOST:PORT",
        help="serve the dashboard (/), /metrics, /healthz, /readyz and /v1/report here",
    )
    p.add_argument(
        "--report",
        action="store_true",
        help="fold the log as it stands, print the report and exit (writes nothing)",
    )
    p.add_argument(
        "--rollback-actor",
        default=None,
        metavar="NAME",
        help="roll back canaries started with --auto-rollback as this principal",
    )
    p.add_argument(
        "--key",
        default=None,
        metavar="PEM",
        help="sign rollbacks as --rollback-actor with this key (default $ORDINANCE_KEY)",
    )
    p.add_argument("--target", default="default", help="the deployment target rollbacks name")
    service_config.prepare_parser(p, "monitor")


def run(args: argparse.Namespace) -> int | None:
    if args.command != "monitor":
        return None
    try:
        service_config.resolve("monitor", args)
    except service_config.ServiceConfigError as exc:
        return report_failure(str(exc), args.json, EXIT_USAGE)
    return cmd_monitor(
        args.log,
        args.prefix,
        args.config,
        args.http,
        args.report,
        args.json,
        rollback=(args.rollback_actor, args.key, args.target),
    )


def cmd_monitor(
    log_url: str,
    prefix: str,
    config_path: str | None,
    http: str | None,
    report_only: bool,
    as_json: bool,
    rollback: tuple[str | None, str | None, str] = (None, None, "default"),
) -> int:
    from ordinance.commands.lifecycle_cmds import change_signer
    from ordinance.processors.http_server import host_port
    from ordinance.processors.monitor.config import MonitorConfig
    from ordinance.processors.monitor.runner import AutoRollback
    from ordinance.streams import open_existing_log

    actor, key, target = rollback
    try:
        config = MonitorConfig.from_file(Path(config_path)) if config_path else MonitorConfig()
        address = host_port(http) if http else None
        if key is not None and actor is None:
            raise ValueError("--key signs rollbacks: give --rollback-actor too")
        auto = AutoRollback(actor, change_signer(actor, key), target) if actor else None
    except (OrdinanceError, ValueError) as exc:
        return report_failure(str(exc), as_json, EXIT_USAGE)
    try:
        with open_existing_log(log_url) as log:
            if report_only:
                return _report(log, config, prefix, as_json)
            return _serve(log, config, prefix, address, auto)
    except OrdinanceError as exc:
        return report_failure(str(exc), as_json, EXIT_FAILED)


def _report(log: Any, config: Any, prefix: str, as_json: bool) -> int:
    from ordinance.processors.monitor.http import report
    from ordinance.processors.monitor.runner import Monitor

    monitor = Monitor(log, config=config, prefix=prefix, read_only=True)
    monitor.fold_to_end()
    data = report(monitor)
    if as_json:
        emit_json(data)
        return EXIT_OK
    out = console()
    totals = data["totals"]
    out.print(
        f"{data['records']} decisions-log records; "
        + ", ".join(f"{k} {v}" for k, v in sorted(totals.items()))
    )
    table = Table("bundle", "tool", "effect", "code", "decisions")
    for row in data["decisions"]:
        table.add_row(
            escape(row["bundle_id"][:19]),
            escape(row["tool"]),
            row["effect"],
            escape(row["code"]),
            str(row["decisions"]),
        )
    out.print(table)
    for alert in data["open_alerts"]:
        out.print(f"[red]open[/] {escape(alert['kind'])}: {escape(alert['message'])}")
    if not data["open_alerts"]:
        out.print("no open alerts")
    return EXIT_OK


def _serve(log: Any, config: Any, prefix: str, address: tuple[str, int] | None, auto: Any) -> int:
    from ordinance.processors.http_server import HttpServer
    from ordinance.processors.monitor.http import build_app
    from ordinance.processors.monitor.runner import Monitor

    def say(message: str) -> None:
        print(message, file=sys.stderr, flush=True)

    monitor = Monitor(log, config=config, prefix=prefix, progress=say, auto_rollback=auto)
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    server = None
    if address is not None:
        server = HttpServer(build_app(monitor), *address)
        server.start()
        base = f"http://{address[0]}:{server.bound_port}"
        say(f"monitor: dashboard at {base}/, metrics at {base}/metrics")
    try:
        monitor.run(stop)
    finally:
        if server is not None:
            server.stop()
    say(f"monitor: stopped after {monitor.health.records} records, {monitor.alerts_written} alerts")
    return EXIT_OK
