"""CDS Hooks 2.0 wire models (with 3.0's discovery ``version``).

Requests are validated here; responses are built from these models and
serialised without ``null`` or empty elements (CDS Hooks "Use of JSON"),
except the required ``"cards": []``.
"""

from __future__ import annotations

import re
import uuid
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic.alias_generators import to_camel

__all__ = [
    "Action",
    "Card",
    "CdsRequest",
    "CdsResponse",
    "Coding",
    "DiscoveryResponse",
    "FeedbackItem",
    "FeedbackRequest",
    "FhirAuthorization",
    "Link",
    "OverrideReason",
    "ServiceDescriptor",
    "Source",
    "Suggestion",
    "dump",
]


class WireModel(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="ignore")


class FhirAuthorization(WireModel):
    """OAuth 2.0 access token the EHR grants for its FHIR server (all fields REQUIRED but patient)."""

    # The spec spells these in snake_case on the wire.
    access_token: str = Field(alias="access_token", min_length=1, repr=False)
    token_type: Literal["Bearer"] = Field(alias="token_type")
    expires_in: int = Field(alias="expires_in", ge=0)
    scope: str = Field(min_length=1)
    subject: str = Field(min_length=1)
    patient: str | None = None


class CdsRequest(WireModel):
    """A hook call. ``context`` is checked per hook by ``fhir_safety.cds.hooks``."""

    hook: str = Field(min_length=1)
    hook_instance: str
    fhir_server: str | None = None
    fhir_authorization: FhirAuthorization | None = None
    context: dict[str, Any]
    prefetch: dict[str, Any] | None = None
    extension: dict[str, Any] | None = None  # tolerated and ignored

    @field_validator("hook_instance")
    @classmethod
    def _hook_instance_is_uuid(cls, value: str) -> str:
        try:
            uuid.UUID(value)
        except ValueError as exc:
            raise ValueError("hookInstance must be a UUID") from exc
        return value

    @field_validator("fhir_server")
    @classmethod
    def _fhir_server_is_http_url(cls, value: str | None) -> str | None:
        if value is not None and not re.match(r"^https?://[^\s/]+", value):
            raise ValueError("fhirServer must be an absolute http(s) URL")
        return value.rstrip("/") if value else value

    @model_validator(mode="after")
    def _server_required_with_authorization(self) -> CdsRequest:
        # Invariant cds-r-1: fhirServer is REQUIRED when fhirAuthorization is present.
        if self.fhir_authorization is not None and self.fhir_server is None:
            raise ValueError("fhirServer is required when fhirAuthorization is present")
        return self


class Coding(WireModel):
    system: str
    code: str
    display: str | None = None


class Source(WireModel):
    label: str
    url: str | None = None
    icon: str | None = None
    topic: Coding | None = None


class Action(WireModel):
    type: Literal["create", "update", "delete"]
    description: str
    resource: dict[str, Any] | None = None
    resource_id: str | None = None  # relative reference, for delete


class Suggestion(WireModel):
    label: str
    uuid: str | None = None
    is_recommended: bool | None = None
    actions: list[Action] | None = None


class Link(WireModel):
    label: str
    url: str
    type: Literal["absolute", "smart"]
    app_context: str | None = None
    autolaunchable: bool | None = None


class Card(WireModel):
    uuid: str | None = None
    summary: str = Field(max_length=139)
    detail: str | None = None
    indicator: Literal["info", "warning", "critical"]
    source: Source
    suggestions: list[Suggestion] | None = None
    selection_behavior: Literal["at-most-one", "any"] | None = None
    override_reasons: list[Coding] | None = None
    links: list[Link] | None = None


class CdsResponse(WireModel):
    cards: list[Card]
    system_actions: list[Action] | None = None


class ServiceDescriptor(WireModel):
    hook: str
    title: str | None = None
    description: str
    id: str
    prefetch: dict[str, str] | None = None
    usage_requirements: str | None = None
    version: str | None = None  # CDS Hooks 3.0 (RECOMMENDED); ignored by 2.0 clients


class DiscoveryResponse(WireModel):
    services: list[ServiceDescriptor]


class OverrideReason(WireModel):
    reason: Coding | None = None
    user_comment: str | None = None

    @model_validator(mode="after")
    def _reason_or_comment(self) -> OverrideReason:
        # Invariant cds-fb-3 (CDS Hooks 3.0): at least one of reason and userComment.
        if self.reason is None and not self.user_comment:
            raise ValueError("overrideReason needs a reason or a userComment")
        return self


class AcceptedSuggestion(WireModel):
    id: str = Field(min_length=1)


class FeedbackItem(WireModel):
    card: str = Field(min_length=1)
    outcome: Literal["accepted", "overridden"]
    accepted_suggestions: list[AcceptedSuggestion] | None = None
    override_reason: OverrideReason | None = None
    outcome_timestamp: datetime

    @field_validator("outcome_timestamp")
    @classmethod
    def _timestamp_has_zone(cls, value: datetime) -> datetime:
        if value.tzinfo is None:
            raise ValueError("outcomeTimestamp must be RFC 3339 with a time zone")
        return value

    @model_validator(mode="after")
    def _accepted_needs_suggestions(self) -> FeedbackItem:
        if self.outcome == "accepted" and not self.accepted_suggestions:
            raise ValueError("acceptedSuggestions is required when outcome is accepted")
        return self


class FeedbackRequest(WireModel):
    feedback: list[FeedbackItem] = Field(min_length=1)


def dump(model: BaseModel) -> dict[str, Any]:
    """JSON-ready dict with camelCase keys and no null or empty elements."""
    raw = model.model_dump(mode="json", by_alias=True, exclude_none=True)
    pruned = _prune(raw)
    if isinstance(model, CdsResponse):
        pruned.setdefault("cards", [])  # the one empty element the spec requires
    return pruned if isinstance(pruned, dict) else {}


def _prune(value: Any) -> Any:
    if isinstance(value, dict):
        pruned = {k: _prune(v) for k, v in value.items()}
        return {k: v for k, v in pruned.items() if v not in ({}, [], "", None)}
    if isinstance(value, list):
        return [_prune(v) for v in value]
    return value
