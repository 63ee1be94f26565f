"""Issuing ward links: shared by ``fhir-safety concern-link`` and ``POST /concern-links``."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from fhir_safety.concern_form.signing import LinkSigner, group_code
from fhir_safety.config import Settings
from fhir_safety.errors import ConfigurationError, InvalidRequestError

__all__ = ["IssuedLink", "issue_link", "link_base_url", "signer_for"]


@dataclass(frozen=True, slots=True)
class IssuedLink:
    patient_id: str
    ward: str
    code: str
    url: str
    expires_at: datetime

    @property
    def grouped_code(self) -> str:
        return group_code(self.code)


def signer_for(settings: Settings) -> LinkSigner:
    """The signer of the configured secret; ``ConfigurationError`` when there is none."""
    if settings.concern_form_secret is None:
        raise ConfigurationError(
            "the concern form has no secret: set FHIR_SAFETY_CONCERN_FORM_SECRET "
            '(at least 32 random characters, e.g. from `python -c "import secrets; '
            'print(secrets.token_urlsafe(32))"`)'
        )
    return LinkSigner(settings.concern_form_secret.get_secret_value())


def link_base_url(settings: Settings) -> str:
    """Where families open the form: concern_form.public_url, public_base_url, or host:port."""
    return (
        settings.concern_form.public_url
        or settings.public_base_url
        or f"http://{settings.host}:{settings.port}"
    )


def issue_link(
    settings: Settings, patient_id: str, ward: str, *, now: datetime, days: int | None = None
) -> IssuedLink:
    """A signed link for one patient on one ward, valid ``days`` (at most the lifetime)."""
    lifetime = settings.concern_form.link_lifetime_days
    days = lifetime if days is None else days
    if not 1 <= days <= lifetime:
        raise InvalidRequestError(f"a link can last 1 to {lifetime} days, not {days}")
    expires_at = (now + timedelta(days=days)).replace(microsecond=0)
    try:
        code = signer_for(settings).issue(patient_id, ward, expires_at=expires_at)
    except ValueError as exc:
        raise InvalidRequestError(str(exc)) from exc
    url = f"{link_base_url(settings)}/concern/{code}"
    return IssuedLink(patient_id, ward, code, url, expires_at)
