"""Schema compatibility (issue 13 item 7): changes that refuse requests valid under the
schema in force, found and located; `check --log` and `publish` refuse them unless
`acknowledgements.ack` covers them; everything else passes."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from ordinance.cli import main
from ordinance.policy.analysis.gate import ACK_FILE, AckProblem, load_acks
from ordinance.policy.schema import parse_schema
from ordinance.policy.schema_compat import SchemaBreak, accepts, schema_breaks
from ordinance.policy.types import parse_type

OLD = """\
agent:
  team: string
  environment?: {type: string, normalize: nfkc_casefold_trim, enum: [dev, prod]}
tools:
  pay.send:
    args:
      amount: int
      country: {type: string, normalize: nfkc_casefold_trim, enum: [de, fr, kp]}
      memo?: string
      target: string
  pay.refund:
    args: {amount: decimal}
context:
  ticket?: string
"""


def breaks(new: str) -> list[SchemaBreak]:
    return schema_breaks(parse_schema(OLD), parse_schema(new), new, "p/schema.yaml")


def kinds(new: str) -> list[tuple[str, str, str]]:
    return [(b.change, b.tool, b.field) for b in breaks(new)]


def test_the_same_schema_and_compatible_changes_break_nothing() -> None:
    assert breaks(OLD) == []
    widened = (
        OLD.replace("amount: int", "amount: decimal")  # int -> decimal
        .replace("enum: [de, fr, kp]", "enum: [de, fr, kp, it]")  # a value added
        .replace("target: string", "target: string\n      note?: string")  # optional arg
        .replace("  team: string\n", "")  # agent records accept extra fields
        .replace("  ticket?: string", "  ticket?: string\n  region?: string")
        .replace("context:\n", "  pay.new:\n    args: {x: int}\ncontext:\n")  # a new tool
    )
    assert breaks(widened) == []


def test_a_removed_tool() -> None:
    new = OLD.replace("  pay.refund:\n    args: {amount: decimal}\n", "")
    [b] = breaks(new)
    assert (b.change, b.tool, b.field) == ("removed-tool", "pay.refund", "action.tool")
    assert (b.location.file, b.location.line, b.location.column) == ("p/schema.yaml", 4, 1)


def test_a_new_required_argument_and_an_optional_one_made_required() -> None:
    new = OLD.replace("target: string", "target: string\n      reference: string")
    [b] = breaks(new)
    assert (b.change, b.field) == ("new-required", "action.args.reference")
    assert (b.location.line, b.location.column) == (11, 7)  # file:line:column of the key
    assert "required" in b.message and "pay.send" in b.message
    assert kinds(OLD.replace("memo?: string", "memo: string")) == [
        ("new-required", "pay.send", "action.args.memo")
    ]
    assert kinds(OLD.replace("  ticket?: string", "  ticket?: string\n  region: string")) == [
        ("new-required", "*", "context.region")
    ]


def test_a_removed_argument_is_refused_by_strict_arguments() -> None:
    assert kinds(OLD.replace("      memo?: string\n", "")) == [
        ("removed-arg", "pay.send", "action.args.memo")
    ]


@pytest.mark.parametrize(
    ("old", "new", "ok"),
    [
        ("int", "decimal", True),
        ("decimal", "int", False),
        ("string", "path", False),
        ("path", "string", True),
        ("url", "domain", False),
        ("list<int>", "list<decimal>", True),
        ("list<decimal>", "list<int>", False),
        ("bool", "string", False),
        ("set<string>", "list<string>", False),
    ],
)
def test_type_narrowing(old: str, new: str, ok: bool) -> None:
    assert accepts(parse_type(old), parse_type(new)) is ok


def test_a_narrowed_type() -> None:
    [b] = breaks(
        OLD.replace(
            "pay.refund:\n    args: {amount: decimal}", "pay.refund:\n    args: {amount: int}"
        )
    )
    assert (b.change, b.tool, b.field, b.before, b.after) == (
        "narrowed-type",
        "pay.refund",
        "action.args.amount",
        "decimal",
        "int",
    )
    assert b.location.line == 12  # the type's position in the new file
    # an enum where there was none narrows a string
    assert kinds(OLD.replace("target: string", "target: {type: string, enum: [a]}")) == [
        ("narrowed-type", "pay.send", "action.args.target")
    ]


def test_removed_enum_values_each_a_break() -> None:
    new = OLD.replace("enum: [de, fr, kp]", "enum: [de]").replace(
        "enum: [dev, prod]", "enum: [prod]"
    )
    assert kinds(new) == [  # in file order
        ("removed-enum-value", "*", "agent.environment=dev"),
        ("removed-enum-value", "pay.send", "action.args.country=fr"),
        ("removed-enum-value", "pay.send", "action.args.country=kp"),
    ]
    ids = {b.finding().id for b in breaks(new)}
    assert len(ids) == 3 and all(i.startswith("schema-break:") for i in ids)


def test_fields_acknowledgements_load_and_cover(tmp_path: Path) -> None:
    ack = tmp_path / ACK_FILE
    ack.write_text(
        "acknowledgements:\n"
        "  - fields: ['action.args.country*']\n    tool: 'pay.*'\n    justification: j\n"
    )
    [a] = load_acks(ack)
    new = OLD.replace("enum: [de, fr, kp]", "enum: [de]")
    assert all(a.covers(b.finding()) for b in breaks(new))
    assert not a.covers(breaks(OLD.replace("memo?: string", "memo: string"))[0].finding())
    ack.write_text("acknowledgements:\n  - fields: [x]\n    kind: conflict\n    justification: j\n")
    with pytest.raises(AckProblem):
        load_acks(ack)


# -- the gate on the command line -------------------------------------------------------

POLICY = """\
policy: pay
owner: finance
description: payments
rules:
  - {id: small, effect: allow, when: 'action.tool == "pay.send" && action.args.amount < 100'}
