"""Schemathesis against the OpenAPI schema: generated requests never get a 5xx."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings

from reelwatch import serving
from reelwatch.web import create_app
from tests.conftest import World


@pytest.fixture
def live_origin(world: World) -> Iterator[str]:
    app = create_app(
        world.with_settings(cron_secret="c", openai_webhook_secret="whsec_AAAA").settings,
        clock=world.clock,
        run_worker=False,
    )
    with serving.in_thread(app, probe="/healthz", name="reelwatch-schema") as origin:
        yield origin


def check(case: Any, origin: str) -> None:
    response = case.call(base_url=origin, timeout=10)
    # 503 is a deliberate answer (a route switched off by configuration), not a crash.
    assert response.status_code < 500 or response.status_code == 503, (
        case.method,
        case.formatted_path,
        response.status_code,
        response.text[:300],
    )
    if response.status_code >= 400:
        assert set(response.json()["error"]) >= {"code", "message"}


@pytest.mark.slow
def test_no_generated_request_gets_a_server_error(live_origin: str) -> None:
    """Whatever the schema allows (and a bit beyond), the answer is never a 5xx crash."""
    loaded = schemathesis.openapi.from_url(f"{live_origin}/openapi.json")
    tried = []
    calls = []
    for result in loaded.get_all_operations():
        operation = result.ok()
        if operation.path == "/api/events":
            continue  # the live event stream never ends by design; it has its own tests
        tried.append(f"{operation.method.upper()} {operation.path}")

        @given(case=operation.as_strategy())
        @settings(
            max_examples=25, deadline=None, database=None, suppress_health_check=list(HealthCheck)
        )
        def run(case: Any) -> None:
            calls.append(case)
            check(case, live_origin)

        run()
    assert "POST /api/generations" in tried and len(tried) >= 10
    assert len(calls) >= 10 * len(tried)
