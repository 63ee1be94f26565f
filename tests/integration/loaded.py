"""Session fixture: HAPI with fhir-safety's terminology, profiles and demo data loaded."""

from __future__ import annotations

import pytest

from fhir_safety.cli import main as cli_main


@pytest.fixture(scope="session")
def loaded_hapi(hapi_base_url: str) -> str:
    """Loaded once per session with `fhir-safety load`, as a user would."""
    assert cli_main(["load", "--fhir-server", hapi_base_url]) == 0
    return hapi_base_url
