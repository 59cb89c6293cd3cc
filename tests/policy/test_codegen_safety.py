"""Hostile policy text must never execute: it reaches generated code only as repr literals."""

from __future__ import annotations

import builtins
from pathlib import Path

import pytest

from ordinance.policy.errors import PolicyErrors

from .helpers import SCHEMA, compile_texts, policy, request

PAYLOADS = [
    '"); __import__("os").system("touch {marker}"); ("',
    "'); __import__('os').system('touch {marker}'); ('",
    '\\"); __import__(\\"os\\").system(\\"touch {marker}\\"); (\\"',
    "\n__import__('os').system('touch {marker}')\n",
    "{{__import__('os').system('touch {marker}')}}",
    "\\u0027); __import__('os').system('touch {marker}'); #",
]


@pytest.fixture
def marker(tmp_path: Path) -> Path:
    return tmp_path / "pwned"


@pytest.mark.parametrize("payload", PAYLOADS)
def test_hostile_strings_in_conditions_reasons_and_targets_stay_data(
    payload: str, marker: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    text = payload.format(marker=marker)
    quoted = text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    rules = f"""
    - id: r
      effect: allow
      reason: "{quoted}"
      obligations: ["{quoted}"]
      when: 'action.args.currency == "{quoted.replace("'", "''")}" || action.args.currency.startsWith("{quoted.replace("'", "''")}") || action.args.currency in ["{quoted.replace("'", "''")}"] || action.args.currency.matches("{quoted.replace("'", "''").replace("(", "[(]").replace(")", "[)]")}")'
    """
    target = f'{{agents: {{roles: ["{quoted}"], ids: ["{quoted}"]}}, actions: ["payments.*"]}}'
    calls: list[object] = []
    real_import = builtins.__import__
    monkeypatch.setattr(
        builtins, "__import__", lambda *a, **k: (calls.append(a[0]), real_import(*a, **k))[1]
    )
    try:
        rs = compile_texts(policy(rules, target))
    except PolicyErrors:
        return  # refusing the policy is also safe
    agent = {"id": text, "roles": [text], "team": "t"}
    d = rs.evaluate(
        request(
            "payments.transfer", {"amount": "1", "currency": text, "country": "DE"}, agent=agent
        )
    )
    assert d.effect == "allow"
    assert not marker.exists()
    assert "os" not in calls
    for program in rs.programs.values():
        assert (
            "__import__" not in program.source or "'" in program.source
        )  # only ever inside a repr literal
        assert "system(" not in program.source.replace(repr(text), "")


def test_generated_code_has_no_builtins() -> None:
    rs = compile_texts(policy("- id: r\n  effect: allow\n", '{actions: ["fs.read"]}'))
    fn = rs.programs["fs.read"].run
    assert fn.__globals__["__builtins__"] == {}


def test_hostile_schema_names_are_inert(marker: Path) -> None:
    hostile_tool = f"x'); __import__('os').system('touch {marker}'); ('"
    schema = SCHEMA.replace("tools:\n", f'tools:\n  "{hostile_tool}": {{args: {{n: int}}}}\n', 1)
    rs = compile_texts(policy("- id: r\n  effect: allow\n"), schema=schema)
    assert hostile_tool in rs.programs  # accepted as data, a dictionary key
    d = rs.evaluate(
        {"agent": {"id": "a", "team": "t"}, "action": {"tool": hostile_tool, "args": {"n": 1}}}
    )
    assert d.effect == "allow"
    assert not marker.exists()
    assert all(
        "__import__" not in p.source.replace(repr(hostile_tool), "") for p in rs.programs.values()
    )
