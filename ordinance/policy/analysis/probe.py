"""Whether a rule applies to a request, decided by the real evaluator (used to confirm
the rule-level claims of witnesses: a conflict's two rules both match it, a dead rule
matches it without deciding it)."""

from __future__ import annotations

from dataclasses import replace

from ordinance.policy.analysis.space import Witness
from ordinance.policy.errors import PolicyErrors
from ordinance.policy.ruleset import Ruleset, compile_ruleset


class RuleProbe:
    """Whether one rule applies to a request, decided by the real evaluator on a ruleset
    holding that rule alone. (Tried: one ruleset per tool with every rule turned into a
    deny, whose decision names every matching rule — compiling it cost more than the
    single-rule rulesets the checks need on the 1000-rule set.)"""

    def __init__(self, ruleset: Ruleset, tool: str | None = None):
        self.ruleset = ruleset
        self.tool = tool  # only requests to this tool are probed: compile nothing else
        self._cache: dict[str, Ruleset] = {}

    def alone(self, qualified_id: str) -> Ruleset:
        found = self._cache.get(qualified_id)
        if found is None:
            cr = next(c for c in self.ruleset.rules if c.qualified_id == qualified_id)
            policy = replace(cr.policy, rules=(cr.rule,), assertions=(), tests=())
            schema = self.ruleset.schema
            try:
                if self.tool is None:
                    raise PolicyErrors([])
                one = replace(schema, tools={self.tool: schema.tools[self.tool]})
                found = compile_ruleset(one, [policy])
            except PolicyErrors:
                found = compile_ruleset(schema, [policy])
            self._cache[qualified_id] = found
        return found

    def applies(self, qualified_id: str, w: Witness) -> bool:
        d = self.alone(qualified_id).evaluate(w.request, w.windows())
        return d.code == "matched" and qualified_id in d.rule_ids
