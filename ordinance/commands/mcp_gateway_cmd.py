"""``ordinance mcp-gateway``: an MCP server that puts every tool call to the policy engine
before it reaches the upstream MCP server (docs/mcp-gateway.md).

    ordinance mcp-gateway --log URL --agent ID --map MAPPING.yaml -- UPSTREAM_COMMAND...
    ordinance mcp-gateway --log URL --agent ID --map MAPPING.yaml --upstream URL

Speaks MCP on stdin/stdout (the agent's MCP client starts it as a stdio server); all its
own output goes to stderr. Exits when the agent closes stdin.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ordinance.commands.output import EXIT_FAILED, EXIT_OK, EXIT_USAGE, report_failure
from ordinance.errors import OrdinanceError

Command = Callable[[str, str], argparse.ArgumentParser]


def register(command: Command) -> None:
    p = command(
        "mcp-gateway",
        "serve an upstream MCP server's tools over stdio, deciding every tools/call with"
        " Ordinance first (upstream: the command after --, or --upstream URL)",
    )
    p.add_argument("--log", required=True, metavar="URL", help="sqlite:///path.db or kafka://…")
    p.add_argument("--agent", required=True, metavar="ID", help="the agent the calls speak for")
    p.add_argument(
        "--role",
        action="append",
        default=[],
        metavar="ROLE",
        help="the agent's role as claimed in each intent (repeatable); an enforcer with an"
        " identity registry uses the registry's roles instead",
    )
    p.add_argument(
        "--attribute",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="an agent attribute claimed in each intent (repeatable), e.g. team=eng",
    )
    p.add_argument(
        "--key",
        metavar="PEM",
        help="the agent's private key: sign every intent (default $ORDINANCE_AGENT_KEY)",
    )
    p.add_argument(
        "--map",
        required=True,
        metavar="MAPPING.yaml",
        help="upstream tool name -> policy tool name, and what unmapped tools get",
    )
    p.add_argument("--prefix", default="ordinance.", help="topic name prefix")
    p.add_argument(
        "--timeout",
        type=float,
        default=5.0,
        metavar="S",
        help="wait this long for a decision; none in time is a deny (default 5)",
    )
    p.add_argument(
        "--approval-wait",
        type=float,
        default=0.0,
        metavar="S",
        help="on require_approval, wait this long for a human's answer before telling the"
        " agent to check back (default 0: tell it at once)",
    )
    p.add_argument(
        "--hide-never-allowed",
        action="store_true",
        help="leave out of tools/list the tools no allow or require_approval rule in force"
        " names (for any agent); calls to them are decided (denied) all the same",
    )
    p.add_argument(
        "--target",
        default="default",
        help="deployment target whose rollout --hide-never-allowed reads (default: default)",
    )
    p.add_argument(
        "--upstream",
        default=None,
        metavar="URL",
        help="a streamable-HTTP upstream MCP server (instead of a command after --)",
    )
    p.add_argument(
        "upstream_command",
        nargs=argparse.REMAINDER,
        metavar="-- UPSTREAM_COMMAND",
        help="the stdio upstream MCP server to start",
    )


def run(args: argparse.Namespace) -> int | None:
    if args.command != "mcp-gateway":
        return None
    command = list(args.upstream_command)
    if command and command[0] == "--":
        command = command[1:]
    return cmd_mcp_gateway(
        log_url=args.log,
        agent_id=args.agent,
        roles=args.role,
        attributes=args.attribute,
        key=args.key,
        mapping_path=args.map,
        prefix=args.prefix,
        timeout_s=args.timeout,
        approval_wait_s=args.approval_wait,
        upstream_url=args.upstream,
        upstream_command=command,
        as_json=args.json,
        hide_never_allowed=args.hide_never_allowed,
        target=args.target,
    )


def _attributes(pairs: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"--attribute {pair!r}: expected KEY=VALUE")
        out[key.strip()] = value
    return out


def cmd_mcp_gateway(
    *,
    log_url: str,
    agent_id: str,
    roles: list[str],
    attributes: list[str],
    key: str | None,
    mapping_path: str,
    prefix: str,
    timeout_s: float,
    approval_wait_s: float,
    upstream_url: str | None,
    upstream_command: list[str],
    as_json: bool,
    hide_never_allowed: bool = False,
    target: str = "default",
) -> int:
    import anyio
    from mcp.client.stdio import StdioServerParameters

    from ordinance.client import Client
    from ordinance.keys import KeyFileError
    from ordinance.streams import open_existing_log
    from ordinance.surfaces.mcp_gateway import serve_stdio
    from ordinance.surfaces.mcp_listing import PolicyView
    from ordinance.surfaces.mcp_mapping import ToolMapping

    if bool(upstream_url) == bool(upstream_command):
        return report_failure(
            "name one upstream: a command after --, or --upstream URL", as_json, EXIT_USAGE
        )
    if not timeout_s > 0 or not approval_wait_s >= 0:
        return report_failure("--timeout must be > 0 and --approval-wait >= 0", as_json, EXIT_USAGE)
    try:
        mapping = ToolMapping.from_file(Path(mapping_path))
        claimed = _attributes(attributes)
    except (OrdinanceError, ValueError) as exc:
        return report_failure(str(exc), as_json, EXIT_USAGE)
    upstream: Any
    if upstream_url:
        upstream = upstream_url
    else:
        # The upstream gets the SDK's minimal environment (HOME, PATH, ...), not this one:
        # the agent's key path and the log's credentials stay here. It takes what it
        # needs from the command line (`-- env TOKEN=... server`).
        upstream = StdioServerParameters(command=upstream_command[0], args=upstream_command[1:])
    try:
        # Never creates the log: a mistyped path must fail, not wait on an empty database.
        client = Client(
            log_url,
            agent_id=agent_id,
            roles=roles,
            attributes=claimed,
            topic_prefix=prefix,
            key=key,
        )
    except KeyFileError as exc:
        return report_failure(f"cannot use the key: {exc}", as_json, EXIT_USAGE)
    except OrdinanceError as exc:
        return report_failure(f"the log is not usable: {exc}", as_json, EXIT_FAILED)
    view_log = None
    try:
        view = None
        if hide_never_allowed:
            view_log = open_existing_log(log_url)
            view = PolicyView(view_log, prefix, target)
        anyio.run(
            lambda: serve_stdio(
                client,
                upstream,
                mapping,
                timeout_s=timeout_s,
                approval_wait_s=approval_wait_s,
                policy_view=view,
            ),
            backend="asyncio",
        )
    except OSError as exc:
        return report_failure(f"cannot start the upstream: {exc}", as_json, EXIT_FAILED)
    except OrdinanceError as exc:
        return report_failure(f"the log is not usable: {exc}", as_json, EXIT_FAILED)
    finally:
        client.close()
        if view_log is not None:
            view_log.close()
    return EXIT_OK
