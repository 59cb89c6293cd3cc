"""``ordinance topics --log URL``: create Ordinance's topics (idempotent) and show them.

Run it once before the first ``serve`` to choose how many partitions the agent topics
get (``--agent-partitions``): every other process adopts the count it finds, and the
count bounds how many enforcer processes can share the work. Without the option an
existing deployment keeps its count and a new one gets 4.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

from rich.markup import escape
from rich.table import Table

from ordinance.commands.output import EXIT_FAILED, EXIT_OK, console, emit_json, report_failure
from ordinance.errors import OrdinanceError

Command = Callable[[str, str], argparse.ArgumentParser]


def register(command: Command) -> None:
    p = command(
        "topics",
        "create Ordinance's topics if missing (choosing the agent partition count) and list them",
    )
    p.add_argument(
        "--log", required=True, metavar="URL", help="sqlite:///path.db or kafka://host:port"
    )
    p.add_argument("--prefix", default="ordinance.", help="topic name prefix")
    p.add_argument(
        "--agent-partitions",
        type=int,
        default=None,
        metavar="N",
        help="partitions of agent.actions/decisions/approvals: the most enforcers that can"
        " share the work (default: the existing count, else 4; a different count than an"
        " existing topic's is refused)",
    )


def run(args: argparse.Namespace) -> int | None:
    if args.command != "topics":
        return None
    return cmd_topics(args.log, args.prefix, args.agent_partitions, args.json)


def cmd_topics(log_url: str, prefix: str, agent_partitions: int | None, as_json: bool) -> int:
    from ordinance.streams import open_log
    from ordinance.streams.topics import ensure_topics

    if agent_partitions is not None and agent_partitions < 1:
        return report_failure("--agent-partitions must be at least 1", as_json, EXIT_FAILED)
    try:
        with open_log(log_url) as log:
            specs = ensure_topics(log, prefix, agent_partitions)
            rows: list[dict[str, Any]] = [
                {
                    "name": spec.name,
                    "role": role,
                    "partitions": spec.partitions,
                    "cleanup": spec.cleanup,
                    "retention_ms": spec.retention_ms,
                    "end_offsets": {
                        str(p): o for p, o in sorted(log.end_offsets(spec.name).items())
                    },
                }
                for role, spec in specs.items()
            ]
    except OrdinanceError as exc:
        return report_failure(f"topics: {exc}", as_json, EXIT_FAILED)
    if as_json:
        emit_json({"ok": True, "log": log_url, "topics": rows})
        return EXIT_OK
    table = Table(title=f"topics on {escape(log_url)}")
    for column in ("topic", "partitions", "cleanup", "kept", "offsets used"):
        table.add_column(
            column, justify="right" if column in ("partitions", "offsets used") else "left"
        )
    for row in rows:
        table.add_row(
            escape(str(row["name"])),
            str(row["partitions"]),
            str(row["cleanup"]),
            _kept(row["retention_ms"]),
            f"{sum(row['end_offsets'].values()):,}",
        )
    console().print(table)
    return EXIT_OK


def _kept(retention_ms: Any) -> str:
    if retention_ms is None:
        return "forever"
    days = retention_ms / 86_400_000
    return f"{days:g} days" if days >= 1 else f"{retention_ms} ms"
