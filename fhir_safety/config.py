"""Settings: environment (``FHIR_SAFETY_*``), an optional TOML file, and defaults.

Nothing is read at import time: ``load_settings()`` builds a ``Settings`` and
``create_app(settings)`` takes it, so tests build their own.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field, SecretStr, ValidationInfo, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from fhir_safety.errors import ConfigurationError

__all__ = [
    "BulkExportSettings",
    "DashboardSettings",
    "EngagementStepDue",
    "HrtSettings",
    "IncidentSettings",
    "LongStaySettings",
    "News2Settings",
    "NhsEnglandRegion",
    "PelvicMeshSettings",
    "ReasonableAdjustmentsSettings",
    "Settings",
    "StorySettings",
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
    # The dm+d products the suggestions prescribe, strength in mg -> code (clinical.md section
    # 4.2 [S32]: Utrogestan 100 mg capsules; medroxyprogesterone 2.5/5/10 mg and norethisterone
    # 5 mg tablets). Each must be in ValueSet progestogens-endometrial (a unit test checks). A
    # dose is made of whole units of the largest strength that divides it (MPA 20 mg = 2 x 10 mg).
    progestogen_products: dict[str, dict[str, str]] = Field(
        default_factory=lambda: {
            "micronised-progesterone": {"100": "11758911000001105"},
            "medroxyprogesterone": {"10": "325601006", "5": "325609008", "2.5": "325603009"},
            "norethisterone": {"5": "325611004"},
        }
    )


class EngagementStepDue(BaseModel):
    """When one family-engagement step falls due: ``days`` after (or, negative, before) an anchor.

    Anchors: ``incident-known`` (AdverseEvent.recordedDate, else detected, else date: when the
    organisation knew), ``response-opened`` (the learning-response Task's authoredOn),
    ``response-due`` (the learning response's due date).
    """

    anchor: Literal["incident-known", "response-opened", "response-due"]
    days: int = Field(ge=-365, le=730)


def _default_step_due() -> dict[str, EngagementStepDue]:
    # LOCAL POLICY defaults (docs/incidents.md). PSIRF's engagement guide [S50] asks for
    # timeframes agreed with those affected and sets no national deadline for these steps.
    return {
        # Duty of Candour, Reg 20(2): tell the relevant person "as soon as reasonably
        # practicable" (no day count in the regulation); 10 days is local policy.
        "first-contact": EngagementStepDue(anchor="incident-known", days=10),
        "questions-recorded": EngagementStepDue(anchor="response-opened", days=20),
        "terms-of-reference-shared": EngagementStepDue(anchor="response-opened", days=28),
        "family-evidence-taken": EngagementStepDue(anchor="response-opened", days=42),
        # "No surprises": the draft goes to the family before the final, with time to comment.
        "draft-shared": EngagementStepDue(anchor="response-due", days=-14),
        "final-shared": EngagementStepDue(anchor="response-due", days=0),
    }


def _default_prerequisites() -> dict[str, tuple[str, ...]]:
    return {"final-shared": ("draft-shared",)}


class IncidentSettings(BaseModel):
    """Family engagement in incident learning responses (rules/incident_engagement.py).

    Every interval is a configurable default and LOCAL POLICY unless its comment says
    otherwise: NHS England's PSIRF engagement guide [S50] (clinical.md section 8) asks for
    timeframes agreed with the patient and family, not national deadlines. A due date agreed
    with the family is written on the step's Task (``restriction.period.end``) and wins.
    """

    # Step code (CodeSystem family-engagement-step) -> when it falls due.
    step_due: dict[str, EngagementStepDue] = Field(default_factory=_default_step_due)
    # A step may not be recorded as done before these steps are done or declined.
    # "No surprises": the family see the draft before the final report [S50].
    prerequisites: dict[str, tuple[str, ...]] = Field(default_factory=_default_prerequisites)
    # Length of a learning response when its Task carries no due date (local policy; the
    # PSIRF standards leave timescales to local plans agreed with those affected [S50]).
    response_days: dict[str, int] = Field(
        default_factory=lambda: {
            "psii": 90,
            "after-action-review": 30,
            "swarm-huddle": 14,
            "mdt-review": 60,
            "thematic-review": 90,
        }
    )
    default_response_days: int = Field(default=90, ge=1, le=730)
    # A step due within this many days is reported as "due soon".
    due_soon_days: int = Field(default=7, ge=0, le=90)
    # The trust's own page on how it involves patients and families, shown as a card link.
    engagement_link_url: str | None = None
    engagement_link_label: str = "How we involve patients and families in investigations"


class StorySettings(BaseModel):
    """Safety signals in patient stories (rules/story_signals.py; docs/stories.md)."""

    # Score at or above which a story is flagged. Chosen on the development half of the
    # labelled set only; precision and recall at this threshold are in docs/stories.md.
    threshold: float = Field(default=2.0, gt=0)
    # A JSON lexicon that replaces the shipped one (same shape as story_lexicon.LEXICON).
    lexicon_file: Path | None = None


# The seven NHS England regions (since 2020: HSJ, "Seven regional teams will be locus of
# decision making", https://www.hsj.co.uk/policy-and-regulation/seven-regional-teams-will-be-
# locus-of-decision-making/7022488.article). The specialist mesh centres cover all of them
# (NHS England, clinical.md section 7 [S48]).
NhsEnglandRegion = Literal[
    "North East and Yorkshire",
    "North West",
    "Midlands",
    "East of England",
    "London",
    "South East",
    "South West",
]


class ReasonableAdjustmentsSettings(BaseModel):
    """Reasonable Adjustment Flag (rules/reasonable_adjustments.py; docs/reasonable-adjustments.md)."""

    # FlagConsent.policy (policy.uri is 1..1 in NHS England's FlagConsent profile): the values of
    # the NHS England RA IG's consent examples (NHSDigital/ra-sandbox@cf0e0af:
    # input/fsh/examples/RAConsentExample1.fsh [S45]). A trust may point at its own policy.
    consent_policy_authority: str = "https://www.gov.uk/"
    consent_policy_uri: str = (
        "https://www.gov.uk/government/uploads/system/uploads/attachment_data/file/535024/"
        "data-security-review.pdf"
    )


class PelvicMeshSettings(BaseModel):
    """Pelvic mesh referrals (rules/pelvic_mesh.py; docs/pelvic-mesh.md)."""

    # The trust's NHS England region: the specialist mesh centre(s) of this region are offered
    # when the patient's address names no region. None: offer the choice of all nine centres.
    default_region: NhsEnglandRegion | None = None


class ConcernFormSettings(BaseModel):
    """The patient and family concern form (fhir_safety/concern_form; docs/concern-form.md)."""

    # How long a ward link works. Issue #7 brief: "e.g. valid 7 days": long enough for a week of
    # the daily Martha's Rule question [S17], short enough that a lost card soon stops working.
    # Lowering it also shortens links already handed out (they are checked against it).
    link_lifetime_days: int = Field(default=7, ge=1, le=28)
    # The base URL families open (``https://concern.trust.nhs.uk``). Unset: public_base_url,
    # else http://host:port. Links are printed as ``{base}/concern/{code}``.
    public_url: str | None = None
    # The trust's Martha's Rule line (24/7 by definition [S16]): shown on every page as a tel:
    # link ("call {marthas_rule_text} on {marthas_rule_phone}"). Unset: "speak to a nurse" only.
    marthas_rule_phone: str | None = Field(default=None, pattern=r"^\+?[0-9][0-9 ()-]{2,29}$")
    marthas_rule_text: str = Field(default="the Martha's Rule line", min_length=1, max_length=80)
    # A form page may be left open this long before Send asks to confirm again (CSRF token age).
    form_token_minutes: int = Field(default=120, ge=5, le=1440)
    # Answers accepted per ward link per hour (several relatives may share one link).
    submissions_per_hour: int = Field(default=6, ge=1, le=100)
    # Worried/worse: create the Martha's Rule Task at once (same deterministic Task as the
    # Subscription path, so never twice). Off: rely on the Subscription alone.
    escalate_on_submit: bool = True
    # After a worried/worse answer, how long the form waits to see the Task on the server
    # before it says "being asked" (Subscription path) instead of "asked".
    escalation_wait_seconds: float = Field(default=5.0, ge=0, le=20)
    # Only take answers for a patient with an Encounter in progress: a link kept after
    # discharge must not send the outreach team to an empty bed.
    require_admission: bool = True

    @field_validator("public_url")
    @classmethod
    def _strip_slash(cls, value: str | None) -> str | None:
        return value.rstrip("/") if value else value


class BulkExportSettings(BaseModel):
    """FHIR Bulk Data ``$export`` as the registry uses it (fhir/bulk.py; docs/valproate.md)."""

    # "auto": use $export when the server's CapabilityStatement offers it, else paged search;
    # "export": $export or an error; "search": paged search only.
    registry_method: Literal["auto", "export", "search"] = "auto"
    # Give up on (and cancel) an export that has not finished in this long.
    max_wait_seconds: float = Field(default=3600.0, gt=0)
    # Polling starts at first_poll_seconds and doubles up to max_poll_seconds. A 429's
    # Retry-After is obeyed up to that cap; a 202's is a hint only (HAPI says 120 s for any job).
    # A cap of 10 s keeps the wait after the job ends short: at 30 s a 10k-patient export on
    # HAPI took 64 s of which up to 30 were waiting (docs/benchmarks.md); a status GET is cheap.
    first_poll_seconds: float = Field(default=0.5, gt=0)
    max_poll_seconds: float = Field(default=10.0, gt=0)
    # Stop downloading once the export's files add up to this many bytes.
    max_bytes: int = Field(default=10_000_000_000, gt=0)


class DashboardSettings(BaseModel):
    """The population dashboards in the browser (fhir_safety/web; docs/dashboards.md)."""

    # Who may open the pages. "loopback": only a browser on this machine (a demo); "bearer": a
    # JWT from one of ``issuers`` with ``aud`` = ``audience`` in the Authorization header (put
    # there by an OIDC reverse proxy); "auto": bearer when issuers are configured, else loopback.
    auth: Literal["auto", "loopback", "bearer"] = "auto"
    # The ``aud`` of the tokens the proxy forwards (normally the OIDC client id). Needed for bearer.
    audience: str | None = Field(default=None, validate_default=True)
    # Where the population comes from. "auto": the FHIR server when ``fhir_server_url`` is set,
    # else the folder of Bulk Data NDJSON files below (the committed demo population by default).
    population_source: Literal["auto", "fhir-server", "ndjson"] = "auto"
    ndjson_dir: Path = REPO_ROOT / "data" / "demo-population"
    # How many patients' records are read from the FHIR server at once.
    fhir_concurrency: int = Field(default=8, ge=1, le=64)

    @field_validator("audience")
    @classmethod
    def _audience_for_bearer(cls, value: str | None, info: ValidationInfo) -> str | None:
        if info.data.get("auth") == "bearer" and not value:
            raise ValueError("dashboards.auth 'bearer' needs dashboards.audience (the token's aud)")
        return value


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
    # HMAC key of the concern form's ward links and form tokens (at least 32 characters).
    # Rotating it revokes every link handed out (docs/concern-form.md).
    concern_form_secret: SecretStr | None = Field(default=None, min_length=32)

    long_stay: LongStaySettings = Field(default_factory=LongStaySettings)
    news2: News2Settings = Field(default_factory=News2Settings)
    valproate: ValproateSettings = Field(default_factory=ValproateSettings)
    hrt: HrtSettings = Field(default_factory=HrtSettings)
    reasonable_adjustments: ReasonableAdjustmentsSettings = Field(
        default_factory=ReasonableAdjustmentsSettings
    )
    pelvic_mesh: PelvicMeshSettings = Field(default_factory=PelvicMeshSettings)
    incidents: IncidentSettings = Field(default_factory=IncidentSettings)
    stories: StorySettings = Field(default_factory=StorySettings)
    dashboards: DashboardSettings = Field(default_factory=DashboardSettings)
    bulk_export: BulkExportSettings = Field(default_factory=BulkExportSettings)
    concern_form: ConcernFormSettings = Field(default_factory=ConcernFormSettings)

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
