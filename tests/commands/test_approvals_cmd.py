"""`ordinance approvals approve|reject --key`: the answer is signed as --approver, and an
enforcer that enforces identity counts it; without a key it is recorded as refused."""

from __future__ import annotations

from pathlib import Path

import pytest

from ordinance.cli import main
from ordinance.identity.registry import UNSIGNED
from ordinance.identity.signing import PrincipalSigner
from ordinance.processors.enforcer_state import APPROVED
from ordinance.processors.identity_gate import APPROVAL_REFUSED
from tests.processors.identity_helpers import Registry, enforce, intent, send_records, signed
from tests.processors.test_enforcer import T0, publish
from tests.processors.test_signed_approvals import BILLING, bundle, history


def test_a_signed_cli_answer_counts_and_an_unsigned_one_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("ORDINANCE_KEY", raising=False)
    url = f"sqlite:///{tmp_path / 'log.db'}"
    registry = Registry(url)
    publish(url, bundle(tmp_path), registry.controller())
    pem = tmp_path / "alice.pem"
    assert main(["keys", "generate", "--key", str(pem)]) == 0
    bot = registry.put("billing-bot", **BILLING)  # type: ignore[arg-type]
    registry.put(
        "alice",
        kind="person",
        roles=("approver",),
        signers=[PrincipalSigner.from_file("alice", pem)],
    )
    send_records(url, signed(intent("big", "billing-bot", "25000"), bot))
    enforce(url, registry.trust)
    assert main(["approvals", "approve", "big", "--log", url, "--approver", "alice"]) == 0
    enforce(url, registry.trust, now=T0 + 60)
    assert [(e, c) for e, c, _, _ in history(url, "big")][-1] == (
        "require_approval",
        APPROVAL_REFUSED,
    )
    assert history(url, "big")[-1][2].startswith(UNSIGNED)
    args = ["approvals", "approve", "big", "--log", url, "--approver", "alice", "--key", str(pem)]
    assert main(args) == 0
    enforce(url, registry.trust, now=T0 + 120)
    effect, code, _, approvers = history(url, "big")[-1]
    assert (effect, code, approvers) == ("allow", APPROVED, ["alice"])


def test_a_key_that_cannot_be_read_is_an_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"sqlite:///{tmp_path / 'log.db'}"
    args = [
        "approvals",
        "approve",
        "r1",
        "--log",
        url,
        "--approver",
        "alice",
        "--key",
        str(tmp_path / "none.pem"),
    ]
    assert main(args) == 1
