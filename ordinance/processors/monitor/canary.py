"""Canary analysis in the monitor's fold: does the candidate deny (or fail closed) more
than the stable bundle, on the same partition, during the same rollout?

A partition's rollout is what its last ``RulesetSwap`` says (candidate, mode, percentage,
``auto_rollback``); every Decision of a canary names its arm. Per partition, for as long
as one candidate is in canary, the monitor counts each arm's decisions and denies (a
fail-closed deny is a deny: a candidate that errors is a regression too). The condition
is judged like the others — on the fold alone, so a replay raises the same alert at the
same offset:

* both arms have at least ``canary.min_samples`` decisions;
* the canary's deny rate exceeds control's by at least ``canary.threshold``;
* a one-sided two-proportion z-test (pooled) puts that excess at p < the look's alpha.

The test is not run after every decision: over a long rollout, a test at p < alpha
after each of thousands of decisions flags a good canary by chance sooner or later (a
simulation of 40,000 noisy decisions did, at n = 50). It is run at the **looks** — the
canary decision that brings the canary arm to m, 2m, 4m, … decisions (m =
``min_samples``) — and look k spends alpha / 2^(k+1) (`look_alpha`), so the chance of
any false alarm over the whole rollout stays below ``canary.alpha`` (a union bound), and
a reviewer can recompute each look from the evidence (``look``, ``look_alpha``).

The evidence names both bundles, the percentage, each arm's sample and rate, z and p, so a
reviewer can recompute it. The alert resolves (``canary_regression_resolved``) when the
excess falls below half the threshold or the canary ends. When the rollout was started with
``--auto-rollback``, the alert says so (``details.auto_rollback``) and the monitor process
writes one signed ``rolled_back`` event for the candidate (`runner`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

CANARY_REGRESSION = "canary_regression"


@dataclass
class ArmCounts:
    n: int = 0
    deny: int = 0

    @property
    def rate(self) -> float:
        return self.deny / self.n if self.n else 0.0


@dataclass
class CanaryWatch:
    """One partition's canary in progress: the rollout and each arm's counts."""

    stable: str
    candidate: str
    percent: int
    auto_rollback: bool
    policy_offset: int
    arms: dict[str, ArmCounts] = field(
        default_factory=lambda: {"control": ArmCounts(), "canary": ArmCounts()}
    )

    def add(self, arm: str, deny: bool) -> None:
        counts = self.arms.get(arm)
        if counts is not None:
            counts.n += 1
            counts.deny += deny


def one_sided_z(x1: int, n1: int, x2: int, n2: int) -> tuple[float, float]:
    """(z, p) of H0: rate 1 is not above rate 2 (pooled standard error)."""
    pooled = (x1 + x2) / (n1 + n2)
    se = math.sqrt(pooled * (1 - pooled) * (1 / n1 + 1 / n2))
    diff = x1 / n1 - x2 / n2
    if se == 0:
        return (0.0, 1.0) if diff <= 0 else (math.inf, 0.0)
    z = diff / se
    return z, 0.5 * math.erfc(z / math.sqrt(2))


def look_alpha(n: int, m: int, alpha: float) -> tuple[int, float] | None:
    """(k, alpha / 2^(k+1)) when ``n`` = m·2^k is a look; None between looks."""
    if n < m or n % m:
        return None
    ratio = n // m
    if ratio & (ratio - 1):
        return None
    k = ratio.bit_length() - 1
    return k, alpha / 2 ** (k + 1)


def watch_from_swap(datum: dict[str, Any], current: CanaryWatch | None) -> CanaryWatch | None:
    """The partition's canary after a swap: kept (with its counts) while the same
    candidate stays in canary — widening the share does not start over — else new or
    none."""
    if datum.get("mode") != "canary" or not datum.get("candidate_bundle_id"):
        return None
    candidate = str(datum["candidate_bundle_id"])
    percent = int(datum.get("canary_percent") or 0)
    auto = bool(datum.get("auto_rollback"))
    if current is not None and current.candidate == candidate:
        current.percent, current.auto_rollback = percent, auto
        current.policy_offset = int(datum["policy_offset"])
        return current
    return CanaryWatch(str(datum["bundle_id"]), candidate, percent, auto, datum["policy_offset"])
