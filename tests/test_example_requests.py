"""The requests in examples/requests/ (the demo's "Next:" line and the README point at
them) decide what their names say under the example policies."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ordinance.policy.loader import load_ruleset
from ordinance.policy.window import InMemoryWindows

ROOT = Path(__file__).resolve().parents[1] / "examples"
REQUESTS = sorted((ROOT / "requests").glob("*.json"))
EXPECTED = {"-allowed": "allow", "-denied": "deny", "-needs-approval": "require_approval"}


def test_there_is_one_of_each_effect() -> None:
    suffixes = {s for path in REQUESTS for s in EXPECTED if path.stem.endswith(s)}
    assert suffixes == set(EXPECTED)


@pytest.mark.parametrize("path", REQUESTS, ids=lambda p: p.stem)
def test_an_example_request_decides_what_its_name_says(path: Path) -> None:
    [expected] = [effect for suffix, effect in EXPECTED.items() if path.stem.endswith(suffix)]
    request = json.loads(path.read_text(encoding="utf-8"))
    # as `ordinance eval` does: empty window state (no earlier transfers today)
    windows = InMemoryWindows(clock=lambda: 0.0)
    decision = load_ruleset(ROOT / "policies").evaluate(request, windows)
    assert decision.effect == expected, decision
