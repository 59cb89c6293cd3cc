"""The HTTP decision API (``ordinance gateway``) in front of a real enforcer on the
embedded log, with identity on: agents sign their HTTP bodies and the enforcer verifies
them (tests/processors/test_http_signed_intents.py covers the gate itself). Allow, deny
and require_approval with signed approvals and polling; signature failures; malformed,
mistyped and oversized bodies (clear 4xx, nothing published); a timeout is a deny."""

from __future__ import annotations

import datetime as dt
import json
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from starlette.testclient import TestClient

from ordinance.policy.decision import Decision
from ordinance.processors.http_server import HttpServer
from ordinance.streams import Record, open_log, partition_for
from ordinance.streams.serde import Serde
from ordinance.streams.topics import AGENT_ACTIONS, AGENT_DECISIONS, DEFAULT_PREFIX, ensure_topics
from ordinance.surfaces.http_api import build_app, openapi_document
from ordinance.surfaces.http_gateway import Gateway
from ordinance.wire import decision_to_wire
from tests.surfaces.http_pipeline import (
    Pipeline,
    approval_body,
    pipeline,
    sign,
    signed_approval,
    signed_post,
    transfer,
)

ROOT = Path(__file__).resolve().parents[2]

MAX_BODY = 64 * 1024


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pipeline]:
    with pipeline(tmp_path_factory.mktemp("http-identity"), identity=True) as running:
        yield running


@pytest.fixture(scope="module")
def gateway(live: Pipeline) -> Iterator[Gateway]:
    gw = Gateway(live.url, timeout_s=20)
    try:
        yield gw
    finally:
        gw.close()


@pytest.fixture(scope="module")
def http(gateway: Gateway) -> Iterator[TestClient]:
    with TestClient(build_app(gateway, max_body=MAX_BODY)) as client:
        yield client


def actions_published(url: str) -> int:
    with open_log(url) as log:
        return sum(log.end_offsets(DEFAULT_PREFIX + AGENT_ACTIONS).values())


def decide(http: TestClient, live: Pipeline, agent: str, data: dict[str, Any]) -> Any:
    body, headers = signed_post(live.keys[agent], data)
    return http.post("/v1/decide", content=body, headers=headers)


def test_signed_requests_get_the_enforcers_decision(http: TestClient, live: Pipeline) -> None:
    allowed = decide(http, live, "billing-bot", transfer("billing-bot", "50"))
    denied = decide(http, live, "billing-bot", transfer("billing-bot", "50", country="KP"))
    needs = decide(http, live, "billing-bot-2", transfer("billing-bot-2", "25000.00"))
    assert [r.status_code for r in (allowed, denied, needs)] == [200, 200, 200]
    a, d, n = allowed.json(), denied.json(), needs.json()
    assert (a["effect"], a["status"], a["client_side"]) == ("allow", "final", False)
    assert a["bundle_id"] == live.bundle_id and a["policy_offset"] is not None
    assert a["enforcer_id"] == live.enforcer.enforcer_id and a["agent_id"] == "billing-bot"
    assert (d["effect"], d["status"]) == ("deny", "final")
    assert "payments-guardrails/block-sanctioned" in d["rule_ids"]
    assert (n["effect"], n["status"]) == ("require_approval", "pending")
    assert n["approval_ticket"].startswith("sha256:")
    assert (n["approval_roles"], n["approvals_required"]) == (["approver:finance"], 2)
    assert n["canonical_args"]["amount"] == "25000.00"  # exact decimal, as a string
    # A retried body (same request id, same bytes) gets the same answer, not a new intent.
    before = actions_published(live.url)
    again = decide(http, live, "billing-bot", json.loads(allowed.request.content))
    assert again.json()["request_id"] == a["request_id"] and again.json()["effect"] == "allow"
    assert actions_published(live.url) == before


