"""Schemathesis against the OpenAPI document the gateway serves (issue 15, "Must show"):
generated requests — valid and invalid by the document — hit the gateway in front of a
real enforcer, and every answer must be one the document allows (status, content type,
body schema), never a server error. Example counts are kept small for CI time."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings

from ordinance.surfaces.http_api import build_app
from ordinance.surfaces.http_gateway import Gateway
from tests.surfaces.http_pipeline import pipeline


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    with pipeline(tmp_path_factory.mktemp("http-schema"), identity=True) as running:
        gateway = Gateway(running.url, timeout_s=10)
        try:
            yield build_app(gateway, max_body=64 * 1024)
        finally:
            gateway.close()


@pytest.fixture(scope="module")
def api_schema(served: Any) -> Any:
    return schemathesis.openapi.from_asgi("/openapi.json", served)


# schemathesis' own pytest integration does not load under pytest 9; its strategies do.
@pytest.mark.parametrize("mode", list(schemathesis.GenerationMode), ids=lambda m: m.value)
def test_every_answer_is_one_the_document_allows(api_schema: Any, mode: Any) -> None:
    operations = [result.ok() for result in api_schema.get_all_operations()]
    assert {op.label for op in operations} >= {"POST /v1/decide", "POST /v1/approvals/{request_id}"}
    for operation in operations:
        if mode == schemathesis.GenerationMode.NEGATIVE and "/v1/" not in operation.label:
            continue  # nothing to get wrong in a request without parameters or body

        @given(case=operation.as_strategy(generation_mode=mode))
        @settings(
            max_examples=50,
            deadline=None,
            database=None,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
        )
        def run(case: Any) -> None:
            case.call_and_validate()

        run()
