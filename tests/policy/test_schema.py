from __future__ import annotations

import pytest

from ordinance.policy.errors import PolicyError
from ordinance.policy.schema import parse_schema
from ordinance.policy.types import DECIMAL, SET_STRING, list_of, parse_type


def test_fields_types_and_optional_marker() -> None:
    schema = parse_schema(
        "agent: {team: string, level?: int}\n"
        "tools:\n  pay.send: {args: {amount: decimal, to: list<email>}, description: d}\n"
        "settings: {default_effect: allow, combining: first-applicable}\n"
    )
    assert schema.agent["level"].optional and not schema.agent["team"].optional
    assert schema.agent["roles"].type == SET_STRING  # built in
    assert schema.tools["pay.send"].args["amount"].type == DECIMAL
    assert schema.tools["pay.send"].args["to"].type == list_of(parse_type("email"))
    assert (schema.settings.default_effect, schema.settings.combining) == (
        "allow",
        "first-applicable",
    )


@pytest.mark.parametrize(
    ("text", "message", "line"),
    [
        ("tools:\n  a.b: {args: {n: integer}}\n", "unknown type `integer`", 2),
        ("tools:\n  A.B: {args: {n: int}}\n", "not in canonical form", 2),
        ("tools:\n  a.b: {args: {n: set<int>}}\n", "sets hold strings only", 2),
        ("tools:\n  a.b: {argz: {n: int}}\n", "unknown key `argz`", 2),
        ("agent: {id: int}\ntools:\n  a.b: {}\n", "built into agent", 1),
        ("tools: {}\n", "declares no tools", 1),
        (
            "tools:\n  a.b: {}\nsettings: {default_effect: maybe}\n",
            "default_effect must be one of",
            3,
        ),
        (
            "tools:\n  a.b: {}\nsettings: {combining: permit-overrides}\n",
            "combining must be one of",
            3,
        ),
        ("tool:\n  a.b: {}\n", "did you mean `tools`?", 1),
    ],
)
def test_schema_errors_are_located(text: str, message: str, line: int) -> None:
    with pytest.raises(PolicyError) as info:
        parse_schema(text, "schema.yaml")
    assert message in info.value.render()
    assert info.value.location.line == line
