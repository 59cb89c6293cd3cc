"""Which policy tools the bundles in force could ever allow: what ``mcp-gateway
--hide-never-allowed`` leaves out of ``tools/list``.

A listing is a hint to the agent's model, never enforcement (every call is decided
anyway), so this errs on the side of showing: a tool is hidden only when *no* allow or
require_approval rule of *any* bundle in force on the target (the stable one and, during a
canary or shadow rollout, the candidate) names it — whatever the agent, whatever the
condition — and the default effect is deny. Tools outside the schema are in that case
(the engine denies an unknown tool). Which agent asks is not considered: with identity
enforced, the agent's roles are the registry's, not what the gateway claims.

When anything is uncertain — no rollout yet, a bundle missing or not compiling, the log
unreadable — nothing is hidden.
"""

from __future__ import annotations

import threading
from typing import Any

from ordinance.policy import canon
from ordinance.policy.bundle import compile_bundle
from ordinance.policy.decision import ALLOW, DENY, REQUIRE_APPROVAL
from ordinance.policy.ruleset import Ruleset, tools_matching
from ordinance.streams import Log
from ordinance.streams.serde import Serde
from ordinance.streams.topics import POLICY_ACTIVE

_CACHED_BUNDLES = 8


def allowable_tools(ruleset: Ruleset) -> frozenset[str] | None:
    """The tools some allow or require_approval rule of ``ruleset`` applies to (for some
    agent and arguments); None: any tool may be allowed (the default effect is not deny)."""
    if ruleset.default_effect != DENY:
        return None
    out: set[str] = set()
    for compiled in ruleset.rules:
        if compiled.rule.effect in (ALLOW, REQUIRE_APPROVAL):
            out |= tools_matching(compiled.policy.target.actions, ruleset.schema) & tools_matching(
                compiled.rule.actions, ruleset.schema
            )
    return frozenset(out)


def never_allowed(policy_tool: str, allowable: frozenset[str] | None) -> bool:
    """Whether no rule in force can allow ``policy_tool`` (as the enforcer canonicalises it)."""
    if allowable is None:
        return False
    try:
        canonical = canon.canonical_tool(policy_tool)
    except Exception:  # a name the engine refuses is never allowed
        return True
    return canonical not in allowable


class PolicyView:
    """Reads the rollout in force on a target from ``policy.active`` and compiles its
    bundles (cached by id). Blocking: call from a worker thread."""

    def __init__(self, log: Log, prefix: str, target: str) -> None:
        self.log = log
        self.topic = prefix + POLICY_ACTIVE
        self.target = target
        self._serde = Serde()
        self._lock = threading.Lock()
        self._rulesets: dict[str, Ruleset] = {}

    def allowable(self) -> frozenset[str] | None:
        """The union of `allowable_tools` over the bundles in force; None: show all."""
        from ordinance.processors.policy_log import state_from_active

        with self._lock:
            state = state_from_active(self.log, self.topic, self._serde)
            rollout: dict[str, Any] | None = state.rollouts.get(self.target)
            if rollout is None:
                return None
            ids = [rollout.get("stable_bundle_id"), rollout.get("candidate_bundle_id")]
            union: set[str] = set()
            for bundle_id in filter(None, ids):
                ruleset = self._rulesets.get(bundle_id)
                if ruleset is None:
                    files = state.bundles.get(bundle_id)
                    if files is None:
                        return None
                    ruleset = compile_bundle({f["path"]: f["content"] for f in files})
                    if len(self._rulesets) >= _CACHED_BUNDLES:
                        self._rulesets.clear()
                    self._rulesets[bundle_id] = ruleset
                tools = allowable_tools(ruleset)
                if tools is None:
                    return None
                union |= tools
            return frozenset(union)
