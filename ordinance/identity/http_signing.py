"""Signed HTTP bodies: how an agent that cannot write our Avro still signs its own intent,
and the enforcer — not the gateway — checks that signature (docs/http-api.md).

A Python agent signs the record value it publishes (`ordinance.identity.signing`). An
agent in another language talks JSON to ``ordinance gateway``, which writes the Avro; a
signature over bytes the agent never saw would prove nothing about the agent. So over
HTTP the agent signs the raw body it sends:

* intent: Ed25519 over ``INTENT_CONTEXT + body`` (``POST /v1/decide``);
* approval: Ed25519 over ``APPROVAL_CONTEXT + body`` (``POST /v1/approvals/{id}``).

The gateway publishes the record it builds from the body with the usual three signature
headers (signer = the ``agent.id``/``approver`` the body names, the key id and signature
the agent sent) plus ``ordinance-signed-body`` carrying the body verbatim. The enforcer's
identity gate verifies the signature over the carried body with the registry key, then
parses the body exactly as the gateway did (`intent_from_body` / `approval_from_body`,
one function for both) and refuses (``body_mismatch``) unless the record it is about to
judge equals what the body says, field for field after the same Avro round trip: what
is judged is what the agent signed, whatever the gateway did in between.

The body must carry ``request_id`` and ``event_time`` when signed: the request id is
then signed too (a signature replayed under another request id is ``body_mismatch``, under
the same id it is a duplicate the enforcer does not decide again) and the event time
bounds the replay window (the enforcer's clock-skew and staleness rules). The contexts
differ from the record context and from each other, so no signature is valid for
anything else the same key signs.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from ordinance.errors import OrdinanceError
from ordinance.identity.signing import KEY_HEADER, SIGNATURE_HEADER, SIGNER_HEADER, SignatureError
from ordinance.streams.log import Headers
from ordinance.streams.serde import Decoded, Serde
from ordinance.wire import request_to_wire

INTENT_CONTEXT = b"ordinance-http-intent-v1\x00"
APPROVAL_CONTEXT = b"ordinance-http-approval-v1\x00"
#: The record header carrying the signed HTTP body verbatim.
BODY_HEADER = "ordinance-signed-body"
#: Deny/refusal code: the record is not what the signed body says.
BODY_MISMATCH = "body_mismatch"
#: The largest signed body an enforcer parses (the gateway's --max-body may not exceed it).
MAX_SIGNED_BODY_BYTES = 4 * 1024 * 1024

# What an intent's record must agree with its body on; client_id and reply_to are the
# gateway's transport fields, not judged.
_INTENT_FIELDS = ("request_id", "agent", "action", "resource", "context", "event_time")
_APPROVAL_FIELDS = (
    "request_id",
    "agent_id",
    "verdict",
    "approver",
    "reason",
    "at",
    "expires_at",
    "ticket",
)
_SERDE = Serde()


class BodyError(OrdinanceError):
    """The body is not JSON of the expected shape (the gateway answers 400)."""


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise BodyError(f"key {key!r} appears twice in one object")
        out[key] = value
    return out


def _no_constants(name: str) -> Any:
    raise BodyError(f"{name} is not a JSON number")


_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")


def load_json(body: bytes) -> Any:
    """Strict JSON: UTF-8, exact decimals, no duplicate keys, no NaN/Infinity, no lone
    surrogates (``"\\ud800"`` decodes to a string no UTF-8 writer can write)."""
    try:
        text = body.decode("utf-8")
        value = json.loads(
            text,
            parse_float=Decimal,
            object_pairs_hook=_no_duplicates,
            parse_constant=_no_constants,
        )
        if _SURROGATE_ESCAPE.search(text):  # pairs are fine; a lone one is not text
            json.dumps(value, ensure_ascii=False, default=str).encode("utf-8")
        return value
    except UnicodeEncodeError as exc:
        raise BodyError("the body holds a lone surrogate (\\uD800-\\uDFFF)") from exc
    except UnicodeDecodeError as exc:
        raise BodyError(f"the body is not UTF-8: {exc}") from exc
    except RecursionError as exc:
        raise BodyError("the body is nested too deeply") from exc
    except ValueError as exc:  # JSONDecodeError
        raise BodyError(f"the body is not JSON: {exc}") from exc


def parse_time(value: Any, field: str) -> dt.datetime:
    """An RFC 3339 timestamp with an explicit offset (``2026-12-07T15:00:00.123Z``)."""
    if not isinstance(value, str) or len(value) > 64:
        raise BodyError(f"{field} must be an RFC 3339 timestamp string")
    try:
        parsed = dt.datetime.fromisoformat(value)
    except ValueError as exc:
        raise BodyError(f"{field}: {exc}") from exc
    if parsed.tzinfo is None:
        raise BodyError(f"{field} must carry an offset (Z or +HH:MM)")
    return parsed.astimezone(dt.UTC)


def _mapping(value: Any, field: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise BodyError(f"{field} must be a JSON object")
    return value


def _string(value: Any, field: str, *, limit: int = 256) -> str:
    if not isinstance(value, str) or not value or len(value) > limit:
        raise BodyError(f"{field} must be a non-empty string of at most {limit} characters")
    return value


@dataclass(frozen=True)
class HttpIntent:
    """A decide body: the policy-shaped request, and the request id and event time it
    names (None when it names none; only an unsigned body may leave them out)."""

    request: dict[str, Any]
    request_id: str | None
    event_time: dt.datetime | None


def intent_from_body(body: bytes, *, signed: bool) -> HttpIntent:
    """The request a ``POST /v1/decide`` body asks about: the shape ``ordinance eval``
    and ``submit`` read (``agent``, ``action``, optional ``resource`` and ``context``),
    plus ``request_id`` and ``event_time``, required when ``signed``."""
    data = _mapping(load_json(body), "the body")
    agent = _mapping(data.get("agent"), "agent")
    if not isinstance(agent.get("id"), str):
        raise BodyError("agent.id must be a string")
    if "roles" in agent and not (
        isinstance(agent["roles"], list) and all(isinstance(r, str) for r in agent["roles"])
    ):
        raise BodyError("agent.roles must be a list of strings")
    action = _mapping(data.get("action"), "action")
    if not isinstance(action.get("tool"), str):
        raise BodyError("action.tool must be a string")
    _mapping(action.get("args", {}), "action.args")
    request: dict[str, Any] = {"agent": agent, "action": action}
    if data.get("resource") is not None:
        resource = _mapping(data["resource"], "resource")
        if not isinstance(resource.get("kind"), str):
            raise BodyError("resource.kind must be a string")
        if not isinstance(resource.get("id", ""), str):
            raise BodyError("resource.id must be a string")
        request["resource"] = resource
    if data.get("context") is not None:
        request["context"] = _mapping(data["context"], "context")
    request_id = data.get("request_id")
    event_time = data.get("event_time")
    if signed and (request_id is None or event_time is None):
        raise BodyError("a signed body must carry request_id and event_time")
    return HttpIntent(
        request,
        None if request_id is None else _string(request_id, "request_id"),
        None if event_time is None else parse_time(event_time, "event_time"),
    )


def approval_from_body(body: bytes) -> dict[str, Any]:
    """The Approval datum a ``POST /v1/approvals/{id}`` body says: ``request_id``,
    ``agent_id``, ``ticket``, ``verdict`` (approved/rejected), ``approver``, ``at``, and
    optional ``reason`` and ``expires_at`` — exactly the record ``approvals approve``
    publishes, every field signed."""
    data = _mapping(load_json(body), "the body")
    verdict = data.get("verdict")
    if verdict not in ("approved", "rejected"):
        raise BodyError("verdict must be 'approved' or 'rejected'")
    reason = data.get("reason")
    if reason is not None and not isinstance(reason, str):
        raise BodyError("reason must be a string or null")
    expires_at = data.get("expires_at")
    return {
        "request_id": _string(data.get("request_id"), "request_id"),
        "agent_id": _string(data.get("agent_id"), "agent_id"),
        "verdict": verdict,
        "approver": _string(data.get("approver"), "approver"),
        "reason": reason,
        "at": parse_time(data.get("at"), "at"),
        "expires_at": None if expires_at is None else parse_time(expires_at, "expires_at"),
        "ticket": _string(data.get("ticket"), "ticket", limit=128),
    }


def body_headers(signer_id: str, key_id: str, signature: bytes, body: bytes) -> Headers:
    """The record headers the gateway publishes for a signed body."""
    return (
        (SIGNER_HEADER, signer_id.encode()),
        (KEY_HEADER, key_id.encode()),
        (SIGNATURE_HEADER, signature),
        (BODY_HEADER, body),
    )


def signed_body(headers: Headers) -> bytes | None:
    """The signed HTTP body a record carries, or None. SignatureError if twice or huge."""
    found = [value for name, value in headers if name == BODY_HEADER]
    if not found:
        return None
    if len(found) > 1:
        raise SignatureError(f"header {BODY_HEADER} appears twice")
    if len(found[0]) > MAX_SIGNED_BODY_BYTES:
        raise SignatureError(f"the signed body is over {MAX_SIGNED_BODY_BYTES} bytes")
    return bytes(found[0])


def _valid(context: bytes, public: Ed25519PublicKey, body: bytes, signature: bytes) -> bool:
    try:
        public.verify(signature, context + body)
    except InvalidSignature:
        return False
    return True


def intent_body_valid(public: Ed25519PublicKey, body: bytes, signature: bytes) -> bool:
    return _valid(INTENT_CONTEXT, public, body, signature)


def approval_body_valid(public: Ed25519PublicKey, body: bytes, signature: bytes) -> bool:
    return _valid(APPROVAL_CONTEXT, public, body, signature)


def _round_trip(name: str, datum: Mapping[str, Any]) -> dict[str, Any]:
    decoded = _SERDE.decode(_SERDE.encode(name, datum), expect={name})
    if not isinstance(decoded, Decoded):
        raise BodyError(f"the body does not make a {name}: {decoded.detail}")
    return decoded.value


def _differing(
    record: Mapping[str, Any], expected: Mapping[str, Any], fields: tuple[str, ...]
) -> str | None:
    differ = [f for f in fields if record.get(f) != expected.get(f)]
    if differ:
        return "the record differs from the signed body in " + ", ".join(differ)
    return None


def intent_body_problem(datum: Mapping[str, Any], body: bytes) -> str | None:
    """Why the decoded ActionRequest ``datum`` is not what the signed ``body`` says; None
    when it is. Deterministic: replay finds the same."""
    try:
        intent = intent_from_body(body, signed=True)
        assert intent.request_id is not None and intent.event_time is not None
        signed_datum = request_to_wire(
            intent.request,
            request_id=intent.request_id,
            event_time=intent.event_time,
            client_id=str(datum.get("client_id") or ""),
            reply_to=datum.get("reply_to"),
        )
        expected = _round_trip("ActionRequest", signed_datum)
        record = _round_trip("ActionRequest", datum)
    except Exception as exc:  # any failure to rebuild the request is a mismatch, never an allow
        return f"the signed body does not make this request: {exc}"
    return _differing(record, expected, _INTENT_FIELDS)


def approval_body_problem(datum: Mapping[str, Any], body: bytes) -> str | None:
    """Why the decoded Approval ``datum`` is not what the signed ``body`` says."""
    try:
        expected = _round_trip("Approval", approval_from_body(body))
        record = _round_trip("Approval", datum)
    except Exception as exc:
        return f"the signed body does not make this approval: {exc}"
    return _differing(record, expected, _APPROVAL_FIELDS)
