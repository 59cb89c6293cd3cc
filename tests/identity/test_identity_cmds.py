"""``ordinance identity ...`` end to end on an embedded log (and once on Kafka): what the
commands write is what `load_registry` installs; what the registry would refuse is refused
by the command before anything is written; records written around the commands (by a
non-admin, replayed, garbage) are refused by the fold with their codes."""

from __future__ import annotations

import base64
import datetime as dt
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization

from ordinance.cli import main
from ordinance.commands import identity_cmds
from ordinance.identity.records import identity_datum, key_entry, signed_identity_record
from ordinance.identity.registry import (
    BAD_SIGNATURE,
    INVALID_RECORD,
    KEY_NOT_VALID,
    NOT_AUTHORISED,
    STALE_VERSION,
    UNSIGNED,
    Principal,
    Refusal,
)
from ordinance.identity.registry_log import UNDECODABLE, RegistryView, load_registry
from ordinance.identity.signing import KEY_ENV, PrincipalSigner, signature_of
from ordinance.identity.trust import TrustRoot
from ordinance.keys import Signer
from ordinance.streams import Record, open_log
from ordinance.streams.serde import Serde
from ordinance.streams.topics import IDENTITY_REGISTRY

from .helpers import T0

TOPIC = "ordinance." + IDENTITY_REGISTRY


@dataclass
class Cli:
    """The ``ordinance`` command on one log, with a clock the test moves."""

    dir: Path
    capsys: pytest.CaptureFixture[str]
    log: str = ""
    now: dt.datetime = T0
    keys: dict[str, Path] = field(default_factory=dict)

    def __call__(self, *argv: str) -> tuple[int, Any]:
        self.capsys.readouterr()
        code = main([*argv, "--json"])
        out = self.capsys.readouterr().out
        return code, json.loads(out) if out.strip() else None

    def clock(self) -> float:
        return self.now.timestamp()

    def key(self, name: str) -> Path:
        if name not in self.keys:
            path = self.dir / f"{name}.pem"
            code, out = self("keys", "generate", "--key", str(path))
            assert code == 0 and out["keyring"] is None, out
            self.keys[name] = path
        return self.keys[name]

    def trust(self) -> Path:
        return self.dir / "trust.json"

    def write(self, verb: str, *argv: str, signer: str = "root-admin") -> tuple[int, Any]:
        return self(
            "identity",
            verb,
            *argv,
            "--log",
            self.log,
            "--trust",
            str(self.trust()),
            "--as",
            signer,
            "--key",
            str(self.key(signer)),
        )

    def read(self, verb: str, *argv: str) -> tuple[int, Any]:
        return self("identity", verb, *argv, "--log", self.log, "--trust", str(self.trust()))

    def view(self) -> RegistryView:
        with open_log(self.log) as log:
            return load_registry(log, TrustRoot.from_file(self.trust()))

    def produce(self, *records: Record) -> None:
        with open_log(self.log) as log:
            log.produce(TOPIC, list(records))


