"""``ordinance policy status``: each target's rollout and each bundle's lifecycle, as the
controller's fold of the accepted changes says — refused changes change nothing."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ordinance.cli import main
from ordinance.processors.controller_loop import run_controller
from ordinance.processors.policy_log import append_change, publish_bundle
from ordinance.streams import open_log
from tests.processors.test_controller import BUNDLE_ID, FILES
from tests.processors.test_rollout import CANDIDATE, CANDIDATE_FILES, T0, _change


def test_status_names_rollouts_approvals_reviews_and_refusals(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"sqlite:///{tmp_path / 'log.db'}"
    with open_log(url) as log:
        publish_bundle(log, FILES, BUNDLE_ID, actor="alice", clock=lambda: T0)
        publish_bundle(
            log, CANDIDATE_FILES, CANDIDATE, actor="alice", enforce=False, clock=lambda: T0
        )
        run_controller(log, once=True, clock=lambda: T0)
    _change(url, "reviewed", CANDIDATE, reason="NL is out of scope")
    _change(url, "approved", CANDIDATE)  # by "test": accepted
    _change(url, "canary", CANDIDATE, target="default", canary_percent=25, auto_rollback=True)
    capsys.readouterr()
    assert main(["policy", "status", "--log", url, "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    [target] = report["targets"]
    assert target["mode"] == "canary" and target["canary_percent"] == 25
    assert (target["stable_bundle_id"], target["candidate_bundle_id"]) == (BUNDLE_ID, CANDIDATE)
    assert target["auto_rollback"] is True
    bundles = {b["bundle_id"]: b for b in report["bundles"]}
    candidate = bundles[CANDIDATE]
    assert (candidate["published_by"], candidate["impact"]) == ("alice", "high")
    assert (bundles[BUNDLE_ID]["revision"], candidate["revision"]) == (1, 2)
    assert candidate["approvals"] == ["test"] and candidate["approvals_missing"] == 1
    assert [r["comment"] for r in candidate["reviews"]] == ["NL is out of scope"]
    assert candidate["runs"] == [{"target": "default", "as": "canary"}]
    assert bundles[BUNDLE_ID]["runs"] == [{"target": "default", "as": "stable"}]
    assert candidate["last_event"]["event"] == "canary"

    # A refused change (alice approving her own bundle) changes nothing, and says why.
    with open_log(url) as log:
        append_change(log, "approved", CANDIDATE, actor="alice", clock=lambda: T0)
        run_controller(log, once=True, clock=lambda: T0)
    assert main(["policy", "status", "--log", url, "--json"]) == 0
    after = {b["bundle_id"]: b for b in json.loads(capsys.readouterr().out)["bundles"]}
    assert after[CANDIDATE]["approvals"] == ["test"]
    assert "self_approval" in after[CANDIDATE]["last_refused"]["reason"]
    assert main(["policy", "status", "--log", url]) == 0
    table = capsys.readouterr().out
    assert "canary" in table and "1 more needed" in table
