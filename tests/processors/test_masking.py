"""Masked arguments: the decision log holds keyed hashes, equal values still match, the
chain verifies, and a bundle whose window.sum needs a masked value is refused."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ordinance.cli import main
from ordinance.keys import Keyring, Signer, generate
from ordinance.processors.audit.checkpointer import Checkpointer
from ordinance.processors.audit.verify import verify_log
from ordinance.processors.enforcer import Enforcer
from ordinance.processors.masking import PREFIX, Masking, MaskingError, generate_key
from ordinance.streams import open_log
from ordinance.streams.topics import AGENT_DECISIONS

from .test_enforcer import EXAMPLES, SPECS, T0, decisions_log, publish, send, transfer

IBAN = "DE89370400440532013000"


def _masking(tmp_path: Path, *fields: str) -> Path:
    key = tmp_path / "mask.key"
    if not key.exists():
        generate_key(key)
    config = tmp_path / "masking.yaml"
    config.write_text("key_file: mask.key\nfields:\n" + "".join(f"  - '{f}'\n" for f in fields))
    return config


def test_masks_are_keyed_and_deterministic(tmp_path: Path) -> None:
    masking = Masking.from_file(_masking(tmp_path, "action.args.card_number"))
    assert masking.mask("4111") == masking.mask("4111") != masking.mask("4112")
    assert masking.mask("4111").startswith(PREFIX)
    other = Masking(b"another key of 16+ bytes", masking.fields)
    assert other.mask("4111") != masking.mask("4111")
    assert masking.masked_args("payments.transfer") == {"card_number"}
    scoped = Masking.from_file(_masking(tmp_path, "payments.*:action.args.iban"))
    assert scoped.masked_args("payments.transfer") == {"iban"}
    assert scoped.masked_args("email.send") == frozenset()


def test_bad_masking_files_are_refused(tmp_path: Path) -> None:
    with pytest.raises(MaskingError, match=r"not action\.args\.NAME"):
        Masking.from_file(_masking(tmp_path, "agent.id"))
    (tmp_path / "broken.yaml").write_text("fields: []\n")
    with pytest.raises(MaskingError, match="not a usable masking file"):
        Masking.from_file(tmp_path / "broken.yaml")
    with pytest.raises(MaskingError, match="refusing to overwrite"):
        generate_key(tmp_path / "mask.key")


def test_enforcer_stores_only_masks_and_the_chain_verifies(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"sqlite:///{tmp_path / 'log.db'}"
    config = _masking(tmp_path, "payments.*:action.args.iban")
    publish(url, EXAMPLES)
    first, second = transfer("m1", "20", 0), transfer("m2", "30", 1)
    for request in (first, second):
        request["action"]["args"]["iban"] = IBAN
    send(url, first, second)
    generate(tmp_path / "k.pem", tmp_path / "ring.json")
    with open_log(url) as log:
        Enforcer(log, clock=lambda: T0, masking=Masking.from_file(config)).run(
            until_idle=True, idle_s=1.0
        )
        Checkpointer(log, Signer.from_file(tmp_path / "k.pem"), every_records=2).run(
            until_idle=True, idle_s=0.3
        )
        assert verify_log(log, Keyring.from_file(tmp_path / "ring.json")).findings == []
    decisions = [d for _, name, d in decisions_log(url) if name == "Decision"]
    assert [d["effect"] for d in decisions] == ["allow", "allow"]
    masked = Masking.from_file(config).mask(IBAN)
    # "de": the canonical argument; the example schema folds country codes
    assert all(d["args"]["iban"] == masked and d["args"]["country"] == "de" for d in decisions)
    with open_log(url) as log:
        stored = [r.value or b"" for r in log.read_to_end(SPECS[AGENT_DECISIONS].name)]
    assert not any(IBAN.encode() in value for value in stored)
    # an investigator with the key finds the decisions by the clear value
    assert main(["audit", "mask-value", IBAN, "--mask-config", str(config)]) == 0
    assert capsys.readouterr().out.strip() == masked


def test_a_bundle_summing_a_masked_argument_is_refused(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'log.db'}"
    masking = Masking.from_file(_masking(tmp_path, "action.args.amount"))
    publish(url, EXAMPLES)
    send(url, transfer("w1", "20", 0))
    messages: list[str] = []
    with open_log(url) as log:
        Enforcer(log, clock=lambda: T0, masking=masking, progress=messages.append).run(
            until_idle=True, idle_s=1.0
        )
    [decision] = [d for _, name, d in decisions_log(url) if name == "Decision"]
    assert decision["effect"] == "deny" and decision["code"] == "no_ruleset"
    assert any("sums action.args.amount in a window" in m for m in messages)


def test_serve_refuses_an_unusable_masking_file(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'log.db'}"
    assert main(["serve", "--log", url, "--mask-config", str(tmp_path / "none.yaml")]) == 2


def test_masked_arguments_are_found_by_their_clear_value_with_the_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"sqlite:///{tmp_path / 'log.db'}"
    config = _masking(tmp_path, "payments.*:action.args.iban")
    publish(url, EXAMPLES)
    masked_request, other = transfer("a1", "20", 0), transfer("a2", "30", 1)
    masked_request["action"]["args"]["iban"] = IBAN
    send(url, masked_request, other)
    with open_log(url) as log:
        Enforcer(log, clock=lambda: T0, masking=Masking.from_file(config)).run(
            until_idle=True, idle_s=1.0
        )
    index = str(tmp_path / "index.db")
    base = ["audit", "query", "--index", index, "--log", url, "--json"]
    assert main([*base, "--arg", f"iban={IBAN}"]) == 0
    assert json.loads(capsys.readouterr().out)["count"] == 0  # the log holds only the mask
    assert main([*base, "--arg", f"iban={IBAN}", "--mask-config", str(config)]) == 0
    found = json.loads(capsys.readouterr().out)
    assert [d["request_id"] for d in found["decisions"]] == ["a1"]
    assert found["decisions"][0]["args"]["iban"].startswith(PREFIX)
    assert main([*base, "--arg", "country=de"]) == 0
    assert json.loads(capsys.readouterr().out)["count"] == 2
    assert main([*base, "--arg", "country"]) == 2
