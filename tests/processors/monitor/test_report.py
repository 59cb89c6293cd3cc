"""`/v1/report` (and `--report --json`): besides the decision counts, what a person
watching a rollout needs — each arm's decisions, the shadow disagreements, each
partition's canary with the samples its analysis compares, health and the time of the
last poll — every number equal to a count of the records folded."""

from __future__ import annotations

import json
from pathlib import Path

from ordinance.processors.http_server import HttpServer
from ordinance.processors.monitor.http import build_app, report
from ordinance.processors.monitor.runner import Monitor
from ordinance.streams import open_log
from tests.processors.http_client import http_get
from tests.processors.monitor.helpers import BUNDLE, T0, armed, canary_swap, decision, write_records

CANDIDATE = "sha256:" + "cd" * 32


def test_the_report_carries_arms_shadow_disagreements_and_canaries(tmp_path: Path) -> None:
    records = [("RulesetSwap", canary_swap(CANDIDATE, percent=25, auto=True))]
    # 40 control decisions (5 denies), 10 canary ones (6 denies), 1 approval follow-up
    # on the canary arm: counted among its decisions, not among the analysis' samples.
    for n in range(50):
        arm = "canary" if n % 5 == 0 else "control"
        deny = n % 5 == 0 and n < 30 if arm == "canary" else n % 10 == 1
        records.append(("Decision", armed(n, arm, deny, CANDIDATE)))
    follow_up = armed(50, "canary", False, CANDIDATE)
    follow_up["code"] = "approved"
    records.append(("Decision", follow_up))
    for n in range(3):
        shadowed = decision(100 + n, at=T0)
        shadowed["shadow"] = {
            "bundle_id": CANDIDATE,
            "effect": "deny",
            "rule_ids": [],
            "code": "matched",
            "detail": "",
        }
        records.append(("Decision", shadowed))
    with open_log(f"sqlite:///{tmp_path / 'log.db'}") as log:
        write_records(log, records)
        monitor = Monitor(log, read_only=True)
        monitor.fold_to_end()
        server = HttpServer(build_app(monitor), "127.0.0.1", 0)
        server.start()
        try:
            status, body = http_get(f"http://127.0.0.1:{server.bound_port}/v1/report")
        finally:
            server.stop()
    assert status == 200
    served = json.loads(body)
    assert served["arm_decisions"] == [
        {"bundle_id": BUNDLE, "arm": "control", "effect": "allow", "decisions": 35},
        {"bundle_id": BUNDLE, "arm": "control", "effect": "deny", "decisions": 5},
        {"bundle_id": CANDIDATE, "arm": "canary", "effect": "allow", "decisions": 5},
        {"bundle_id": CANDIDATE, "arm": "canary", "effect": "deny", "decisions": 6},
    ]
    assert served["shadow_disagreements"] == [
        {
            "bundle_id": BUNDLE,
            "shadow_bundle_id": CANDIDATE,
            "effect": "allow",
            "shadow_effect": "deny",
            "decisions": 3,
        }
    ]
    assert served["canaries"] == [
        {
            "partition": 0,
            "stable_bundle_id": BUNDLE,
            "candidate_bundle_id": CANDIDATE,
            "canary_percent": 25,
            "auto_rollback": True,
            "policy_offset": 7,
            "arms": {
                "canary": {"decisions": 10, "denies": 6},
                "control": {"decisions": 40, "denies": 5},
            },
        }
    ]
    assert served["healthy"] is True and served["problems"] == []
    assert served["ready"] is True and served["rollbacks"] == []
    assert served["generated_at"].startswith("20")
    assert served["last_poll_at"] is None  # a one-shot fold never polled
    # The same report `--report --json` prints (bar the clock).
    local = report(monitor)
    assert {k: v for k, v in local.items() if k != "generated_at"} == {
        k: v for k, v in served.items() if k != "generated_at"
    }
