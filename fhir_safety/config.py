"""Settings: environment (``FHIR_SAFETY_*``), an optional TOML file, and defaults.

Nothing is read at import time: ``load_settings()`` builds a ``Settings`` and
``create_app(settings)`` takes it, so tests build their own.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from fhir_safety.errors import ConfigurationError

__all__ = ["LongStaySettings", "Settings", "TrustedIssuer", "load_settings"]

REPO_ROOT = Path(__file__).resolve().parent.parent


class TrustedIssuer(BaseModel):
    """An EHR (CDS client) whose JWTs we accept.

    Keys come from ``jwks_url`` or ``jwks_file`` (configured out of band), or
    from the token's ``jku`` header when it starts with one of ``jku_prefixes``.
    """

    iss: str
    jwks_url: str | None = None
    jwks_file: Path | None = None
    jku_prefixes: list[str] = []
    tenants: list[str] = []  # when set, the token's ``tenant`` claim must be one of these


class LongStaySettings(BaseModel):
    """Long-stay thresholds, in whole days in hospital (see rules/length_of_stay.py for sources)."""

    stranded_days: int = 7
    super_stranded_days: int = 21


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="FHIR_SAFETY_", env_nested_delimiter="__", extra="forbid"
    )

    host: str = "127.0.0.1"
    port: int = 8000
    # Binding a non-loopback address with no JWT issuer configured needs this explicit flag.
    allow_insecure_bind: bool = False
    # Public base URL of this service (``https://cds.example.org``), for the JWT ``aud``
    # check behind a proxy. Unset: the URL the request arrived on.
    public_base_url: str | None = None

    issuers: list[TrustedIssuer] = []
    jwt_clock_skew_seconds: int = 60
    jwt_max_lifetime_seconds: int = 3600  # longest token life we accept (and replay-cache span)
    jwks_min_refresh_seconds: float = 30.0  # rate limit on JWKS refresh for an unknown kid

    fhir_server_url: str | None = None  # default FHIR server when a request names none
    fhir_server_token: str | None = None  # bearer token for the default server, if it needs one
    request_deadline_seconds: float = 5.0
    max_body_bytes: int = 5_000_000
    max_fhir_response_bytes: int = 20_000_000
    max_fhir_pages: int = 20

    feedback_database_url: str = "sqlite:///fhir-safety-feedback.sqlite3"
    cors_allow_origins: list[str] = ["*"]
    cors_allow_methods: list[str] = ["GET", "POST", "OPTIONS"]
    cors_allow_headers: list[str] = ["Content-Type", "Authorization"]

    timezone: str = "Europe/London"  # the trust's local zone: day counts and partial dates
    terminology_dir: Path = REPO_ROOT / "terminology"
    log_level: str = "INFO"
    subscription_secret: str | None = None

    long_stay: LongStaySettings = Field(default_factory=LongStaySettings)

    @field_validator("public_base_url", "fhir_server_url")
    @classmethod
    def _strip_trailing_slash(cls, value: str | None) -> str | None:
        return value.rstrip("/") if value else value

    @property
    def authentication_enabled(self) -> bool:
        return bool(self.issuers)

    def check_bind(self) -> None:
        """Refuse to serve unauthenticated on a non-loopback address unless told to."""
        loopback = self.host in {"127.0.0.1", "localhost", "::1"}
        if not self.authentication_enabled and not loopback and not self.allow_insecure_bind:
            raise ConfigurationError(
                f"refusing to bind {self.host} with no JWT issuer configured: "
                "configure FHIR_SAFETY_ISSUERS or pass --allow-insecure-bind"
            )


def load_settings(config_file: Path | None = None, **overrides: Any) -> Settings:
    """Settings from a TOML file (if given), then the environment, then ``overrides``."""
    values: dict[str, Any] = {}
    if config_file is not None:
        try:
            values = tomllib.loads(config_file.read_text(encoding="utf-8"))
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise ConfigurationError(f"cannot read config file {config_file}: {exc}") from exc
    # Environment wins over the file; explicit overrides (CLI flags) win over both.
    env_settings = Settings()
    merged = {**values, **env_settings.model_dump(exclude_unset=True), **overrides}
    try:
        return Settings.model_validate(merged)
    except ValueError as exc:
        raise ConfigurationError(f"invalid settings: {exc}") from exc
