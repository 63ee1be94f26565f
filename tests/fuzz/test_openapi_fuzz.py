"""Schemathesis against our own OpenAPI: every endpoint, 1,000 generated cases each.

No generated request may cause a 5xx, and every response must match the documented
schema and status codes. The service runs for real (uvicorn, its lifespan) on loopback.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.specs.openapi.checks import positive_data_acceptance

from fhir_safety.api.app import create_app
from fhir_safety.config import Settings
from fhir_safety.terminology import load_default_terminology
from tests.conftest import FIXED_NOW
from tests.integration.service_harness import serve_in_thread

EXAMPLES_PER_ENDPOINT = int(os.environ.get("FHIR_SAFETY_FUZZ_EXAMPLES", "1000"))


@pytest.fixture(scope="session")
def service_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    db = Path(tmp_path_factory.mktemp("fuzz")) / "fb.sqlite3"
    app = create_app(
        Settings(feedback_database_url=f"sqlite:///{db}", subscription_secret="fuzz-secret"),
        terminology=load_default_terminology(),
        clock=lambda: FIXED_NOW,
    )
    with serve_in_thread(app) as url:
        yield url


# The schema is read from the app object at collection (no I/O); calls go to the live server.
SCHEMA = schemathesis.openapi.from_dict(create_app(Settings()).openapi())
OPERATIONS = [result.ok() for result in SCHEMA.get_all_operations()]


@pytest.mark.parametrize("operation", OPERATIONS, ids=[op.label for op in OPERATIONS])
def test_api_never_errors_and_matches_its_schema(service_url: str, operation: Any) -> None:
    @given(case=operation.as_strategy())
    @settings(
        max_examples=EXAMPLES_PER_ENDPOINT,
        deadline=None,
        suppress_health_check=list(HealthCheck),
        derandomize=True,
        database=None,
    )
    def check(case: schemathesis.Case) -> None:
        # Not "positive data acceptance": a schema-valid request can still be unanswerable
        # (412 with no data source, 400 for a hook the service does not answer); what the
        # issue asks is no 5xx and responses that match the documented schema and statuses.
        case.call_and_validate(base_url=service_url, excluded_checks=[positive_data_acceptance])

    check()
