"""schemathesis against the live API: generated requests from the OpenAPI document, real
HTTP to a real server on SQLite and PostgreSQL. No answer may be a 5xx, and every answer
must match the document (status, content type, headers, JSON schema)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from schemathesis.specs.openapi.schemas import OpenApiSchema

from market_data_services.storage import create_engine, upgrade
from tests.app.test_api import start_server
from tests.databases import DatabaseFactory, backend_params
from tests.derived_data import fill

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]


@pytest.fixture(params=backend_params())
def api_schema(
    request: pytest.FixtureRequest, database_factory: DatabaseFactory
) -> Iterator[OpenApiSchema]:
    """The document as the live server serves it, on a filled database."""
    url = database_factory.url(request.param)
    engine = create_engine(url)
    upgrade(engine)
    fill(engine)
    server = start_server(engine)
    try:
        yield schemathesis.openapi.from_url(server.url + "/api/v1/openapi.json")
    finally:
        server.stop()
        engine.dispose()
        database_factory.drop(url)


def test_no_answer_is_a_server_error_and_every_answer_matches_the_document(
    api_schema: OpenApiSchema,
) -> None:
    # schemathesis's pytest plugin does not run on this pytest; its strategies do.
    operations = [result.ok() for result in api_schema.get_all_operations()]
    # Every data route and /symbols (schemathesis leaves out the document's own path).
    assert {op.path for op in operations} == {
        "/api/v1/candles",
        "/api/v1/book",
        "/api/v1/sentiment",
        "/api/v1/symbols",
    }
    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(max_examples=80, deadline=None, suppress_health_check=list(HealthCheck))
        def answers_as_documented(case: schemathesis.Case) -> None:
            case.call_and_validate(checks=CHECKS)

        answers_as_documented()