def test_signed_approvals_then_poll(http: TestClient, live: Pipeline) -> None:
    pending = decide(http, live, "billing-bot-3", transfer("billing-bot-3", "20000")).json()
    assert pending["effect"] == "require_approval"
    rid = pending["request_id"]
    body, headers = signed_approval(live.keys["dana"], approval_body(pending, "dana"))
    accepted = http.post(f"/v1/approvals/{rid}", content=body, headers=headers)
    assert accepted.status_code == 202, accepted.text
    assert accepted.json()["poll"] == f"/v1/decisions/{rid}?agent_id=billing-bot-3"
    # two approvers are needed: after dana it is still pending
    assert http.get(f"/v1/decisions/{rid}", params={"wait": 1}).json()["status"] == "pending"
    # the approval must be signed by its approver: erin's body under dana's key is refused
    # by the enforcer (not counted), and an unsigned approval never leaves the gateway
    forged, _ = signed_approval(live.keys["erin"], approval_body(pending, "erin"))
    wrong = http.post(
        f"/v1/approvals/{rid}", content=forged, headers=sign(live.keys["dana"], forged)
    )
    assert wrong.status_code == 202  # published: the enforcer judges it, and refuses it
    unsigned = http.post(
        f"/v1/approvals/{rid}", content=forged, headers={"content-type": "application/json"}
    )
    assert (unsigned.status_code, unsigned.json()["error"]) == (401, "unsigned")
    assert http.get(f"/v1/decisions/{rid}", params={"wait": 1}).json()["status"] == "pending"
    body, headers = signed_approval(live.keys["erin"], approval_body(pending, "erin"))
    assert http.post(f"/v1/approvals/{rid}", content=body, headers=headers).status_code == 202
    final = http.get(f"/v1/decisions/{rid}", params={"wait": 20}).json()
    assert (final["effect"], final["status"], final["code"]) == ("allow", "final", "approved")
    assert final["approval_ticket"] == pending["approval_ticket"]
    # another gateway instance did not decide it: it reads the agent's decisions partition
    other = Gateway(live.url, timeout_s=5)
    try:
        with TestClient(build_app(other)) as fresh:
            assert fresh.get(f"/v1/decisions/{rid}").status_code == 404
            found = fresh.get(f"/v1/decisions/{rid}", params={"agent_id": "billing-bot-3"})
            assert (found.json()["effect"], found.json()["code"]) == ("allow", "approved")
    finally:
        other.close()


def test_signature_failures_are_denied_by_the_enforcer(http: TestClient, live: Pipeline) -> None:
    def code(response: Any) -> tuple[int, str, str]:
        return response.status_code, response.json()["effect"], response.json()["code"]

    unsigned = transfer("billing-bot", "50")
    assert code(http.post("/v1/decide", json=unsigned)) == (200, "deny", "unsigned")
    # mallory signs a body that speaks for billing-bot: her key is not billing-bot's
    assert code(decide(http, live, "mallory", transfer("billing-bot", "50"))) == (
        200,
        "deny",
        "key_not_valid",
    )
    # the body changed after signing (the amount): the signature does not verify
    body, headers = signed_post(live.keys["billing-bot"], transfer("billing-bot", "50"))
    tampered = body.replace(b'"50"', b'"9000"')
    response = http.post("/v1/decide", content=tampered, headers=headers)
    assert code(response) == (200, "deny", "bad_signature")
    # headers that cannot be a signature never reach the log
    half = {"content-type": "application/json", "ordinance-key-id": headers["ordinance-key-id"]}
    assert http.post("/v1/decide", content=body, headers=half).status_code == 401
    junk = {**headers, "ordinance-signature": "not base64!"}
    assert http.post("/v1/decide", content=body, headers=junk).status_code == 401
    # a signed body must name its request id and event time (else it could be replayed)
    bare = {k: v for k, v in transfer("billing-bot", "50").items() if k != "request_id"}
    refused = decide(http, live, "billing-bot", bare)
    assert (refused.status_code, refused.json()["error"]) == (400, "invalid_body")
    # the same request id for another body is a conflict, not a second decision
    first = transfer("billing-bot", "50")
    assert decide(http, live, "billing-bot", first).json()["effect"] == "allow"
    reused = decide(
        http, live, "billing-bot", {**first, "event_time": transfer("x", "1")["event_time"]}
    )
    assert reused.status_code == 409


