"""Shared helpers: build bundles from scenario files and replay witnesses."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML

from ordinance.policy.analysis.checks import Finding, RuleProbe
from ordinance.policy.document import parse_policy
from ordinance.policy.ruleset import Ruleset, compile_ruleset
from ordinance.policy.schema import parse_schema

HERE = Path(__file__).parent
SCENARIOS = HERE / "scenarios"


def load_scenario(path: Path) -> tuple[dict[str, Any], Ruleset]:
    doc = YAML(typ="safe").load(path.read_text(encoding="utf-8"))
    schema_text = doc.get("schema") or (SCENARIOS / "schema.yaml").read_text(encoding="utf-8")
    schema = parse_schema(schema_text)
    policies = [parse_policy(text, f"{path.name}::{n}") for n, text in enumerate(doc["policies"])]
    return doc, compile_ruleset(schema, policies)


def key(f: Finding) -> tuple[str, str, tuple[str, ...]]:
    return (f.kind, f.tool, tuple(f.subjects))


def replay(ruleset: Ruleset, f: Finding, probe: RuleProbe) -> None:
    """The evaluator must decide the witness exactly as the finding says."""
    assert f.witness is not None
    decision = ruleset.evaluate(f.witness.request, f.witness.windows())
    assert f.decision is not None
    assert decision.effect == f.decision["effect"], f.id
    assert sorted(decision.rule_ids) == sorted(f.decision["rule_ids"]), f.id
    if f.kind == "conflict":
        for rid in f.subjects:
            assert probe.applies(rid, f.witness), (f.id, rid)
    if f.kind == "gap":
        assert decision.code == "default"
    if f.kind == "dead-rule":
        assert f.subjects[0] not in decision.rule_ids
        assert probe.applies(f.subjects[0], f.witness)


def analyze_json(directory: Path, *extra: str) -> dict[str, Any]:
    """``ordinance analyze DIR --json`` in a fresh process, as an author's save runs it,
    without its wall-time fields (the one thing that varies between runs)."""
    done = subprocess.run(
        [sys.executable, "-m", "ordinance.cli", "analyze", str(directory), "--json", *extra],
        capture_output=True,
        check=True,
        text=True,
    )
    out: dict[str, Any] = json.loads(done.stdout)
    for timing in ("seconds", "family_seconds"):
        out.pop(timing)
    return out
