"""The demo's identities: a trust root, its simulated agents and its publisher in the
registry, each with a key — so the demo runs with identity enforced, as a deployment
should, and can show an impersonation attempt being denied.

Keys live in ``keys_dir/identity/`` (the trust file ``trust.json`` beside them), so a
demo rerun on the same log reuses them, and a user can go on with the same principals
(``ordinance serve --trust``, ``submit --key``). Without a ``keys_dir`` they are made in
memory for the one run. A principal already in the registry is not written again.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ordinance.identity.records import identity_datum, key_entry, signed_identity_record
from ordinance.identity.registry_log import load_registry
from ordinance.identity.signing import PrincipalSigner
from ordinance.identity.trust import TrustedKey, TrustRoot, add_admin
from ordinance.keys import Signer, generate, key_id_of
from ordinance.processors.active_auth import CONTROLLER_ROLE
from ordinance.processors.change_auth import POLICY_APPROVER, POLICY_AUTHOR
from ordinance.streams import Log
from ordinance.streams.serde import Serde
from ordinance.streams.topics import IDENTITY_REGISTRY, ensure_topics

DEMO_ADMIN = "demo-admin"
DEMO_PUBLISHER = "demo"
# Two people who approve and put bundles in force: the example policies are high impact,
# and a controller with a trust root wants two approvers other than the publisher.
DEMO_APPROVERS = ("demo-approver-a", "demo-approver-b")
#: The service that writes policy.active: enforcers believe only what it signs.
DEMO_CONTROLLER = "demo-controller"
#: The principals that are not agents (no client is started for them).
DEMO_PEOPLE = frozenset({DEMO_PUBLISHER, *DEMO_APPROVERS, DEMO_CONTROLLER})


@dataclass(frozen=True)
class DemoIdentities:
    trust: TrustRoot
    signers: Mapping[str, PrincipalSigner]  # agents and the publisher, by principal id
    trust_file: Path | None  # where the trust root was written (None: in memory)


def _signer(principal_id: str, directory: Path | None) -> PrincipalSigner:
    if directory is None:
        key = Ed25519PrivateKey.generate()
        return PrincipalSigner(principal_id, Signer(key, key_id_of(key.public_key())))
    path = directory / f"{principal_id}.pem"
    if not path.exists():
        generate(path, None)
    return PrincipalSigner.from_file(principal_id, path)


def demo_identities(
    log: Log, agents: Iterable[Mapping[str, Any]], keys_dir: Path | None
) -> DemoIdentities:
    """Keys for the admin, every agent and the publisher; the trust root; and the
    registry records of those not yet in it, signed by the admin."""
    directory = None if keys_dir is None else keys_dir / "identity"
    if directory is not None:
        directory.mkdir(parents=True, exist_ok=True)
    admin = _signer(DEMO_ADMIN, directory)
    trust_file = None
    if directory is not None:
        trust_file = directory / "trust.json"
        if not trust_file.exists():
            add_admin(trust_file, DEMO_ADMIN, directory / f"{DEMO_ADMIN}.pem")
        trust = TrustRoot.from_file(trust_file)
    else:
        public = admin.signer.key.public_key()
        trust = TrustRoot((TrustedKey(DEMO_ADMIN, key_id_of(public), public),))
    wanted: list[tuple[str, str, tuple[str, ...], dict[str, Any]]] = [
        (
            str(a["id"]),
            "agent",
            tuple(a.get("roles", ())),
            {k: v for k, v in a.items() if k not in ("id", "roles")},
        )
        for a in agents
    ]
    wanted.append((DEMO_PUBLISHER, "service", (POLICY_AUTHOR, POLICY_APPROVER), {}))
    wanted += [(pid, "person", (POLICY_APPROVER,), {}) for pid in DEMO_APPROVERS]
    wanted.append((DEMO_CONTROLLER, "service", (CONTROLLER_ROLE,), {}))
    signers = {pid: _signer(pid, directory) for pid, _, _, _ in wanted}
    ensure_topics(log)
    view = load_registry(log, trust)
    since = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=1)
    serde = Serde()
    records = [
        signed_identity_record(
            serde,
            identity_datum(
                pid,
                kind=kind,
                version=1,
                at=since,
                keys=[key_entry(signers[pid].signer.key.public_key(), since)],
                roles=roles,
                attributes=attributes,
                owner="ordinance demo",
            ),
            admin,
        )
        for pid, kind, roles, attributes in wanted
        if view.get(pid) is None
    ]
    if records:
        log.produce(ensure_topics(log)[IDENTITY_REGISTRY].name, records)
    return DemoIdentities(trust, signers, trust_file)
