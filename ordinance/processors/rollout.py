"""Canary and shadow rollouts at the enforcer (docs/lifecycle.md): which bundle decides an
agent's action, and what a shadow bundle would have said.

A rollout is part of the partition's fold: the controller's ``ActiveRollout`` for the
enforcer's target reaches a decisions partition only as a ``RulesetSwap`` record naming the
stable bundle, the candidate, the mode, the percentage and the seed. So a decision depends
on nothing but the log, and replay finds the same split and the same shadow verdicts.

* **canary**: an agent is in the candidate's share when the hash of (seed, agent id) falls
  below ``percent`` of the hash space (`in_canary`). The seed is the candidate bundle id,
  so raising the percentage of a rollout only adds agents (an agent in the 10 % share is in
  the 50 % share too), and one agent sees one ruleset for the whole rollout. Window budgets
  are the agent's whatever the arm: the window state is per agent, not per bundle.
* **shadow**: the candidate is evaluated on every request the stable bundle evaluates, with
  the same window state, and its verdict is recorded beside the enforced one (Decision
  ``shadow``); it is never enforced and never counts toward a window (only allowed
  decisions of the enforced bundle fold into the windows).
"""

from __future__ import annotations

import hashlib

from ordinance.policy.decision import Decision
from ordinance.streams import records

STABLE = "stable"
CANARY = "canary"
SHADOW = "shadow"
MODES = (STABLE, CANARY, SHADOW)
# The arm a canary decision records.
CONTROL_ARM = "control"
CANARY_ARM = "canary"
_BUCKETS = 10_000  # percent * 100: a share is exact to a hundredth of a percent


def canary_bucket(seed: str, agent_id: str) -> int:
    """Where an agent falls in [0, 10000) for one rollout: the first 8 bytes of
    SHA-256(seed NUL agent id), so any language can compute the split."""
    digest = hashlib.sha256(seed.encode() + b"\x00" + agent_id.encode()).digest()
    return int.from_bytes(digest[:8], "big") % _BUCKETS


def in_canary(seed: str, agent_id: str, percent: int) -> bool:
    return canary_bucket(seed, agent_id) < percent * (_BUCKETS // 100)


def shadow_verdict(decision: Decision) -> records.ShadowVerdictIn:
    """The Decision's ``shadow`` field for what the shadow bundle answered."""
    return {
        "bundle_id": decision.bundle_id,
        "effect": str(decision.effect),  # exact str: the generated encoder's fast path
        "rule_ids": list(decision.rule_ids),
        "code": decision.code,
        "detail": decision.detail,
    }
