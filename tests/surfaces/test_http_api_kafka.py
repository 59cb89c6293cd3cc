"""The HTTP gateway on the real local Kafka-protocol broker, identity on: a signed allow,
a deny, an unsigned and a tampered request denied by the enforcer, a malformed body
refused, and a require_approval answered by two signed approvals and polled — the same
path as on the embedded log (tests/surfaces/test_http_api.py), through Kafka."""

from __future__ import annotations

import pytest
from starlette.testclient import TestClient

from ordinance.streams.kafka_broker import start_broker
from ordinance.surfaces.http_api import build_app
from ordinance.surfaces.http_gateway import Gateway
from tests.surfaces.http_pipeline import (
    approval_body,
    pipeline,
    signed_approval,
    signed_post,
    transfer,
)


@pytest.mark.kafka
def test_decide_approve_and_poll_through_kafka() -> None:
    with start_broker() as broker, pipeline(broker.url, identity=True) as live:
        gateway = Gateway(live.url, timeout_s=20)
        try:
            with TestClient(build_app(gateway)) as http:

                def decide(agent: str, amount: str, country: str = "DE") -> dict[str, object]:
                    body, headers = signed_post(live.keys[agent], transfer(agent, amount, country))
                    response = http.post("/v1/decide", content=body, headers=headers)
                    assert response.status_code == 200, response.text
                    return dict(response.json())

                assert decide("billing-bot", "50")["effect"] == "allow"
                assert decide("billing-bot", "50", "IR")["effect"] == "deny"
                # signature failures are the enforcer's denies here too; bad bodies are 4xx
                unsigned = http.post("/v1/decide", json=transfer("billing-bot", "50")).json()
                assert (unsigned["effect"], unsigned["code"]) == ("deny", "unsigned")
                body, headers = signed_post(live.keys["billing-bot"], transfer("billing-bot", "5"))
                tampered = http.post(
                    "/v1/decide", content=body.replace(b'"5"', b'"9"'), headers=headers
                ).json()
                assert (tampered["effect"], tampered["code"]) == ("deny", "bad_signature")
                assert http.post("/v1/decide", content=b"{", headers=headers).status_code == 400
                pending = decide("billing-bot-2", "20000")
                assert pending["effect"] == "require_approval"
                rid = pending["request_id"]
                for person in ("dana", "erin"):
                    body, headers = signed_approval(
                        live.keys[person], approval_body(pending, person)
                    )
                    accepted = http.post(f"/v1/approvals/{rid}", content=body, headers=headers)
                    assert accepted.status_code == 202, accepted.text
                final = http.get(f"/v1/decisions/{rid}", params={"wait": 20}).json()
                assert (final["effect"], final["code"]) == ("allow", "approved")
        finally:
            gateway.close()
