from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest

from ordinance.keys import KeyFileError, Keyring, Signer, generate
from ordinance.processors.audit.checkpoint import message, parse_message, signature_valid, signed


def _unsigned() -> dict[str, object]:
    return {
        "partition": 2,
        "first_offset": 0,
        "last_offset": 41,
        "record_count": 42,
        "merkle_root": b"\x01" * 32,
        "chain_head": b"\x02" * 32,
        "prev_checkpoint_hash": None,
        "at": dt.datetime(2026, 11, 25, 12, 0, tzinfo=dt.UTC),
    }


def test_generated_key_signs_checkpoints_the_keyring_accepts(tmp_path: Path) -> None:
    key_id = generate(tmp_path / "key.pem", tmp_path / "keyring.json")
    assert (tmp_path / "key.pem").stat().st_mode & 0o077 == 0
    signer = Signer.from_file(tmp_path / "key.pem")
    assert signer.key_id == key_id
    keyring = Keyring.from_file(tmp_path / "keyring.json")
    checkpoint = signed(_unsigned(), signer)
    assert signature_valid(checkpoint, keyring)
    assert message(checkpoint).startswith(b"ordinance checkpoint v1\npartition 2\n")
    for field, value in [("record_count", 43), ("merkle_root", b"\x03" * 32), ("partition", 1)]:
        assert not signature_valid({**checkpoint, field: value}, keyring), field
    forged = {**checkpoint, "signature": bytes(64)}
    assert not signature_valid(forged, keyring)


def test_a_key_missing_from_the_keyring_is_not_trusted(tmp_path: Path) -> None:
    generate(tmp_path / "a.pem", tmp_path / "ring-a.json")
    generate(tmp_path / "b.pem", tmp_path / "ring-b.json")
    checkpoint = signed(_unsigned(), Signer.from_file(tmp_path / "b.pem"))
    assert not signature_valid(checkpoint, Keyring.from_file(tmp_path / "ring-a.json"))


def test_keyring_grows_and_keys_are_never_overwritten(tmp_path: Path) -> None:
    generate(tmp_path / "a.pem", tmp_path / "ring.json")
    generate(tmp_path / "b.pem", tmp_path / "ring.json")
    assert len(Keyring.from_file(tmp_path / "ring.json").keys) == 2
    with pytest.raises(KeyFileError, match="refusing to overwrite"):
        generate(tmp_path / "a.pem", tmp_path / "ring.json")


def test_bad_files_raise_one_clear_error(tmp_path: Path) -> None:
    (tmp_path / "junk").write_text("not a key")
    with pytest.raises(KeyFileError, match="not a readable private key"):
        Signer.from_file(tmp_path / "junk")
    with pytest.raises(KeyFileError, match="not a usable keyring"):
        Keyring.from_file(tmp_path / "junk")


def test_the_keyring_fingerprint_is_its_set_of_public_keys(tmp_path: Path) -> None:
    """What a witness pins: the same keys in another order or file give the same
    fingerprint; adding a key changes it."""
    ring = tmp_path / "ring.json"
    generate(tmp_path / "a.pem", ring)
    one = Keyring.from_file(ring).fingerprint()
    generate(tmp_path / "b.pem", ring)
    two = Keyring.from_file(ring)
    assert two.fingerprint() != one and len(one) == 64
    entries = json.loads(ring.read_text())["keys"]
    reordered = tmp_path / "reordered.json"
    reordered.write_text(json.dumps({"keys": list(reversed(entries))}, indent=4))
    assert Keyring.from_file(reordered).fingerprint() == two.fingerprint()


def test_a_checkpoint_text_parses_back_to_what_was_signed() -> None:
    for prev in (None, b"\x03" * 32):
        datum = dict(_unsigned(), prev_checkpoint_hash=prev)
        assert parse_message(message(datum).decode()) == datum
    text = message(_unsigned()).decode()
    for bad in (
        text.replace("record_count 42", "record_count 042"),
        text.replace("ordinance checkpoint v1", "ordinance checkpoint v2"),
        text + "extra 1\n",
    ):
        with pytest.raises(ValueError):
            parse_message(bad)
