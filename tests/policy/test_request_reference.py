"""The generated per-tool validation agrees with the plain reference definition
(ordinance.policy.request.canonical_request): same requests accepted, same rejected."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from ordinance.policy.decision import INVALID_REQUEST, UNKNOWN_TOOL
from ordinance.policy.program import RequestProblem
from ordinance.policy.request import canonical_request

from .helpers import compile_texts, policy

RULESET = compile_texts(policy("- id: r\n  effect: allow\n"))

values = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-5, 5),
    st.sampled_from(
        [
            0.5,
            float("nan"),
            Decimal("1.25"),
            "12.5",
            "x",
            "",
            "/a/../b",
            "/a\\b",
            "/a/",
            "/ok/x",
            "/.ssh/k",
            "%00",
            "a@b.c",
            "http://A.com/x",
        ]
    ),
    st.lists(st.sampled_from(["a", "B@c.d", 1, "ｘ"]), max_size=3),
    st.dictionaries(st.sampled_from(["k"]), st.integers(), max_size=1),
)
VALID_ARGS: dict[str, dict[str, Any]] = {
    "payments.transfer": {"amount": "12.50", "currency": "EUR", "country": "DE"},
    "fs.read": {"path": "/srv/../etc/x"},
    "email.send": {"to": ["Boss@Corp.example"], "subject": "hi"},
    "http.fetch": {"url": "HTTPS://Example.com:443/a/./b", "host": "Example.COM."},
}
fields = st.sampled_from(
    [
        "amount",
        "currency",
        "memo",
        "path",
        "to",
        "url",
        "host",
        "extra",
        "id",
        "roles",
        "team",
        "level",
        "kind",
        "classification",
        "ticket",
    ]
)


@st.composite
def requests(draw: st.DrawFn) -> dict[str, Any]:
    """Valid requests with up to two fields replaced by arbitrary values, so that both
    outcomes (accepted, rejected) are common."""
    tool = draw(st.sampled_from(sorted(VALID_ARGS)))
    req: dict[str, Any] = {
        "agent": {"id": "a1", "roles": ["billing"], "team": "t"},
        "action": {
            "tool": draw(st.sampled_from([tool, tool.upper()])),
            "args": dict(VALID_ARGS[tool]),
        },
    }
    if draw(st.booleans()):
        req["resource"] = {"kind": "file", "id": "f1"}
    if draw(st.booleans()):
        req["context"] = {"ticket": "CHG-1"}
    for _ in range(draw(st.integers(0, 2))):
        record = draw(st.sampled_from(["agent", "args", "resource", "context", "whole"]))
        value = draw(values)
        if record == "whole":
            req[draw(st.sampled_from(["agent", "resource", "context"]))] = value
            continue
        target = req["action"]["args"] if record == "args" else req.get(record)
        if isinstance(target, dict):
            target[draw(fields)] = value
    return req


@settings(max_examples=400)
@given(requests())
def test_generated_validation_matches_the_reference(req: dict[str, Any]) -> None:
    decision = RULESET.evaluate(req)
    assert decision.code != UNKNOWN_TOOL
    try:
        canonical_request(RULESET.schema, req)
    except (RequestProblem, KeyError, TypeError, AttributeError):
        assert (decision.effect, decision.code) == ("deny", INVALID_REQUEST), decision.detail
    else:
        assert decision.effect == "allow", decision.detail


def _typed(args: dict[str, Any]) -> list[tuple[str, type, Any]]:
    # Order and types too: the enforcer encodes these arguments (Decimal("5") is not 5 there).
    return [(k, type(v), v) for k, v in args.items()]


@settings(max_examples=400)
@given(requests(), st.sampled_from([None, "no.such_tool", 7]))
def test_evaluate_canonical_is_evaluate_then_canonical(
    req: dict[str, Any], other_tool: str | int | None
) -> None:
    if other_tool is not None:
        req["action"]["tool"] = other_tool
    decision, tool, args = RULESET.evaluate_canonical(req)
    assert decision == RULESET.evaluate(req)
    expected_tool, expected_args = "", {}
    if decision.code != INVALID_REQUEST:
        try:
            canonical = RULESET.canonical(req)
            expected_tool, expected_args = canonical.tool, canonical.args
        except (RequestProblem, KeyError, TypeError, AttributeError):
            pass
    assert (tool, _typed(args)) == (expected_tool, _typed(expected_args))