@pytest.mark.parametrize(
    ("body", "content_type", "status", "error"),
    [
        (b"{not json", "application/json", 400, "invalid_body"),
        (b"[1, 2]", "application/json", 400, "invalid_body"),
        (b'{"agent": {"id": "billing-bot"}}', "application/json", 400, "invalid_body"),
        (b'{"agent": {"id": 7}, "action": {"tool": "x"}}', "application/json", 400, "invalid_body"),
        (
            b'{"agent": {"id": "a"}, "action": {"tool": "x", "args": {"n": 1, "n": 2}}}',
            "application/json",
            400,
            "invalid_body",
        ),
        (
            b'{"agent": {"id": "a"}, "action": {"tool": "x"}, "n": NaN}',
            "application/json",
            400,
            "invalid_body",
        ),
        (b"\xff\xfe", "application/json", 400, "invalid_body"),
        (
            b'{"agent": {"id": "\\ud800"}, "action": {"tool": "x"}}',
            "application/json",
            400,
            "invalid_body",
        ),
        (
            b'{"agent": {"id": "a"}, "action": {"tool": "x"}}',
            "text/plain",
            415,
            "unsupported_media_type",
        ),
        (b"x" * (MAX_BODY + 1), "application/json", 413, "body_too_large"),
    ],
    ids=[
        "not-json",
        "array",
        "no-action",
        "id-not-string",
        "duplicate-key",
        "nan",
        "not-utf8",
        "lone-surrogate",
        "media-type",
        "oversized",
    ],
)
def test_bad_bodies_are_clear_4xx_and_never_published(
    http: TestClient, live: Pipeline, body: bytes, content_type: str, status: int, error: str
) -> None:
    before = actions_published(live.url)
    response = http.post("/v1/decide", content=body, headers={"content-type": content_type})
    assert (response.status_code, response.json()["error"]) == (status, error)
    assert "effect" not in response.json()
    assert actions_published(live.url) == before


def test_an_oversized_stream_is_refused_without_reading_it_all(http: TestClient) -> None:
    read = []

    def chunks() -> Iterator[bytes]:  # no Content-Length: the limit is checked as it streams
        for _ in range(1000):
            read.append(1)
            yield b" " * 1024

    response = http.post(
        "/v1/decide", content=chunks(), headers={"content-type": "application/json"}
    )
    assert (response.status_code, response.json()["error"]) == (413, "body_too_large")


def test_no_answer_in_time_is_a_deny(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'log.db'}"
    with open_log(url) as log:
        ensure_topics(log)  # topics, and nobody deciding
    gw = Gateway(url, timeout_s=0.3)
    try:
        with TestClient(build_app(gw)) as http:
            assert http.get("/readyz").json() == {"ready": True, "detail": "ok"}
            response = http.post("/v1/decide", json=transfer("billing-bot", "50"))
            got = response.json()
            assert response.status_code == 200
            assert (got["effect"], got["code"], got["client_side"]) == (
                "deny",
                "client_timeout",
                True,
            )
            # the log going away: not ready, and a decide is still a deny, never an error
            gw.log.close()
            gw.client.close()
            assert http.get("/readyz").status_code == 503
            lookup = http.get("/v1/decisions/x", params={"agent_id": "billing-bot"})
            assert (lookup.status_code, lookup.json()["error"]) == (503, "log_unavailable")
            closed = http.post("/v1/decide", json=transfer("billing-bot", "50")).json()
            assert (closed["effect"], closed["code"]) == ("deny", "client_closed")
    finally:
        gw.close()
    assert gw.closed


