"""How long a decisions partition remembers: the dedupe horizon, and the pruning it allows.

A partition's state would otherwise grow for as long as the deployment runs: every request
id ever decided (so a redelivered action is not decided twice) and every allowed action
(so windows can count them). The horizon bounds both, exactly, as part of the fold:

* ``high_water`` is the latest evaluation time of any decision folded so far — a fact of
  the log, so the live enforcer, a takeover that folds the log and a replay agree on it.
* An intent whose event time is more than the horizon before ``high_water`` is never
  judged: it is denied ``stale_request`` (``stale``). So a request id older than that can
  be forgotten — a re-send of it would be stale — without risking a second judgement.
* Every judged intent's window therefore starts after ``high_water - horizon - L``, where
  L is the longest window of any bundle the partition has swapped in (each
  ``RulesetSwap`` records it). Allowed actions dated at or before that are dropped. A
  bundle with a longer window than any before it still sees complete windows as long as
  it is at most ``horizon`` longer; beyond that, a window reaching past the kept history
  raises ``WindowHistoryPruned`` — the rule errs and the action is denied, never counted
  short.

Pruning runs when ``high_water`` has advanced ``PRUNE_STEP_S`` since the last prune, so it
costs O(pruned) amortised, and it depends only on folded records: the same at every reader.
Records written before the horizon existed carry no horizon (nothing is pruned, nothing is
stale) and swaps without a longest window make it unknown (request ids are still pruned,
window history is kept).
"""

from __future__ import annotations

import datetime as dt
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

from ordinance.policy.window import InMemoryWindows

STALE_REQUEST = "stale_request"  # event time older than the partition's dedupe horizon
DEFAULT_DEDUPE_HORIZON_S = 7 * 86400
PRUNE_STEP_S = 60.0


@dataclass
class Horizon:
    dedupe_horizon_ms: int | None = None  # from the owner's EnforcerTakeover; None: unbounded
    high_water: float = float("-inf")  # latest evaluated_at folded (seconds)
    # Longest window of every bundle swapped in (ms); None once a swap did not say.
    longest_window_ms: int | None = 0
    pruned_at: float = float("-inf")  # high_water at the last prune

    def on_takeover(self, datum: dict[str, Any]) -> None:
        self.dedupe_horizon_ms = datum.get("dedupe_horizon_ms")

    def on_swap(self, datum: dict[str, Any]) -> None:
        longest = datum.get("longest_window_ms")
        if longest is None or self.longest_window_ms is None:
            self.longest_window_ms = None
        else:
            self.longest_window_ms = max(self.longest_window_ms, longest)

    def stale(self, event_time: dt.datetime) -> str | None:
        """Why the intent is too old to judge, or None."""
        if self.dedupe_horizon_ms is None:
            return None
        oldest = self.high_water - self.dedupe_horizon_ms / 1000
        if event_time.timestamp() >= oldest:
            return None
        return (
            f"event time {event_time.isoformat()} is older than the partition's dedupe "
            f"horizon ({self.dedupe_horizon_ms / 1000:g}s before its latest decision, "
            f"{dt.datetime.fromtimestamp(self.high_water, dt.UTC).isoformat()}): "
            "it is not judged, so it can never be judged twice"
        )

    def on_decision(
        self,
        evaluated_at: dt.datetime,
        decided: OrderedDict[str, float],
        windows: InMemoryWindows,
    ) -> None:
        """Advance ``high_water`` and prune what no judged intent can need any more."""
        at = evaluated_at.timestamp()
        self.high_water = max(self.high_water, at)
        if self.dedupe_horizon_ms is None or self.high_water - self.pruned_at < PRUNE_STEP_S:
            return
        self.pruned_at = self.high_water
        cutoff = self.high_water - self.dedupe_horizon_ms / 1000
        # Ids arrive roughly in event-time order: forget from the oldest until a younger
        # one (an older id behind it waits for a later prune — kept longer, never less).
        while decided:
            _, oldest = next(iter(decided.items()))  # O(1) in an OrderedDict
            if oldest >= cutoff:
                break
            decided.popitem(last=False)
        if self.longest_window_ms is not None:
            windows.prune(cutoff - self.longest_window_ms / 1000)