@pytest.fixture
def cli(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> Iterator[Cli]:
    c = Cli(tmp_path, capsys, log=f"sqlite:///{tmp_path}/log.db")
    monkeypatch.setattr(identity_cmds, "clock", c.clock)
    monkeypatch.delenv(KEY_ENV, raising=False)
    monkeypatch.delenv(identity_cmds.TRUST_ENV, raising=False)
    code, out = c(
        "identity",
        "trust-init",
        "--trust",
        str(c.trust()),
        "--principal",
        "root-admin",
        "--key",
        str(c.key("root-admin")),
    )
    assert code == 0 and out["principal_id"] == "root-admin", out
    yield c


def _signer(cli: Cli, name: str, as_principal: str | None = None) -> PrincipalSigner:
    return PrincipalSigner(as_principal or name, Signer.from_file(cli.key(name)))


def _add_agent(cli: Cli, pid: str = "billing-bot") -> dict[str, Any]:
    code, out = cli.write(
        "add",
        pid,
        "--kind",
        "agent",
        "--roles",
        "billing, payments",
        "--attr",
        "tier=gold",
        "--attr",
        "limit=10000.50",
        "--attr",
        'code="007"',
        "--owner",
        "finance",
        "--public-key",
        str(cli.key(pid)),
    )
    assert code == 0, out
    return dict(out)


def _codes(view: RegistryView) -> list[tuple[int, str]]:
    return [(r.offset, r.code) for r in view.refusals]


def test_trust_init_add_an_agent_and_a_person_then_list_and_show(cli: Cli) -> None:
    added = _add_agent(cli)
    assert added["offset"] == 0 and added["signer"] == "root-admin"
    code, _ = cli.write(
        "add",
        "alice",
        "--kind",
        "person",
        "--roles",
        "admin,approver:finance",
        "--public-key",
        str(cli.key("alice")),
    )
    assert code == 0
    code, listed = cli.read("list")
    assert code == 0 and listed["refused"] == [] and listed["end_offset"] == 2
    by_id = {p["principal_id"]: p for p in listed["principals"]}
    bot = by_id["billing-bot"]
    assert (bot["kind"], bot["roles"], bot["owner"], bot["status"], bot["version"]) == (
        "agent",
        ["billing", "payments"],
        "finance",
        "active",
        1,
    )
    # JSON values: text, exact decimals (as text), and a quoted number stays text
    assert bot["attributes"] == {"tier": "gold", "limit": "10000.50", "code": "007"}
    assert by_id["alice"]["kind"] == "person"
    assert by_id["alice"]["roles"] == ["admin", "approver:finance"]
    code, shown = cli.read("show", "billing-bot")
    assert code == 0 and shown["principal"] == bot
    assert [(h["offset"], h["version"], h["signer"]) for h in shown["history"]] == [
        (0, 1, "root-admin")
    ]
    code, missing = cli.read("show", "nobody")
    assert code == 1 and "not in the identity registry" in missing["error"]
    # a registry admin (not in the trust file) may register principals too
    code, out = cli.write(
        "add", "bob", "--kind", "service", "--public-key", str(cli.key("bob")), signer="alice"
    )
    assert code == 0 and out["signer"] == "alice", out


def test_human_output_of_list_and_show(cli: Cli) -> None:
    _add_agent(cli)
    cli.capsys.readouterr()
    for argv in (["list"], ["show", "billing-bot"]):
        code = main(["identity", *argv, "--log", cli.log, "--trust", str(cli.trust())])
        out = cli.capsys.readouterr().out
        assert code == 0 and "billing-bot" in out and "finance" in out


def test_update_suspend_reinstate_revoke_and_revocation_is_final(cli: Cli) -> None:
    _add_agent(cli)
    code, out = cli.write(
        "update",
        "billing-bot",
        "--roles",
        "billing",
        "--attr",
        "tier=silver",
        "--unset-attr",
        "code",
        "--owner",
        "treasury",
        "--reason",
        "downgrade",
    )
    assert code == 0, out
    p = out["principal"]
    assert (p["roles"], p["attributes"], p["owner"], p["version"]) == (
        ["billing"],
        {"tier": "silver", "limit": "10000.50"},
        "treasury",
        2,
    )
    assert cli.write("suspend", "billing-bot")[1]["principal"]["status"] == "suspended"
    assert cli.write("reinstate", "billing-bot")[1]["principal"]["status"] == "active"
    assert cli.write("revoke", "billing-bot", "--reason", "leaked")[1]["principal"]["status"] == (
        "revoked"
    )
    code, refused = cli.write("reinstate", "billing-bot")
    assert code == 1 and refused["code"] == INVALID_RECORD, refused
    view = cli.view()
    bot = view.get("billing-bot")
    assert bot is not None and bot.status == "revoked" and bot.version == 5
    assert view.refusals == [] and view.end_offset == 5  # the refused reinstate was never written
    code, unknown = cli.write("suspend", "ghost")
    assert code == 1 and unknown["code"] == "unknown_principal"
    code, again = cli.write(
        "add", "billing-bot", "--kind", "agent", "--public-key", str(cli.key("billing-bot"))
    )
    assert code == 2 and "already registered" in again["error"]


def test_rotate_key_old_key_valid_within_the_overlap_and_not_after(cli: Cli) -> None:
    _add_agent(cli)
    cli.now = T0 + dt.timedelta(minutes=5)
    code, out = cli.write(
        "rotate-key",
        "billing-bot",
        "--public-key",
        str(cli.key("billing-bot-2")),
        "--overlap",
        "10m",
    )
    assert code == 0, out
    registry = cli.view().registry
    old, new = _signer(cli, "billing-bot"), _signer(cli, "billing-bot-2", "billing-bot")
    rotated, end = cli.now, cli.now + dt.timedelta(minutes=10)
    value = b"an intent"
    for signer, at, ok in (
        (old, rotated, True),
        (old, end - dt.timedelta(microseconds=1), True),
        (old, end, False),
        (new, rotated, True),
        (new, end + dt.timedelta(days=30), True),
        (new, rotated - dt.timedelta(microseconds=1), False),  # not before it was added
    ):
        result = registry.authenticate(signature_of(signer.headers(value)), value, at)
        assert isinstance(result, Principal) is ok, (signer.key_id, at, result)
        if not ok:
            assert isinstance(result, Refusal) and result.code == KEY_NOT_VALID
    # a second rotation drops the key whose overlap has passed and ends the current one
    cli.now = end + dt.timedelta(hours=1)
    code, out = cli.write(
        "rotate-key",
        "billing-bot",
        "--public-key",
        str(cli.key("billing-bot-3")),
        "--overlap",
        "5m",
    )
    assert code == 0, out
    keys = out["principal"]["keys"]
    assert [k["key_id"] for k in keys] == [new.key_id, _signer(cli, "billing-bot-3").key_id]
    assert keys[0]["not_after"] == (cli.now + dt.timedelta(minutes=5)).isoformat()
    # no overlap: the current keys end now, so they are gone at once
    code, out = cli.write(
        "rotate-key",
        "billing-bot",
        "--public-key",
        str(cli.key("billing-bot-4")),
        "--overlap",
        "0",
    )
    assert code == 0, out
    assert [k["key_id"] for k in out["principal"]["keys"]] == [_signer(cli, "billing-bot-4").key_id]
    code, same = cli.write(
        "rotate-key", "billing-bot", "--public-key", str(cli.key("billing-bot-4"))
    )
    assert code == 2 and "already a key" in same["error"]
    code, bad = cli.write(
        "rotate-key", "billing-bot", "--public-key", str(cli.key("x")), "--overlap", "soon"
    )
    assert code == 2 and "--overlap" in bad["error"]


def test_an_unauthorised_signer_is_refused_locally_and_by_the_fold(cli: Cli) -> None:
    _add_agent(cli)
    code, _ = cli.write(
        "add", "mallory", "--kind", "person", "--public-key", str(cli.key("mallory"))
    )
    assert code == 0
    # the command refuses at once and writes nothing
    code, out = cli.write("update", "mallory", "--roles", "admin", signer="mallory")
    assert code == 1 and out["refused"] and out["code"] == NOT_AUTHORISED, out
    code, out = cli.write("revoke", "billing-bot", signer="mallory")
    assert code == 1 and out["code"] == NOT_AUTHORISED
    assert cli.view().end_offset == 2
    # written around the command, the same change is refused by every reader
    datum = identity_datum(
        "mallory",
        kind="person",
        version=2,
        at=T0,
        roles=["admin"],
        keys=[key_entry(_signer(cli, "mallory").signer.key.public_key(), T0)],
    )
    cli.produce(signed_identity_record(Serde(), datum, _signer(cli, "mallory")))
    view = cli.view()
    assert _codes(view) == [(2, NOT_AUTHORISED)]
    assert view.refusals[0].principal_id == "mallory" and view.refusals[0].signer == "mallory"
    mallory = view.get("mallory")
    assert mallory is not None and mallory.roles == () and mallory.version == 1
    code, listed = cli.read("list")
    assert [(r["offset"], r["code"]) for r in listed["refused"]] == [(2, NOT_AUTHORISED)]
    code, shown = cli.read("show", "mallory")
    assert [r["code"] for r in shown["refused"]] == [NOT_AUTHORISED]
    # a signer unknown to registry and trust file alike
    code, out = cli.write("suspend", "billing-bot", signer="stranger")
    assert code == 1 and out["code"] == "unknown_principal", out


def test_a_replayed_old_record_is_refused_as_stale(cli: Cli) -> None:
    _add_agent(cli)
    cli.write("revoke", "billing-bot")
    with open_log(cli.log) as log:
        first = next(iter(log.read_to_end(TOPIC)))
    # the admin-signed version 1 (active), appended again byte for byte
    cli.produce(Record(first.key, first.value, first.headers))
    view = cli.view()
    assert _codes(view) == [(2, STALE_VERSION)]
    bot = view.get("billing-bot")
    assert bot is not None and bot.status == "revoked"


def test_what_is_not_a_signed_identity_record_is_a_refusal_never_an_exception(
    cli: Cli,
) -> None:
    _add_agent(cli)
    serde, root = Serde(), _signer(cli, "root-admin")
    datum = identity_datum("eve", kind="agent", version=1, at=T0)
    value = serde.encode("IdentityRecord", datum)
    signed = signed_identity_record(serde, datum, root)
    zero_signature = (signed.headers[0], signed.headers[1], ("ordinance-sig", b"\x00" * 64))
    altered = serde.encode("IdentityRecord", {**datum, "roles": ["admin"]})
    cli.produce(
        Record(b"eve", b"\x00garbage"),
        Record(b"eve", None),  # a tombstone: compaction would delete the key
        Record(b"eve", value),  # unsigned
        Record(b"eve", value, signed.headers[:2]),  # headers incomplete
        Record(b"eve", value, zero_signature),  # the root's key id, not its signature
        Record(b"not-eve", signed.value, signed.headers),  # keyed under another principal
        Record(b"eve", altered, signed.headers),  # content altered after signing
    )
    view = cli.view()
    assert _codes(view) == [
        (1, UNDECODABLE),
        (2, UNDECODABLE),
        (3, UNSIGNED),
        (4, BAD_SIGNATURE),
        (5, BAD_SIGNATURE),
        (6, INVALID_RECORD),
        (7, BAD_SIGNATURE),
    ]
    assert view.get("eve") is None and view.get("billing-bot") is not None


def test_keys_and_trust_from_the_environment_and_public_key_formats(
    cli: Cli, monkeypatch: pytest.MonkeyPatch
) -> None:
    public = _signer(cli, "p1").signer.key.public_key()
    formats = {
        "p1": public.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        ),
        "p2": public.public_bytes(
            serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
        ),
        "p3": base64.b64encode(
            public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        ),
    }
    monkeypatch.setenv(KEY_ENV, str(cli.key("root-admin")))
    monkeypatch.setenv(identity_cmds.TRUST_ENV, str(cli.trust()))
    for pid, data in formats.items():
        path = cli.dir / f"{pid}.pub"
        path.write_bytes(data)
        code, out = cli(
            "identity",
            "add",
            pid,
            "--kind",
            "agent",
            "--public-key",
            str(path),
            "--log",
            cli.log,
            "--as",
            "root-admin",
        )
        assert code == 0, out
        assert out["principal"]["keys"][0]["key_id"] == _signer(cli, "p1").key_id
    junk = cli.dir / "junk.pub"
    junk.write_text("not a key")
    code, out = cli(
        "identity",
        "add",
        "p4",
        "--kind",
        "agent",
        "--public-key",
        str(junk),
        "--log",
        cli.log,
        "--as",
        "root-admin",
    )
    assert code == 2 and "not a readable Ed25519 key" in out["error"]
    monkeypatch.delenv(KEY_ENV)
    code, out = cli("identity", "suspend", "p1", "--log", cli.log, "--as", "root-admin")
    assert code == 2 and KEY_ENV in out["error"]
    monkeypatch.delenv(identity_cmds.TRUST_ENV)
    code, out = cli("identity", "list", "--log", cli.log)
    assert code == 2 and identity_cmds.TRUST_ENV in out["error"]