def test_a_late_answer_is_found_by_a_retry_or_a_poll(tmp_path: Path) -> None:
    """The client gave up (a deny), then the enforcer's answer landed: a poll or a retry
    of the same body finds it on the log instead of publishing the intent again."""
    url = f"sqlite:///{tmp_path / 'log.db'}"
    with open_log(url) as log:
        ensure_topics(log)
    gw = Gateway(url, timeout_s=0.3)
    data = transfer("billing-bot", "50")
    try:
        with TestClient(build_app(gw)) as http:
            first = http.post("/v1/decide", json=data).json()
            assert (first["effect"], first["code"]) == ("deny", "client_timeout")
            published = actions_published(url)
            rid = data["request_id"]
            late = decision_to_wire(
                Decision("allow", ("payments-guardrails/small-ok",), ("ok",), (), "sha256:b"),
                request_id=rid,
                agent_id="billing-bot",
                enforcer_id="enforcer-late",
                evaluated_at=dt.datetime.now(dt.UTC),
            )
            with open_log(url) as log:
                partitions = len(log.partitions(DEFAULT_PREFIX + AGENT_DECISIONS))
                log.produce(
                    DEFAULT_PREFIX + AGENT_DECISIONS,
                    [
                        Record(
                            b"billing-bot",
                            Serde().encode("Decision", late),
                            (),
                            0,
                            partition_for(b"billing-bot", partitions),
                        )
                    ],
                )
            polled = http.get(f"/v1/decisions/{rid}").json()
            assert (polled["effect"], polled["enforcer_id"]) == ("allow", "enforcer-late")
            retried = http.post("/v1/decide", json=data).json()
            assert (retried["effect"], retried["request_id"]) == ("allow", rid)
            assert actions_published(url) == published  # found, not published again
            # a retry when the log has no answer yet publishes again (and is denied again)
            other = transfer("billing-bot", "51")
            http.post("/v1/decide", json=other)
            again = http.post("/v1/decide", json=other).json()
            assert again["code"] == "client_timeout"
            assert actions_published(url) == published + 2
    finally:
        gw.close()


def test_health_and_the_served_openapi_document(http: TestClient) -> None:
    assert http.get("/healthz").json() == {"healthy": True}
    assert http.get("/readyz").status_code == 200
    served = http.get("/openapi.json").json()
    committed = json.loads(
        (Path(__file__).resolve().parents[2] / "ordinance/surfaces/openapi.json").read_text()
    )
    assert served == committed == openapi_document()
    assert served["openapi"].startswith("3.1")


@pytest.mark.skipif(shutil.which("node") is None, reason="needs node")
def test_an_agent_in_javascript_signs_its_own_request(
    gateway: Gateway, live: Pipeline, tmp_path: Path
) -> None:
    """examples/http/decide.mjs: node's own crypto signs the body, the enforcer verifies."""
    pem = tmp_path / "billing-bot.pem"
    pem.write_bytes(
        live.keys["billing-bot-4"].signer.key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    request = tmp_path / "request.json"
    allowed = transfer("billing-bot-4", "75.25")
    request.write_text(json.dumps({k: allowed[k] for k in ("agent", "action")}))
    server = HttpServer(build_app(gateway), "127.0.0.1", 0)
    server.start()
    try:
        url = f"http://127.0.0.1:{server.bound_port}"
        done = subprocess.run(
            ["node", str(ROOT / "examples/http/decide.mjs"), url, str(pem), str(request)],
            capture_output=True,
            timeout=60,
            check=False,
        )
    finally:
        server.stop()
    decision = json.loads(done.stdout)
    assert (done.returncode, decision["effect"], decision["client_side"]) == (0, "allow", False)
    assert decision["canonical_args"]["amount"] == "75.25"
