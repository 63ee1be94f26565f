"""Settings from file, environment and flags; `fhir-safety serve` really serves discovery."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from fhir_safety.config import load_settings
from fhir_safety.errors import ConfigurationError


def test_settings_environment_wins_over_file_and_flags_win_over_both(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tmp_path / "settings.toml"
    config.write_text(
        'port = 9000\ntimezone = "UTC"\n[long_stay]\nstranded_days = 5\n'
        '[[issuers]]\niss = "https://ehr.example.org"\njwks_url = "https://ehr.example.org/jwks"\n'
    )
    monkeypatch.setenv("FHIR_SAFETY_PORT", "9100")
    settings = load_settings(config, host="0.0.0.0")
    assert settings.port == 9100
    assert settings.host == "0.0.0.0"
    assert settings.timezone == "UTC"
    assert settings.long_stay.stranded_days == 5
    assert settings.issuers[0].iss == "https://ehr.example.org"


def test_settings_issuers_from_environment_json(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FHIR_SAFETY_ISSUERS", '[{"iss": "https://a.example", "jwks_file": "/k.json"}]')
    assert load_settings().issuers[0].jwks_file == Path("/k.json")


def test_settings_bad_file_is_a_configuration_error(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("port = [")
    with pytest.raises(ConfigurationError, match="cannot read config file"):
        load_settings(bad)


def test_settings_unknown_key_is_refused(tmp_path: Path) -> None:
    typo = tmp_path / "typo.toml"
    typo.write_text("prot = 1\n")
    with pytest.raises(ConfigurationError, match="invalid settings"):
        load_settings(typo)


@pytest.mark.parametrize(
    ("host", "issuers", "allow", "refused"),
    [
        ("127.0.0.1", [], False, False),
        ("0.0.0.0", [], False, True),
        ("0.0.0.0", [], True, False),
        ("0.0.0.0", [{"iss": "https://ehr", "jwks_url": "https://ehr/jwks"}], False, False),
    ],
)
def test_open_service_binds_loopback_unless_told(
    host: str, issuers: list[dict[str, str]], allow: bool, refused: bool
) -> None:
    settings = load_settings(host=host, issuers=issuers, allow_insecure_bind=allow)
    if refused:
        with pytest.raises(ConfigurationError, match="--allow-insecure-bind"):
            settings.check_bind()
    else:
        settings.check_bind()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def test_serve_command_answers_discovery_and_warns_when_open(tmp_path: Path) -> None:
    port = _free_port()
    env = os.environ | {"FHIR_SAFETY_FEEDBACK_DATABASE_URL": f"sqlite:///{tmp_path / 'f.sqlite3'}"}
    process = subprocess.Popen(
        [sys.executable, "-m", "fhir_safety.cli", "serve", "--port", str(port)],
        env=env,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                response = httpx.get(f"http://127.0.0.1:{port}/cds-services", timeout=2)
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline, "serve did not come up within 30 s"
                assert process.poll() is None, "serve exited"
                time.sleep(0.2)
        assert response.status_code == 200
        assert any(s["id"] == "long-stay" for s in response.json()["services"])
    finally:
        process.terminate()
        _, stderr = process.communicate(timeout=20)
    assert "NO AUTHENTICATION" in stderr


def test_serve_refuses_public_bind_without_auth() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "fhir_safety.cli", "serve", "--host", "0.0.0.0", "--port", "1"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 4
    assert "--allow-insecure-bind" in result.stderr