"""


def bundle(root: Path, name: str, schema: str, ack: str | None = None) -> Path:
    d = root / name
    d.mkdir()
    (d / "schema.yaml").write_text(schema)
    (d / "pay.yaml").write_text(POLICY)
    if ack is not None:
        (d / ACK_FILE).write_text(ack)
    return d


def publish(url: str, d: Path, *extra: str) -> int:
    return main(["publish", str(d), "--log", url, "--actor", "alice", "--skip-analysis", *extra])


def in_force(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> str:
    url = f"sqlite:///{tmp_path / 'log.db'}"
    assert publish(url, bundle(tmp_path, "v1", OLD)) == 0
    assert main(["controller", "--log", url, "--once"]) == 0
    capsys.readouterr()
    return url


def out_json(capsys: pytest.CaptureFixture[str]) -> Any:
    return json.loads(capsys.readouterr().out)


def test_check_with_log_refuses_a_breaking_change_with_its_location(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = in_force(tmp_path, capsys)
    v2 = bundle(tmp_path, "v2", OLD.replace("target: string", "target: string\n      ref: string"))
    assert main(["check", str(v2)]) == 0  # without --log: nothing to compare with
    capsys.readouterr()
    assert main(["check", str(v2), "--log", url]) == 5
    err = capsys.readouterr().err
    assert f"{v2 / 'schema.yaml'}:11:7: breaking schema change schema-break:" in err
    assert "new required field" in err
    assert main(["check", str(v2), "--log", url, "--json"]) == 5
    schema = out_json(capsys)["schema"]
    [refused] = schema["refused"]
    assert schema["ok"] is False and schema["against"] and refused["kind"] == "schema-break"
    assert refused["details"]["change"] == "new-required"
    # another target has nothing in force
    assert main(["check", str(v2), "--log", url, "--target", "staging", "--json"]) == 0
    assert out_json(capsys)["schema"]["outcome"] == "not_checked"
    # acknowledged by id: passes, and says which acknowledgement let it
    (v2 / ACK_FILE).write_text(
        f"acknowledgements:\n  - id: {refused['id']}\n    justification: callers send ref\n"
    )
    assert main(["check", str(v2), "--log", url, "--json"]) == 0
    schema = out_json(capsys)["schema"]
    assert schema["outcome"] == "acknowledged" and schema["acknowledged"][0]["id"] == refused["id"]


def test_check_analyze_with_log_runs_the_schema_gate_too(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = in_force(tmp_path, capsys)
    v2 = bundle(tmp_path, "v2", OLD.replace("  pay.refund:\n    args: {amount: decimal}\n", ""))
    assert main(["check", str(v2), "--analyze", "--log", url, "--json"]) == 5
    out = out_json(capsys)
    assert out["gate"]["ok"] is True and out["schema"]["ok"] is False
    assert main(["check", str(v2), "--analyze", "--log", url]) == 5
    assert "removed" in capsys.readouterr().err


def test_publish_refuses_then_publishes_an_acknowledged_break_on_the_record(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = in_force(tmp_path, capsys)
    narrowed = OLD.replace("enum: [de, fr, kp]", "enum: [de, fr]")
    v2 = bundle(tmp_path, "v2", narrowed)
    capsys.readouterr()
    assert publish(url, v2, "--json") == 5
    refused = out_json(capsys)["schema"]["refused"]
    assert [r["subjects"] for r in refused] == [["action.args.country=kp"]]
    (v2 / ACK_FILE).write_text(
        "acknowledgements:\n  - fields: ['action.args.country=*']\n"
        "    justification: kp is sanctioned; no agent may send it\n    by: finance-risk\n"
    )
    assert publish(url, v2, "--json") == 0
    checks = out_json(capsys)["checks"]
    assert checks["schema_compatibility"]["outcome"] == "acknowledged"
    assert checks["schema_compatibility"]["breaking"] == 1
    [ack] = checks["acknowledgements"]
    assert ack["kind"] == "schema-break" and ack["by"] == "finance-risk"
    assert main(["policy", "history", "--log", url, "--json"]) == 0
    published = [e for e in out_json(capsys)["events"] if e["event"] == "published"]
    assert published[0]["checks"]["schema_compatibility"]["outcome"] == "not_checked"
    assert published[1]["checks"]["schema_compatibility"]["outcome"] == "acknowledged"
    assert published[1]["checks"]["acknowledgements"][0]["finding"] == refused[0]["id"]
    assert main(["policy", "history", "--log", url]) == 0
    assert "acknowledged" in capsys.readouterr().out  # the table's checks column


def test_publish_of_a_compatible_schema_records_compatible(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = in_force(tmp_path, capsys)
    v2 = bundle(tmp_path, "v2", OLD.replace("amount: int", "amount: decimal"))
    capsys.readouterr()
    assert publish(url, v2, "--json") == 0
    compat = out_json(capsys)["checks"]["schema_compatibility"]
    assert compat["outcome"] == "compatible" and len(compat["against"]) == 1


def test_unacknowledged_breaks_for_a_reader_of_the_log() -> None:
    from ordinance.policy.schema_compat import unacknowledged_breaks

    new = OLD.replace("enum: [de, fr, kp]", "enum: [de]")
    old_schema, new_schema = parse_schema(OLD), parse_schema(new)
    ids = [b.finding().id for b in breaks(new)]
    assert len(unacknowledged_breaks(old_schema, new_schema, [])) == 2
    assert [b.field for b in unacknowledged_breaks(old_schema, new_schema, ids[:1])] == [
        "action.args.country=kp"
    ]
    assert unacknowledged_breaks(old_schema, new_schema, ids) == []


def test_check_with_log_says_compatible(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    url = in_force(tmp_path, capsys)
    v2 = bundle(tmp_path, "v2", OLD.replace("memo?: string", "memo?: string\n      note?: string"))
    assert main(["check", str(v2), "--log", url]) == 0
    assert "schema compatible against the bundle in force on 'default'" in capsys.readouterr().out


def test_diff_fail_on_fails_on_tools_it_could_not_compare(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A new context field changes every tool's request shape: nothing is compared, so a
    --fail-on gate must fail rather than pass on an empty list of changes."""
    v1 = bundle(tmp_path, "v1", OLD)
    v2 = bundle(tmp_path, "v2", OLD.replace("  ticket?: string", "  ticket?: string\n  x?: int"))
    assert main(["diff", str(v1), str(v2), "--fail-on", "new-allow", "--json"]) == 5
    out = out_json(capsys)
    assert out["changes"] == [] and set(out["failing_not_compared"]) == {"pay.refund", "pay.send"}
    assert main(["diff", str(v1), str(v1), "--fail-on", "new-allow"]) == 0
