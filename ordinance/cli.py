"""The one entry point: ``ordinance <command>``. Every command belongs to a group module
in ordinance.commands that registers its parsers and runs them, the same way for all."""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence
from typing import Any

from ordinance import __version__

# Command groups that own their sub-parser and dispatch. Each module has
# ``register(command)`` (``command(name, help) -> ArgumentParser``, with --json added) and
# ``run(args) -> int | None`` (None: not one of its commands). Heavy imports stay inside
# the run functions so ``ordinance --help`` stays fast.
_GROUP_MODULES: tuple[str, ...] = (
    "ordinance.commands.authoring_cli",
    "ordinance.commands.pipeline_cli",
    "ordinance.commands.audit_cmds",
    "ordinance.commands.replay_cmds",
    "ordinance.commands.policy_history_cmds",
    "ordinance.commands.topics_cmd",
    "ordinance.commands.identity_cmds",
    "ordinance.commands.schemas_cmd",
    "ordinance.commands.change_cmds",
    "ordinance.commands.monitor_cmd",
    "ordinance.commands.mcp_gateway_cmd",
    "ordinance.commands.gateway_cmd",
)


def _groups() -> list[Any]:
    return [importlib.import_module(name) for name in _GROUP_MODULES]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ordinance",
        description="A living policy engine for autonomous AI agents.",
    )
    parser.add_argument("--version", action="version", version=f"ordinance {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, help_text: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_text, description=help_text)
        p.add_argument("--json", action="store_true", help="machine-readable output")
        return p

    for group in _groups():
        group.register(command)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    for group in _groups():
        code = group.run(args)
        if code is not None:
            return int(code)
    raise AssertionError(args.command)


if __name__ == "__main__":
    sys.exit(main())
