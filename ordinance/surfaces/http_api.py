"""``ordinance gateway --http HOST:PORT``: the HTTP decision API (docs/http-api.md, the
contract in ``openapi.json`` beside this file, served at ``GET /openapi.json``).

* ``POST /v1/decide`` — body: the request ``ordinance eval``/``submit`` read, plus
  ``request_id`` and ``event_time`` (required when signed). 200 with the Decision (an
  allow, a deny — by a policy, the enforcer failing closed, or the client's timeout/log
  failure, ``client_side: true`` — or require_approval with its ticket). 400 malformed
  JSON or not a request, 401 half a signature, 409 request id in flight or reused for
  another body, 413 body over ``--max-body`` (refused before it is read past the limit),
  415 not JSON, 422 a request with no wire form. Never an allow but from the enforcer.
* ``GET /v1/decisions/{request_id}[?agent_id=&wait=]`` — the decision as it stands
  (``status`` pending/final), waiting up to ``wait`` s for an approval's answer.
* ``POST /v1/approvals/{request_id}`` — a signed approval (body: the Approval record's
  fields), published as ``ordinance approvals approve --key`` publishes it; 202.
* ``/healthz`` (the process serves), ``/readyz`` (the log answers, the client is open).

Signatures ride in two headers, ``Ordinance-Key-Id`` and ``Ordinance-Signature``
(base64 of 64 Ed25519 bytes over the context and the raw body); the signer is the
principal the body names (``agent.id``, ``approver``) and the enforcer checks that key
is theirs (`ordinance.identity.http_signing`).
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Callable
from importlib import resources
from typing import Any

import orjson
from starlette.applications import Starlette
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from ordinance.client import CLIENT_INVALID_REQUEST
from ordinance.identity.http_signing import BodyError, intent_from_body
from ordinance.jsonutil import json_default
from ordinance.surfaces.http_gateway import (
    DEFAULT_MAX_BODY,
    Conflict,
    Gateway,
    LogUnavailable,
    NotFound,
    Signed,
    answer_json,
)

KEY_ID_HEADER = "ordinance-key-id"
SIGNATURE_HTTP_HEADER = "ordinance-signature"
MAX_WAIT_S = 30.0  # the longest a poll may hold a connection


class OrdinanceJSON(JSONResponse):
    """Exact decimals as strings, as everywhere in Ordinance."""

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content, default=json_default)


class HttpError(Exception):
    def __init__(self, status: int, error: str, detail: str) -> None:
        super().__init__(detail)
        self.status, self.error, self.detail = status, error, detail

    def response(self) -> Response:
        return OrdinanceJSON({"error": self.error, "detail": self.detail}, self.status)


def openapi_document() -> dict[str, Any]:
    text = resources.files("ordinance.surfaces").joinpath("openapi.json").read_text("utf-8")
    document: dict[str, Any] = json.loads(text)
    return document


async def read_body(request: Request, limit: int) -> bytes:
    """The body, refused (413) as soon as it is known to exceed ``limit`` bytes: by its
    Content-Length before reading, else while it streams in."""
    media = request.headers.get("content-type", "application/json").split(";")[0].strip()
    if media.lower() != "application/json":
        raise HttpError(415, "unsupported_media_type", "send Content-Type: application/json")
    declared = request.headers.get("content-length")
    if declared is not None and (not declared.isdigit() or int(declared) > limit):
        raise HttpError(413, "body_too_large", f"the body is over {limit} bytes")
    chunks: list[bytes] = []
    size = 0
    try:
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise HttpError(413, "body_too_large", f"the body is over {limit} bytes")
            chunks.append(chunk)
    except ClientDisconnect as exc:
        raise HttpError(400, "incomplete_body", "the client went away mid-body") from exc
    return b"".join(chunks)


def signature_from(request: Request, *, required: bool) -> Signed | None:
    key_id = request.headers.get(KEY_ID_HEADER)
    raw = request.headers.get(SIGNATURE_HTTP_HEADER)
    if key_id is None and raw is None:
        if required:
            raise HttpError(401, "unsigned", "an approval must be signed by its approver")
        return None
    if key_id is None or raw is None:
        raise HttpError(401, "bad_signature", "send both Ordinance-Key-Id and Ordinance-Signature")
    if not (0 < len(key_id) <= 64 and key_id.isascii() and key_id.isalnum()):
        raise HttpError(401, "bad_signature", "Ordinance-Key-Id is not a key id")
    try:
        signature = base64.b64decode(raw, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise HttpError(401, "bad_signature", "Ordinance-Signature is not base64") from exc
    if len(signature) != 64:
        raise HttpError(401, "bad_signature", "an Ed25519 signature is 64 bytes")
    return Signed(key_id, signature)


def wait_param(request: Request) -> float:
    text = request.query_params.get("wait", "0")
    try:
        wait = float(text)
    except ValueError as exc:
        raise HttpError(400, "bad_parameter", "wait is a number of seconds") from exc
    if not 0 <= wait <= MAX_WAIT_S:
        raise HttpError(400, "bad_parameter", f"wait is between 0 and {MAX_WAIT_S:g} seconds")
    return wait


Handler = Callable[[Request], Any]


def _guarded(handler: Handler) -> Handler:
    async def run(request: Request) -> Response:
        try:
            response: Response = await handler(request)
            return response
        except HttpError as exc:
            return exc.response()
        except BodyError as exc:
            return HttpError(400, "invalid_body", str(exc)).response()
        except Conflict as exc:
            return HttpError(409, "conflict", str(exc)).response()
        except NotFound as exc:
            return HttpError(404, "not_found", str(exc)).response()
        except LogUnavailable as exc:
            return HttpError(503, "log_unavailable", str(exc)).response()

    return run


def build_app(gateway: Gateway, *, max_body: int = DEFAULT_MAX_BODY) -> Starlette:
    document = openapi_document()

    async def decide(request: Request) -> Response:
        signed = signature_from(request, required=False)
        body = await read_body(request, max_body)
        intent = intent_from_body(body, signed=signed is not None)
        decision, agent_id = await gateway.decide(intent, body, signed)
        if decision.code == CLIENT_INVALID_REQUEST:  # not sendable: nothing was published
            return OrdinanceJSON(
                {
                    "error": "invalid_request",
                    "detail": decision.detail,
                    "decision": answer_json(decision, agent_id),
                },
                422,
            )
        return OrdinanceJSON(answer_json(decision, agent_id))

    async def decision(request: Request) -> Response:
        wait = wait_param(request)
        agent_id = request.query_params.get("agent_id")
        found, agent = await gateway.poll(request.path_params["request_id"], agent_id, wait)
        return OrdinanceJSON(answer_json(found, agent))

    async def approve(request: Request) -> Response:
        signed = signature_from(request, required=True)
        assert signed is not None
        body = await read_body(request, max_body)
        request_id = request.path_params["request_id"]
        try:
            datum = await gateway.approve(request_id, body, signed)
        except (BodyError, Conflict, HttpError):
            raise
        except Exception as exc:  # the log failed: nothing is known to be published
            raise HttpError(503, "log_unavailable", f"{type(exc).__name__}: {exc}") from exc
        return OrdinanceJSON(
            {
                "published": True,
                "request_id": request_id,
                "agent_id": datum["agent_id"],
                "approver": datum["approver"],
                "verdict": datum["verdict"],
                "poll": f"/v1/decisions/{request_id}?agent_id={datum['agent_id']}",
            },
            202,
        )

    async def healthz(_: Request) -> Response:
        return OrdinanceJSON({"healthy": True})

    async def readyz(_: Request) -> Response:
        ready, detail = await gateway.ready()
        return OrdinanceJSON({"ready": ready, "detail": detail}, 200 if ready else 503)

    async def openapi(_: Request) -> Response:
        return OrdinanceJSON(document)

    return Starlette(
        routes=[
            Route("/v1/decide", _guarded(decide), methods=["POST"]),
            Route("/v1/decisions/{request_id}", _guarded(decision), methods=["GET"]),
            Route("/v1/approvals/{request_id}", _guarded(approve), methods=["POST"]),
            Route("/healthz", healthz, methods=["GET"]),
            Route("/readyz", readyz, methods=["GET"]),
            Route("/openapi.json", openapi, methods=["GET"]),
        ]
    )
