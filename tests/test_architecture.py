"""The layering in ARCHITECTURE.md, enforced: pure rules, HTTP only in api, errors mapped once."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "fhir_safety"
IMPURE = (
    "httpx",
    "fastapi",
    "starlette",
    "sqlite3",
    "psycopg",
    "requests",
    "socket",
    "fhir_safety.api",
    "fhir_safety.services",
    "fhir_safety.fhir.client",
    "fhir_safety.cds",
)


def imported_modules(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names = [
        alias.name
        for node in ast.walk(tree)
        if isinstance(node, ast.Import)
        for alias in node.names
    ]
    names += [node.module or "" for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)]
    return names


def calls(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    return [ast.unparse(node.func) for node in ast.walk(tree) if isinstance(node, ast.Call)]


@pytest.mark.parametrize("path", sorted((PACKAGE / "rules").glob("*.py")), ids=lambda p: p.name)
def test_rules_are_pure(path: Path) -> None:
    assert [m for m in imported_modules(path) if m.startswith(IMPURE)] == []
    clock_calls = [c for c in calls(path) if c.endswith(("now", "today", "utcnow", "time.time"))]
    assert clock_calls == [], "rules get the clock from the record, never from the system"


@pytest.mark.parametrize(
    "path", sorted(p for p in PACKAGE.rglob("*.py") if "api" not in p.parts), ids=lambda p: p.name
)
def test_only_the_api_layer_knows_http_frameworks(path: Path) -> None:
    assert [m for m in imported_modules(path) if m.startswith(("fastapi", "starlette"))] == []


def test_http_statuses_are_decided_in_one_place() -> None:
    offenders = [
        p.name
        for p in PACKAGE.rglob("*.py")
        if p.name != "errors.py" and "status_code=4" in p.read_text(encoding="utf-8")
    ]
    assert offenders == []


def test_cds_layer_does_no_io() -> None:
    for path in (PACKAGE / "cds").glob("*.py"):
        assert [
            m
            for m in imported_modules(path)
            if m.startswith(
                ("httpx", "sqlite3", "psycopg", "fhir_safety.services", "fhir_safety.api")
            )
        ] == [], path
