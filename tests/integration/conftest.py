"""Fixtures for integration tests against a real HAPI FHIR R4 server.

``hapi_base_url`` is ``$FHIR_SERVER_URL`` when set (e.g. a server from ``scripts/hapi start`` or
docker compose), else the jar from docker/hapi is started once per test session on a free port
and stopped at the end.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from tests.hapi_harness import start_hapi


@pytest.fixture(scope="session")
def hapi_base_url() -> Iterator[str]:
    external = os.environ.get("FHIR_SERVER_URL", "").strip()
    if external:
        yield external.rstrip("/")
        return
    server = start_hapi(None)
    try:
        yield server.base_url
    finally:
        server.stop()
