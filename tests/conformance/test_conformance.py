"""Data-driven conformance corpus for the policy language.

Every ``cases/*.yaml`` file holds a small policy bundle plus requests and their expected
decisions, and optionally policies that must fail to compile. The format is documented
in ``README.md`` next to this file. One pytest case per corpus case, with the id
``file.yaml::case name``.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from ruamel.yaml import YAML

from ordinance.policy.document import Policy, parse_policy
from ordinance.policy.document import TestCase as PolicyTest
from ordinance.policy.errors import PolicyError, PolicyErrors
from ordinance.policy.ruleset import Ruleset, compile_ruleset
from ordinance.policy.schema import Schema, parse_schema
from ordinance.policy.testing import TEST_NOW, history_windows
from ordinance.policy.window import InMemoryWindows

HERE = Path(__file__).parent
CASES_DIR = HERE / "cases"
DEFAULT_SCHEMA = HERE / "schema.yaml"
MIN_CASES = 150

EFFECTS = {"allow", "deny", "require_approval"}
CODES = {
    "matched", "default", "unknown_tool", "invalid_request", "evaluation_error",
    "approval_conflict",
}  # fmt: skip
ERROR_KINDS = {"syntax", "type", "schema"}
FILE_KEYS = {"description", "schema", "policies", "cases", "errors"}
CASE_KEYS = {
    "name", "request", "history", "expect", "rules", "code", "approval_roles",
    "approvals_required", "xfail",
}  # fmt: skip
ERROR_CASE_KEYS = {"name", "policy", "error", "xfail"}
ERROR_KEYS = {"kind", "line", "column", "contains"}


class CorpusFormatError(ValueError):
    """A corpus file that does not follow the format in README.md."""


@dataclass(frozen=True)
class Entry:
    """One corpus case: a request to decide, or a policy that must not compile."""

    file: str
    name: str
    kind: str  # "case" | "error"
    data: dict[str, Any]

    @property
    def id(self) -> str:
        return f"{self.file}::{self.name}"


def _load_yaml(path: Path) -> Any:
    return YAML(typ="safe", pure=True).load(path.read_text(encoding="utf-8"))


def _check_keys(what: str, data: Any, allowed: set[str], required: set[str]) -> None:
    if not isinstance(data, dict):
        raise CorpusFormatError(f"{what} must be a mapping")
    unknown = set(data) - allowed
    if unknown:
        raise CorpusFormatError(f"{what}: unknown key(s) {sorted(unknown)}")
    missing = required - set(data)
    if missing:
        raise CorpusFormatError(f"{what}: missing key(s) {sorted(missing)}")


def _validate_case(where: str, case: dict[str, Any]) -> None:
    _check_keys(where, case, CASE_KEYS, {"name", "request", "expect"})
    if case["expect"] not in EFFECTS:
        raise CorpusFormatError(f"{where}: expect must be one of {sorted(EFFECTS)}")
    if "code" in case and case["code"] not in CODES:
        raise CorpusFormatError(f"{where}: code must be one of {sorted(CODES)}")
    if "rules" in case and not isinstance(case["rules"], list):
        raise CorpusFormatError(f"{where}: rules must be a list of policy/rule ids")
    if "approval_roles" in case and not isinstance(case["approval_roles"], list):
        raise CorpusFormatError(f"{where}: approval_roles must be a list of roles")
    required = case.get("approvals_required")
    if required is not None and (isinstance(required, bool) or not isinstance(required, int)):
        raise CorpusFormatError(f"{where}: approvals_required must be an integer or null")


def _validate_error(where: str, case: dict[str, Any]) -> None:
    _check_keys(where, case, ERROR_CASE_KEYS, {"name", "policy", "error"})
    _check_keys(f"{where}: error", case["error"], ERROR_KEYS, {"kind"})
    if case["error"]["kind"] not in ERROR_KINDS:
        raise CorpusFormatError(f"{where}: error.kind must be one of {sorted(ERROR_KINDS)}")


def corpus_files() -> list[Path]:
    return sorted(CASES_DIR.glob("*.yaml"))


@functools.cache
def load_file(name: str) -> dict[str, Any]:
    data = _load_yaml(CASES_DIR / name)
    _check_keys(name, data, FILE_KEYS, {"description"})
    names: set[str] = set()
    for key, validate in (("cases", _validate_case), ("errors", _validate_error)):
        items = data.get(key) or []
        if not isinstance(items, list):
            raise CorpusFormatError(f"{name}: `{key}` must be a list")
        for item in items:
            where = f"{name}::{item.get('name', '?') if isinstance(item, dict) else '?'}"
            validate(where, item)
            if item["name"] in names:
                raise CorpusFormatError(f"{where}: duplicate case name")
            names.add(item["name"])
    return dict(data)


def entries() -> list[Entry]:
    out: list[Entry] = []
    for path in corpus_files():
        data = load_file(path.name)
        out += [Entry(path.name, c["name"], "case", c) for c in data.get("cases") or []]
        out += [Entry(path.name, c["name"], "error", c) for c in data.get("errors") or []]
    return out


@functools.cache
def schema_of(name: str) -> Schema:
    text = load_file(name).get("schema")
    if text is None:
        return parse_schema(DEFAULT_SCHEMA.read_text(encoding="utf-8"), str(DEFAULT_SCHEMA))
    return parse_schema(text, f"{name}::schema")


@functools.cache
def policies_of(name: str) -> tuple[Policy, ...]:
    texts = load_file(name).get("policies") or []
    return tuple(parse_policy(text, f"{name}::{i}") for i, text in enumerate(texts))


@functools.cache
def ruleset_of(name: str) -> Ruleset:
    return compile_ruleset(schema_of(name), policies_of(name))


def _describe(errors: list[PolicyError]) -> str:
    return "\n".join(
        f"  {e.kind} {e.location.line}:{e.location.column}: {e.message} (hint: {e.hint})"
        for e in errors
    )


def _error_matches(error: PolicyError, want: dict[str, Any]) -> bool:
    if error.kind != want["kind"]:
        return False
    if "line" in want and error.location.line != want["line"]:
        return False
    if "column" in want and error.location.column != want["column"]:
        return False
    if "contains" in want:
        text = f"{error.message}\n{error.hint or ''}"
        if want["contains"] not in text:
            return False
    return True


def run_case(entry: Entry) -> None:
    case = entry.data
    ruleset = ruleset_of(entry.file)
    history = tuple(case.get("history") or ())
    windows = InMemoryWindows(clock=lambda: TEST_NOW)
    if history:  # the same state `ordinance test` builds for a policy test's history
        test = PolicyTest(entry.name, case["request"], case["expect"], history=history)
        windows = history_windows(ruleset, test)
    decision = ruleset.evaluate(case["request"], windows)
    got = f"{decision.effect} ({decision.code}: {', '.join(decision.rule_ids)}; {decision.detail})"
    assert decision.effect == case["expect"], f"expected {case['expect']}, got {got}"
    if "rules" in case:
        assert sorted(decision.rule_ids) == sorted(case["rules"]), f"rules differ: got {got}"
    if "code" in case:
        assert decision.code == case["code"], f"expected code {case['code']}, got {got}"
    if "approval_roles" in case:
        assert list(decision.approval_roles) == case["approval_roles"], (
            f"approval_roles: expected {case['approval_roles']}, got {decision.approval_roles}"
        )
    if "approvals_required" in case:
        assert decision.approvals_required == case["approvals_required"], (
            f"approvals_required: expected {case['approvals_required']}, "
            f"got {decision.approvals_required}"
        )


def run_error(entry: Entry) -> None:
    case = entry.data
    want: dict[str, Any] = case["error"]
    schema = schema_of(entry.file)
    try:
        policy = parse_policy(case["policy"], f"{entry.file}::{entry.name}")
        compile_ruleset(schema, (*policies_of(entry.file), policy))
    except PolicyErrors as exc:
        errors = exc.errors
    else:
        pytest.fail(f"expected a {want['kind']} error, but the policy compiled")
    assert any(_error_matches(e, want) for e in errors), (
        f"no error matches {want}; got:\n{_describe(errors)}"
    )


def _params() -> list[Any]:
    params = []
    for entry in entries():
        marks = []
        if "xfail" in entry.data:
            marks.append(pytest.mark.xfail(reason=str(entry.data["xfail"]), strict=True))
        params.append(pytest.param(entry, id=entry.id, marks=marks))
    return params


@pytest.mark.parametrize("entry", _params())
def test_case(entry: Entry) -> None:
    if entry.kind == "case":
        run_case(entry)
    else:
        run_error(entry)


def test_corpus_size() -> None:
    assert len(entries()) >= MIN_CASES


def test_case_ids_are_unique() -> None:
    ids = [e.id for e in entries()]
    assert len(ids) == len(set(ids))


def test_every_file_has_a_description_and_cases() -> None:
    for path in corpus_files():
        data = load_file(path.name)
        assert str(data["description"]).strip(), path.name
        assert data.get("cases") or data.get("errors"), path.name
