"""The examples give the documented cards, through HTTP and through ``fhir-safety check``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from fhir_safety.cli import EXIT_CRITICAL, EXIT_UNAVAILABLE, main
from tests.conftest import EXAMPLES, load_example


def _expected_cases() -> list[tuple[str, dict[str, Any]]]:
    """Every ``examples/<domain>/expected.json``: example file -> service, now and cards."""
    cases = []
    for path in sorted(EXAMPLES.glob("*/expected.json")):
        expected = json.loads(path.read_text(encoding="utf-8"))
        for name, case in expected["examples"].items():
            cases.append((f"{path.parent.name}/{name}", {"now": expected["now"], **case}))
    return cases


CASES = _expected_cases()
NOW = "2026-11-26T09:00:00Z"


def simplify(cards: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [
        {
            "indicator": card["indicator"],
            "summary": card["summary"],
            "suggestions": [s["label"] for s in card.get("suggestions", [])],
        }
        for card in cards
    ]


@pytest.mark.parametrize(("name", "expected"), CASES, ids=[name for name, _ in CASES])
def test_example_over_http(client: TestClient, name: str, expected: dict[str, Any]) -> None:
    assert expected["now"] == NOW  # the HTTP client fixture's clock (tests/conftest.py FIXED_NOW)
    response = client.post(f"/cds-services/{expected['service']}", json=load_example(name))
    assert response.status_code == 200
    assert simplify(response.json()["cards"]) == expected["cards"]


@pytest.mark.parametrize(("name", "expected"), CASES, ids=[name for name, _ in CASES])
def test_example_through_cli_check(
    name: str,
    expected: dict[str, Any],
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("FHIR_SAFETY_FEEDBACK_DATABASE_URL", f"sqlite:///{tmp_path / 'f.sqlite3'}")
    code = main(
        [
            "check",
            str(EXAMPLES / name),
            "--service",
            expected["service"],
            "--now",
            NOW,
            "--json",
        ]
    )
    output = json.loads(capsys.readouterr().out)
    assert simplify(output[expected["service"]]["cards"]) == expected["cards"]
    critical = any(c["indicator"] == "critical" for c in expected["cards"])
    assert code == (EXIT_CRITICAL if critical else 0)


def test_cli_check_table_output(capsys: pytest.CaptureFixture[str]) -> None:
    example = str(EXAMPLES / "long-stay/patient-view-super-stranded-no-plan.json")
    assert main(["check", example, "--service", "long-stay", "--now", NOW]) == 0
    out = capsys.readouterr().out
    assert "super-stranded" in out
    assert "warning" in out


def test_cli_check_every_service_names_those_that_lacked_data(
    capsys: pytest.CaptureFixture[str],
) -> None:
    # Without --service, every patient-view service runs; the long-stay example carries
    # no data for some of them, and the check must say so rather than pass silently.
    example = str(EXAMPLES / "long-stay/patient-view-super-stranded-no-plan.json")
    code = main(["check", example, "--now", NOW, "--json"])
    captured = capsys.readouterr()
    output = json.loads(captured.out)
    assert output["long-stay"]["cards"][0]["indicator"] == "warning"
    errors = {service for service, body in output.items() if "error" in body}
    if errors:
        assert code in {EXIT_CRITICAL, EXIT_UNAVAILABLE}
        assert all(f"{service}: required data unavailable" in captured.err for service in errors)


def test_cli_check_without_data_exits_unavailable(tmp_path: Path) -> None:
    request = load_example("long-stay/patient-view-no-prefetch.json")
    request.pop("fhirServer")
    path = tmp_path / "request.json"
    path.write_text(json.dumps(request))
    assert main(["check", str(path), "--now", NOW]) == EXIT_UNAVAILABLE


def test_cli_check_rejects_a_non_request(tmp_path: Path) -> None:
    path = tmp_path / "bad.json"
    path.write_text('{"hook": "patient-view"}')
    assert main(["check", str(path)]) == 2


def test_cli_services_prints_discovery(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["services"]) == 0
    services = json.loads(capsys.readouterr().out)["services"]
    assert {s["id"] for s in services} >= {"long-stay"}
