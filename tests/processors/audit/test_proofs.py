"""Inclusion proofs verify offline for any decision and fail once anything in them is
altered (property test over random decisions of the 10k-decision log)."""

from __future__ import annotations

import base64
import copy
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ordinance.keys import Keyring
from ordinance.processors.audit.proofs import (
    PartitionTree,
    ProofError,
    check_proof,
    prove_request,
    proven_decision,
)
from ordinance.processors.audit.verify import latest, read_checkpoints
from ordinance.streams import open_log
from ordinance.streams.serde import Decoded, Serde
from ordinance.streams.topics import AGENT_DECISIONS, topic_specs

from .conftest import AuditedLog

TOPIC = topic_specs()[AGENT_DECISIONS].name
SERDE = Serde()


@pytest.fixture(scope="module")
def signed_trees(
    audited_log: AuditedLog,
) -> tuple[list[tuple[PartitionTree, dict[str, Any]]], Keyring]:
    with open_log(f"sqlite:///{audited_log.db}") as log:
        checkpoints = read_checkpoints(log)
        trees = []
        for partition in log.partitions(TOPIC):
            tree = PartitionTree.of(partition, log.read_to_end(TOPIC, [partition]))
            trees.append((tree, latest(checkpoints[partition])))
    return trees, Keyring.from_file(audited_log.keyring)


def _flip(text: str) -> str:
    raw = bytearray(base64.b64decode(text))
    raw[len(raw) // 2] ^= 0x04
    return base64.b64encode(bytes(raw)).decode()


@settings(
    max_examples=60, suppress_health_check=[HealthCheck.function_scoped_fixture], deadline=None
)
@given(st.data())
def test_random_decisions_prove_and_altered_proofs_fail(
    signed_trees: tuple[list[tuple[PartitionTree, dict[str, Any]]], Keyring], data: st.DataObject
) -> None:
    trees, keyring = signed_trees
    tree, checkpoint = data.draw(st.sampled_from(trees))
    index = data.draw(st.integers(min_value=0, max_value=checkpoint["record_count"] - 1))
    decoded = SERDE.decode(tree.records[index].value)
    readable = decoded.value if isinstance(decoded, Decoded) else None
    proof = tree.prove(index, checkpoint, readable)
    assert check_proof(proof, keyring) == []
    alteration = data.draw(
        st.sampled_from(
            ["value", "prev", "path", "index", "size", "message", "signature", "readable"]
        )
    )
    bad = copy.deepcopy(proof)
    if alteration == "value":
        bad["record"]["value"] = _flip(bad["record"]["value"])
    elif alteration == "prev":
        bad["record"]["prev_hash"] = "00" * 32 if index else "11" * 32
    elif alteration == "path":
        if not bad["path"]:
            return
        bad["path"][0] = "22" * 32
    elif alteration == "index":
        bad["leaf_index"] = (index + 1) % proof["tree_size"]
        if bad["leaf_index"] == index:
            return
    elif alteration == "size":
        bad["tree_size"] += 1
    elif alteration == "message":
        bad["checkpoint"]["message"] = bad["checkpoint"]["message"].replace(
            "partition ", "partition 9"
        )
    elif alteration == "readable":
        if bad["decision"] is None:
            return
        bad["decision"]["enforcer_id"] = "someone-else"
    else:
        bad["checkpoint"]["signature"] = _flip(bad["checkpoint"]["signature"])
    assert check_proof(bad, keyring) != []


def test_prove_a_request_from_the_log(audited_log: AuditedLog) -> None:
    with open_log(f"sqlite:///{audited_log.db}") as log:
        proof = prove_request(log, "r4321")
        assert proof["decision"]["request_id"] == "r4321"
        assert check_proof(proof, Keyring.from_file(audited_log.keyring)) == []
        with pytest.raises(ProofError, match="no decision"):
            prove_request(log, "never-sent")


def test_malformed_proofs_are_reported_not_raised(audited_log: AuditedLog) -> None:
    keyring = Keyring.from_file(audited_log.keyring)
    assert check_proof({"format": "other"}, keyring) == [
        "not an ordinance.inclusion-proof.v1 proof"
    ]
    assert check_proof({"format": "ordinance.inclusion-proof.v1"}, keyring)[0].startswith(
        "malformed"
    )


def _forge_effect(proof: dict[str, Any]) -> None:
    decision = proof["decision"]
    decision["effect"] = "allow" if decision["effect"] != "allow" else "deny"


def _forge_agent(proof: dict[str, Any]) -> None:
    proof["decision"]["agent_id"] = "someone-else"


def _forge_bytes(proof: dict[str, Any]) -> None:
    proof["record"]["value"] = _flip(proof["record"]["value"])


def _forge_added_field(proof: dict[str, Any]) -> None:
    proof["decision"]["note"] = "approved by the board"


@pytest.mark.parametrize("forge", [_forge_effect, _forge_agent, _forge_bytes, _forge_added_field])
def test_a_forged_proof_fails(audited_log: AuditedLog, forge: Any) -> None:
    """Issue 17: the readable copy of the decision must be exactly what the proven bytes
    decode to, or the proof is invalid (editing ``effect`` used to check as valid)."""
    keyring = Keyring.from_file(audited_log.keyring)
    with open_log(f"sqlite:///{audited_log.db}") as log:
        proof = prove_request(log, "r4321")
    assert check_proof(proof, keyring) == []
    forged = copy.deepcopy(proof)
    forge(forged)
    problems = check_proof(forged, keyring)
    assert problems != []
    if forge is not _forge_bytes:
        assert any("readable decision" in p for p in problems), problems


def test_a_proof_without_a_readable_copy_checks_on_its_bytes(audited_log: AuditedLog) -> None:
    keyring = Keyring.from_file(audited_log.keyring)
    with open_log(f"sqlite:///{audited_log.db}") as log:
        proof = prove_request(log, "r4321")
    del proof["decision"]
    assert check_proof(proof, keyring) == []
    assert proven_decision(proof)["request_id"] == "r4321"
