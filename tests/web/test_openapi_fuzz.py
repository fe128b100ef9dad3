"""Schemathesis against the served OpenAPI document, on both backends: no generated request
answers 5xx, and every status is one the document declares. Schemathesis is in the test extras
(`make test` installs it); the test skips with a reason where it is missing."""

from __future__ import annotations

import pytest

schemathesis = pytest.importorskip("schemathesis")

from hypothesis import HealthCheck, given, settings  # noqa: E402

from ledger.services.registry import create_token  # noqa: E402
from web.app import create_app  # noqa: E402


@pytest.fixture
def served(store):
    app = create_app({"SETTINGS": store.settings, "TESTING": True})
    with store.sessions() as session, session.begin():
        token = create_token(session, "fuzz", "submit", now=store.clock)
    yield app, token
    ext = app.extensions["provledger"]
    ext.sequencer.stop()
    ext.engine.dispose()


def test_no_5xx_and_only_documented_statuses(served):
    app, token = served
    api = schemathesis.openapi.from_wsgi("/api/v1/openapi.json", app)
    tested = 0
    for result in api.get_all_operations():
        operation = result.ok()

        @given(case=operation.as_strategy())
        @settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck), database=None)
        def run(case) -> None:
            response = case.call(headers={"Authorization": f"Bearer {token}"})
            where = (case.method, case.formatted_path, response.status_code, response.text[:300])
            assert response.status_code < 500, where
            assert str(response.status_code) in case.operation.definition.raw["responses"], where

        run()
        tested += 1
    assert tested >= 15  # every operation of the document
