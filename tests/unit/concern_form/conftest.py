"""The app with the concern form's router, a fake FHIR server behind pytest-httpx, a fixed clock."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from pytest_httpx import HTTPXMock

from fhir_safety.api.app import create_app
from fhir_safety.concern_form.api import router
from fhir_safety.concern_form.links import issue_link
from fhir_safety.config import Settings
from fhir_safety.terminology import Terminology
from tests.conftest import FIXED_NOW
from tests.unit.concern_form.fake_server import BASE, SECRET, FakeFhir, encounter, patient


class Clock:
    """A clock a test can move."""

    def __init__(self, now: datetime = FIXED_NOW) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)


def form_settings(tmp_path: Path, **concern_form: Any) -> Settings:
    return Settings(
        feedback_database_url=f"sqlite:///{tmp_path / 'fb.sqlite3'}",
        fhir_server_url=BASE,
        concern_form_secret=SECRET,
        subscription_secret="sub-secret",
        concern_form={
            "marthas_rule_phone": "0118 496 0000",
            "marthas_rule_text": "the Call 4 Concern line",
            "escalation_wait_seconds": 0,
        }
        | concern_form,
    )


def with_form(app: FastAPI) -> FastAPI:
    """The app with the form's router (once, whether or not app.py already includes it)."""
    if not any(getattr(r, "path", None) == "/concern/{code}" for r in app.routes):
        app.include_router(router)
    return app


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def fhir(httpx_mock: HTTPXMock) -> FakeFhir:
    server = FakeFhir(patient(), encounter())
    httpx_mock.add_callback(server, is_reusable=True, is_optional=True)
    return server


@pytest.fixture
def form_config() -> dict[str, Any]:
    """Overrides of ``concern_form`` settings; a test module may override this fixture."""
    return {}


@pytest.fixture
def settings(tmp_path: Path, form_config: dict[str, Any]) -> Settings:
    return form_settings(tmp_path, **form_config)


@pytest.fixture
def client(
    settings: Settings,
    terminology: Terminology,
    clock: Clock,
    fhir: FakeFhir,  # noqa: ARG001 - the fake server must be in place before the app starts
) -> Iterator[TestClient]:
    app = with_form(create_app(settings, terminology=terminology, clock=clock))
    with TestClient(app, base_url="http://cds.test") as test_client:
        yield test_client


@pytest.fixture
def code(settings: Settings) -> str:
    return issue_link(settings, "p-1", "7A", now=FIXED_NOW).code
