"""Shared fixtures: settings, terminology, a fixed clock, and the app under test."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from fhir_safety.api.app import create_app
from fhir_safety.config import Settings
from fhir_safety.terminology import Terminology, load_default_terminology

pytest_plugins = ["tests.integration.loaded"]

REPO = Path(__file__).resolve().parent.parent
EXAMPLES = REPO / "examples"
FIXED_NOW = datetime(2026, 11, 26, 9, 0, tzinfo=UTC)


@pytest.fixture(scope="session")
def terminology() -> Terminology:
    return load_default_terminology()


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(feedback_database_url=f"sqlite:///{tmp_path / 'feedback.sqlite3'}")


@pytest.fixture
def client(settings: Settings, terminology: Terminology) -> Iterator[TestClient]:
    app = create_app(settings, terminology=terminology, clock=lambda: FIXED_NOW)
    with TestClient(app) as test_client:
        yield test_client


def load_example(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((EXAMPLES / name).read_text(encoding="utf-8"))
    return data
