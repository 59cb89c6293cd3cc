"""The gateway signs every intent with the agent's key (``--key``), exactly as the Python
client does — it *is* the Python client — so an enforcer that enforces identity decides
with the registry's roles, and a gateway that only claims roles gets nothing through."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from ordinance.identity.signing import PrincipalSigner
from ordinance.keys import Signer, generate
from tests.processors.identity_helpers import Registry
from tests.surfaces.mcp_harness import (
    MAPPING,
    UPSTREAM,
    Agent,
    enforcer,
    gateway_command,
    log_url_in,
    new_log,
    ordinance,
    received,
    text,
)

AGENT = "billing-mcp"
TRANSFER = {"amount": 50, "currency": "EUR", "country": "DE", "iban": "DE89"}


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    """A log whose registry knows the agent (role billing, its public key); an enforcer
    that enforces identity. Yields the log URL and the agent's private key file."""
    directory = tmp_path_factory.mktemp("mcp-gateway-identity")
    registry = Registry(log_url_in(directory))
    url = new_log(directory, registry)
    key = directory / "agent.pem"
    generate(key, None)
    registry.put(
        AGENT,
        roles=("billing",),
        attributes={"team": "finance"},
        signers=[PrincipalSigner(AGENT, Signer.from_file(key))],
    )
    with enforcer(url, trust=registry.trust):
        yield url, key


def test_signed_intents_are_decided_with_the_registry_roles(
    world: tuple[str, Path], tmp_path: Path
) -> None:
    url, key = world
    mapping = tmp_path / "mapping.yaml"
    mapping.write_text(MAPPING)
    record = tmp_path / "upstream-calls.jsonl"
    upstream = [sys.executable, str(UPSTREAM), "--record", str(record)]
    # No --role: the roles come from the registry, because the intent is signed.
    options = ["--agent", AGENT, "--key", str(key), "--timeout", "20"]
    with Agent(gateway_command(url, mapping, *options, upstream=upstream)) as agent:
        result = agent.call("transfer", TRANSFER)
        assert not result.is_error, text(result)
        denied = agent.call("transfer", {**TRANSFER, "country": "KP"})
    assert received(record) == [{"tool": "transfer", "arguments": TRANSFER}]
    assert ordinance(denied)["rule_ids"] == ["payments-guardrails/block-sanctioned"]


def test_claimed_roles_without_a_signature_get_nothing_through(
    world: tuple[str, Path], tmp_path: Path
) -> None:
    url, _ = world
    mapping = tmp_path / "mapping.yaml"
    mapping.write_text(MAPPING)
    record = tmp_path / "upstream-calls.jsonl"
    upstream = [sys.executable, str(UPSTREAM), "--record", str(record)]
    options = ["--agent", AGENT, "--role", "billing", "--attribute", "team=finance"]
    with Agent(gateway_command(url, mapping, *options, "--timeout", "20", upstream=upstream)) as a:
        result = a.call("transfer", TRANSFER)
    assert received(record) == []
    decision = ordinance(result)
    assert (decision["effect"], decision["code"]) == ("deny", "unsigned"), decision