def test_list_on_a_log_without_the_registry_topic_is_empty(cli: Cli) -> None:
    with open_log(cli.log):
        pass  # the database exists, no topic does
    code, out = cli.read("list")
    assert code == 0 and out == {"principals": [], "refused": [], "end_offset": 0}


@pytest.mark.kafka
def test_the_commands_on_kafka(cli: Cli) -> None:
    from ordinance.streams.kafka_broker import start_broker

    with start_broker() as broker:
        cli.log = broker.url
        _add_agent(cli)
        code, out = cli.write("update", "billing-bot", "--roles", "admin", signer="billing-bot")
        assert code == 1 and out["code"] == NOT_AUTHORISED
        cli.now = T0 + dt.timedelta(minutes=1)
        code, out = cli.write(
            "rotate-key", "billing-bot", "--public-key", str(cli.key("billing-bot-2"))
        )
        assert code == 0, out
        with open_log(cli.log) as log:
            first = next(iter(log.read_to_end(TOPIC)))
        cli.produce(Record(first.key, first.value, first.headers))
        view = cli.view()
        assert [r.code for r in view.refusals] == [STALE_VERSION]
        bot = view.get("billing-bot")
        assert bot is not None and bot.version == 2 and len(bot.keys) == 2
        code, listed = cli.read("list")
        assert code == 0 and [p["principal_id"] for p in listed["principals"]] == ["billing-bot"]
