"""Settings: environment (``FHIR_SAFETY_*``), an optional TOML file, and defaults.

Nothing is read at import time: ``load_settings()`` builds a ``Settings`` and
``create_app(settings)`` takes it, so tests build their own.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from fhir_safety.errors import ConfigurationError

__all__ = [
    "HrtSettings",
    "LongStaySettings",
    "News2Settings",
    "Settings",
    "TrustedIssuer",
    "ValproateSettings",
    "load_settings",
]

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


class ValproateSettings(BaseModel):
    """Valproate safety thresholds and codes (rules/valproate.py; sources: docs/valproate.md).

    Source tags [Sn] are in shared/reference/clinical.md.
    """

    # Who "could become pregnant": not male, aged ppp_min_age..ppp_max_age inclusive. NCL ICB's
    # production cohort is non-male aged 0-55 inclusive and its action logic says "No action
    # required" at 0-6, "Review or refer" from 7 [S23] (dim_person_women_child_bearing_age.sql,
    # dim_prog_valproate_action_status.sql); MHRA: girls and women of childbearing potential [S24].
    ppp_min_age: int = 7
    ppp_max_age: int = 55
    # The ARAF is annual: specialist review at least annually [S24]; NCL counts an ARAF as current
    # for one calendar year (DATEADD(YEAR, -1, CURRENT_DATE)) [S23].
    araf_validity_months: int = 12
    # patient-view: warn when the annual review falls due within this many days (issue #5).
    review_warning_days: int = 30
    # Two specialists must agree before valproate is started in anyone younger than 55 (MHRA,
    # from 31 January 2024 [S25]; kept for initiation in the February 2025 update [S26]).
    two_specialist_under_age: int = 55
    # A pregnancy finding recorded more than 42 weeks ago cannot describe an ongoing pregnancy
    # (42+0 weeks is the post-term threshold); project decision, see docs/valproate.md.
    pregnancy_lookback_days: int = 294
    # SNOMED codes of the 2024 revised ARAF, signed by two specialists: NCL's label for
    # 2078951000000106 [S23] (FSN UNVERIFIED). Must also be in ValueSet valproate-araf.
    two_specialist_araf_codes: tuple[str, ...] = ("2078951000000106",)
    # Task.code of the suggested "complete the ARAF" task: the current (2024) form [S23].
    araf_task_code: str = "2078951000000106"
    # ServiceRequest.code of the suggested referral: NCL's valproate-related referral code [S23].
    # Its display is UNVERIFIED (clinical.md section 3.2), so no display is sent.
    referral_code: str = "1366381000000107"
    # An easy-read guide for the card (e.g. the trust's own); none was verified on gov.uk.
    easy_read_url: str | None = None
    easy_read_label: str = "Easy-read guide to valproate"


class News2Settings(BaseModel):
    """NEWS2 and Martha's Rule concern escalation (rules/concern.py; sources: docs/concern.md)."""

    # RCP NEWS2 Chart 4 [S8]: the longest minimum monitoring interval is 12-hourly (score 0),
    # so a reading older than that means the observation schedule was missed: not used.
    max_vitals_age_hours: int = Field(default=12, ge=1, le=72)
    # Martha's Rule: patients and families are asked at least daily [S17]; issue #7: concerns
    # from the last 24 hours raise an escalation.
    concern_window_hours: int = Field(default=24, ge=1, le=168)
    # A pregnancy finding recorded more than 42 weeks ago cannot describe an ongoing pregnancy
    # (42+0 weeks is the post-term threshold); same project decision as valproate.
    pregnancy_lookback_days: int = 294
    # The critical care outreach team that owns Martha's Rule calls (Task.owner): a CareTeam,
    # Organization or HealthcareService on the trust's FHIR server (profile escalation-task).
    outreach_team_reference: str = "CareTeam/critical-care-outreach"
    outreach_team_display: str = "Critical care outreach team"
    # The trust's own page for its outreach team or Call for Concern line, shown as a card link.
    outreach_link_url: str | None = None
    outreach_link_label: str = "Critical care outreach: how to reach the team"

    @field_validator("outreach_team_reference")
    @classmethod
    def _owner_type(cls, value: str) -> str:
        pattern = r"(CareTeam|Organization|HealthcareService)/[A-Za-z0-9\-.]{1,64}"
        if not re.fullmatch(pattern, value):
            raise ValueError(
                "outreach_team_reference must be CareTeam/<id>, Organization/<id> or "
                f"HealthcareService/<id>, not {value!r}"
            )
        return value


class HrtSettings(BaseModel):
    """HRT joint items and LNG-IUS change-by dates (rules/hrt.py; sources: docs/hrt.md).

    Source tags [Sn] are in shared/reference/clinical.md section 4.
    """

    # A 52 mg LNG-IUS protects the endometrium for 5 years from insertion in HRT, whatever the
    # contraceptive licence says (FSRH CEU statements [S33]; BMS 2024 [S34]).
    lng_ius_protection_years: int = Field(default=5, ge=1, le=8)
    # "Within 3 months" of the change-by date (issue #6), fixed as 90 days: warning when the
    # change-by date is 0-90 days away, critical the day after it.
    change_by_warning_days: int = Field(default=90, ge=0, le=366)
    # From this age a continuous regimen is offered alone; younger women get continuous and
    # sequential (sequential if still having periods). 55: the age by which natural fertility
    # has ended (FSRH: contraception may stop at 55 [S33]); project decision, see docs/hrt.md.
    continuous_from_age: int = Field(default=55, ge=40, le=70)
    # The progestogen of the recommended suggestion (first in the BMS 2024 table [S34]).
    preferred_progestogen: Literal[
        "micronised-progesterone", "medroxyprogesterone", "norethisterone"
    ] = "micronised-progesterone"


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
    # "memory": per process. "database": in the feedback database, shared by every worker
    # and host that uses it (needed when running several workers or replicas).
    jwt_replay_cache: Literal["memory", "database"] = "memory"

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
    news2: News2Settings = Field(default_factory=News2Settings)
    valproate: ValproateSettings = Field(default_factory=ValproateSettings)
    hrt: HrtSettings = Field(default_factory=HrtSettings)

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
