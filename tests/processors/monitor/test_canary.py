"""Canary analysis in the monitor's fold: a candidate that denies more than control opens
one alert with recomputable evidence, at the same offset on every fold; the end of the
canary resolves it; too few samples or a small excess never fire."""

from __future__ import annotations

import datetime as dt
import math
from typing import Any

import pytest

from ordinance.processors.monitor.canary import CANARY_REGRESSION, one_sided_z
from ordinance.processors.monitor.config import MonitorConfig
from ordinance.processors.monitor.fold import MonitorState, fold_all
from tests.processors.monitor.helpers import BUNDLE, T0, decision

CANDIDATE = "sha256:" + "cd" * 32


def _swap(mode: str = "canary", percent: int = 20, auto: bool = True) -> dict[str, Any]:
    return {
        "enforcer_id": "e",
        "partition": 0,
        "bundle_id": BUNDLE,
        "previous_bundle_id": None,
        "policy_offset": 7,
        "longest_window_ms": 0,
        "candidate_bundle_id": CANDIDATE if mode != "stable" else None,
        "mode": mode,
        "canary_percent": percent if mode == "canary" else 0,
        "canary_seed": CANDIDATE if mode == "canary" else None,
        "auto_rollback": auto,
        "at": T0,
        "prev_hash": None,
        "hash": None,
    }


def _armed(n: int, arm: str, deny: bool) -> dict[str, Any]:
    d = decision(
        n,
        at=T0 + dt.timedelta(seconds=n),
        effect="deny" if deny else "allow",
        bundle=CANDIDATE if arm == "canary" else BUNDLE,
    )
    d["arm"] = arm
    return d


def _canary_traffic(count: int, canary_deny_every: int) -> list[tuple[str, dict[str, Any]]]:
    """One canary decision in five; the canary denies one in ``canary_deny_every``,
    control one in twenty."""
    out = []
    for n in range(count):
        arm = "canary" if n % 5 == 0 else "control"
        deny = (n // 5) % canary_deny_every == 0 if arm == "canary" else n % 20 == 1
        out.append(("Decision", _armed(n, arm, deny)))
    return out


def _fold(records: list[tuple[str, dict[str, Any]]]) -> tuple[MonitorState, list[dict[str, Any]]]:
    state = MonitorState(MonitorConfig())
    alerts = fold_all(state, [(0, i, name, d) for i, (name, d) in enumerate(records)])
    return state, alerts


def test_the_one_sided_z_test_is_the_pooled_one() -> None:
    z, p = one_sided_z(30, 100, 10, 100)
    assert z == pytest.approx(0.2 / math.sqrt(0.2 * 0.8 * 0.02))
    assert p == pytest.approx(0.5 * math.erfc(z / math.sqrt(2)))
    assert one_sided_z(10, 100, 30, 100)[1] > 0.99  # fewer denies is no regression


def test_a_regressing_canary_opens_one_alert_with_evidence_and_its_end_resolves_it() -> None:
    records = [("RulesetSwap", _swap()), *_canary_traffic(1000, canary_deny_every=2)]
    records.append(("RulesetSwap", _swap(mode="stable")))
    state, alerts = _fold(records)
    assert [a["kind"] for a in alerts] == [CANARY_REGRESSION, f"{CANARY_REGRESSION}_resolved"]
    opened, resolved = alerts
    ev = opened["details"]
    assert opened["bundle_id"] == CANDIDATE and ev["auto_rollback"] is True
    assert (ev["candidate_bundle_id"], ev["stable_bundle_id"]) == (CANDIDATE, BUNDLE)
    assert ev["canary_sample"] >= 50 and ev["control_sample"] >= 50
    z, p = one_sided_z(
        round(float(ev["canary_deny_rate"]) * ev["canary_sample"]),
        ev["canary_sample"],
        round(float(ev["control_deny_rate"]) * ev["control_sample"]),
        ev["control_sample"],
    )
    assert float(ev["z"]) == pytest.approx(z, rel=1e-6)
    assert float(ev["p_value"]) == pytest.approx(p, rel=1e-6) and p < 0.01
    assert resolved["details"]["opened_by"] == opened["alert_id"]
    assert resolved["details"]["offset"] == len(records) - 1  # the swap that ended it
    assert state.arm_decisions[(CANDIDATE, "canary", "deny")] > 0
    # The same records fold to the same alerts (ids and offsets): a replay agrees.
    assert _fold(records)[1] == alerts


def test_no_alert_below_the_minimum_sample_or_for_a_small_excess() -> None:
    few = [("RulesetSwap", _swap()), *_canary_traffic(200, canary_deny_every=1)]
    assert _fold(few)[1] == []  # 40 canary decisions: below min_samples (50)
    close = [("RulesetSwap", _swap()), *_canary_traffic(2000, canary_deny_every=12)]
    assert _fold(close)[1] == []  # 8.3% against 5%: under the 10-point threshold


def test_widening_the_canary_keeps_its_counts_and_another_candidate_starts_over() -> None:
    first = [("RulesetSwap", _swap(percent=10)), *_canary_traffic(240, canary_deny_every=2)]
    widened = [*first, ("RulesetSwap", _swap(percent=50)), *_canary_traffic(60, 2)]
    # 48 + 12 canary decisions: the alert needs both halves, so the counts were kept.
    assert [a["kind"] for a in _fold(widened)[1]] == [CANARY_REGRESSION]
    state, _ = _fold(first)
    assert state.canaries[0].arms["canary"].n == 48


def test_shadow_disagreements_are_counted_by_bundle_pair_and_effects() -> None:
    records = []
    for n in range(10):
        d = decision(n, at=T0)
        d["shadow"] = {
            "bundle_id": CANDIDATE,
            "effect": "deny" if n < 3 else "allow",
            "rule_ids": [],
            "code": "matched",
            "detail": "",
        }
        records.append(("Decision", d))
    state, alerts = _fold(records)
    assert state.shadow_disagreements == {(BUNDLE, CANDIDATE, "allow", "deny"): 3}
    assert alerts == []


@pytest.mark.parametrize("seed", range(5))
def test_a_good_canary_raises_no_false_alarm_over_a_long_noisy_run(seed: int) -> None:
    """Both arms deny 20 % of the time at random (the candidate is as good as control);
    over 40,000 decisions per partition, judged after every one, the canary is never
    flagged — the minimum sample, the threshold and the one-sided test hold together."""
    import random

    rng = random.Random(seed)
    records: list[tuple[str, dict[str, Any]]] = [("RulesetSwap", _swap(percent=10))]
    for n in range(40_000):
        arm = "canary" if rng.random() < 0.1 else "control"
        records.append(("Decision", _armed(n, arm, rng.random() < 0.2)))
    state, alerts = _fold(records)
    assert [a for a in alerts if a["kind"].startswith(CANARY_REGRESSION)] == []
    assert state.canaries[0].arms["canary"].n > 3000
