"""docker/compose.yml gives the official HAPI image the same settings as our jar.

Docker cannot run on our build machines, so this test keeps the two consistent by reading
both: compose's environment for the `hapi` service must equal the `starter_properties` of
docker/hapi/settings.json (what our jar applies), with compose's `$$` escape for `$`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

DOCKER = Path(__file__).resolve().parents[2] / "docker"


def compose() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((DOCKER / "compose.yml").read_text(encoding="utf-8"))
    return data


def jar_settings() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(
        (DOCKER / "hapi" / "settings.json").read_text(encoding="utf-8")
    )
    return data


def test_compose_hapi_has_every_setting_of_the_jar() -> None:
    environment = {
        k: str(v).replace("$$", "$")
        for k, v in compose()["services"]["hapi"]["environment"].items()
    }
    for name, value in jar_settings()["starter_properties"].items():
        assert environment.get(name) == value, name


def test_compose_hapi_image_is_the_jars_hapi_version() -> None:
    image = compose()["services"]["hapi"]["image"]
    pom = (DOCKER / "hapi" / "pom.xml").read_text(encoding="utf-8")
    version = image.split(":v", 1)[1].split("-", 1)[0]
    assert (
        f"<hapi.version>{version}</hapi.version>" in pom or f"<version>{version}</version>" in pom
    )


def test_compose_points_fhir_safety_at_the_hapi_service() -> None:
    service = compose()["services"]["fhir-safety"]
    assert service["environment"]["FHIR_SAFETY_FHIR_SERVER_URL"] == "http://hapi:8080/fhir"
    assert service["build"]["dockerfile"] == "docker/Dockerfile"
    assert (DOCKER / "Dockerfile").exists()


def test_jar_serves_fhir_at_the_same_base_and_port() -> None:
    settings = jar_settings()
    assert settings["fhir_base"] == "/fhir"
    assert "8080:8080" in compose()["services"]["hapi"]["ports"]
    assert settings["port"] == 8080
