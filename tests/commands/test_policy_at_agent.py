"""`policy at T --agent X` answers who X was at T: the roles, attributes, status and keys
its partition's enforcer knew, and which key signed its last intent before T."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import pytest

from ordinance.cli import main
from tests.identity.helpers import new_signer
from tests.processors.identity_helpers import Registry, at, enforce, intent, send_records, signed
from tests.processors.test_enforcer import EXAMPLES, T0, publish


def _at(capsys: pytest.CaptureFixture[str], url: str, when: dt.datetime) -> dict[str, Any]:
    capsys.readouterr()
    assert (
        main(["policy", "at", when.isoformat(), "--log", url, "--agent", "billing-bot", "--json"])
        == 0
    )
    return dict(json.loads(capsys.readouterr().out)["agent"])


def test_who_an_agent_was_at_a_time(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    url = f"sqlite:///{tmp_path / 'log.db'}"
    registry = Registry(url)
    publish(url, EXAMPLES, registry.controller())
    first = registry.put("billing-bot", roles=("billing",), attributes={"team": "finance"})
    send_records(url, signed(intent("one", "billing-bot"), first))
    enforce(url, registry.trust, now=T0)
    # Rotated to a second key, and moved to another team, ten minutes later.
    second = new_signer("billing-bot")
    registry.put(
        "billing-bot",
        roles=("billing",),
        attributes={"team": "treasury"},
        signers=[second],
        windows=[(at(5), None)],
        when=at(5),
    )
    send_records(url, signed(intent("two", "billing-bot", minute=10), second))
    enforce(url, registry.trust, now=T0 + 600)
    before = _at(capsys, url, at(1))
    assert before["identity_enforced"] and before["principal"]["version"] == 1
    assert before["principal"]["attributes"] == {"team": "finance"}
    assert [k["key_id"] for k in before["principal"]["keys"]] == [first.key_id]
    assert (before["last_decision"]["request_id"], before["last_decision"]["key_id"]) == (
        "one",
        first.key_id,
    )
    after = _at(capsys, url, at(20))
    assert after["principal"]["version"] == 2 and after["principal"]["attributes"] == {
        "team": "treasury"
    }
    assert (after["last_decision"]["request_id"], after["last_decision"]["key_id"]) == (
        "two",
        second.key_id,
    )
    assert main(["policy", "at", at(20).isoformat(), "--log", url, "--agent", "billing-bot"]) == 0
    assert "treasury" in capsys.readouterr().out
