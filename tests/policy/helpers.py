"""Compile policies from text in tests, without touching the file system."""

from __future__ import annotations

import textwrap

from ordinance.policy.document import parse_policy
from ordinance.policy.ruleset import Ruleset, compile_ruleset
from ordinance.policy.schema import parse_schema

SCHEMA = """
agent: {team: string, level?: int}
tools:
  payments.transfer:
    args: {amount: decimal, currency: string, country: string, memo?: string}
  fs.read:
    args: {path: path}
  email.send:
    args: {to: list<email>, subject: string}
  http.fetch:
    args: {url: url, host: domain}
resource: {classification?: string}
context: {ticket?: string}
"""


def compile_texts(*policies: str, schema: str = SCHEMA) -> Ruleset:
    parsed = [
        parse_policy(textwrap.dedent(text), f"policy{i}.yaml") for i, text in enumerate(policies)
    ]
    return compile_ruleset(parse_schema(textwrap.dedent(schema)), parsed)


def policy(rules: str, target: str = "{}", policy_id: str = "p") -> str:
    """A minimal policy around an indented block of rules."""
    return (
        f"policy: {policy_id}\nowner: team\ndescription: test\ntarget: {target}\nrules:\n"
        + textwrap.indent(textwrap.dedent(rules), "  ")
    )


def request(tool: str, args: dict[str, object], **extra: object) -> dict[str, object]:
    agent = extra.pop("agent", {"id": "a1", "roles": ["billing"], "team": "t"})
    return {"agent": agent, "action": {"tool": tool, "args": args}, **extra}
