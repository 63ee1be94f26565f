"""Named types shared by every layer: what a rule finds, and what it suggests.

Rules return ``Finding`` objects. They know nothing about CDS Hooks wire
format; ``fhir_safety.cds.cards`` turns findings into cards (and adds the
uuids, so rules stay deterministic).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Literal

__all__ = [
    "PROJECT_CANONICAL",
    "Action",
    "CardLink",
    "Finding",
    "Severity",
    "Suggestion",
    "Topic",
]

# Canonical base for the project's own conformance resources (profiles, CodeSystems, ValueSets).
PROJECT_CANONICAL = "https://fhir-safety.org/fhir"

JsonObject = Mapping[str, Any]


class Severity(StrEnum):
    """Card indicator, in increasing order of urgency."""

    INFO = "info"
    WARNING = "warning"
    CRITICAL = "critical"

    @property
    def rank(self) -> int:
        return _SEVERITY_RANK[self]


_SEVERITY_RANK = {Severity.INFO: 0, Severity.WARNING: 1, Severity.CRITICAL: 2}


@dataclass(frozen=True, slots=True)
class Topic:
    """A card topic: a code in the project's card-topic CodeSystem."""

    code: str
    display: str
    system: str = f"{PROJECT_CANONICAL}/CodeSystem/card-topic"


@dataclass(frozen=True, slots=True)
class Action:
    """One FHIR change a suggestion proposes (CDS Hooks Action)."""

    type: Literal["create", "update", "delete"]
    description: str
    resource: JsonObject | None = None
    resource_id: str | None = None  # relative reference, for deletes


@dataclass(frozen=True, slots=True)
class Suggestion:
    """A named set of actions the clinician can accept together."""

    key: str  # stable name within the finding, e.g. "create-discharge-plan"
    label: str
    actions: tuple[Action, ...]
    is_recommended: bool = False


@dataclass(frozen=True, slots=True)
class CardLink:
    label: str
    url: str
    type: Literal["absolute", "smart"] = "absolute"
    app_context: str | None = None


@dataclass(frozen=True, slots=True)
class Finding:
    """What one rule found about one patient.

    ``summary`` becomes the card summary and must be under 140 characters;
    ``detail`` is GitHub-flavoured markdown. ``evidence`` lists the resources
    the finding rests on (``Encounter/123``) for audit and for the detail text.
    """

    rule_id: str
    severity: Severity
    summary: str
    detail: str
    topic: Topic
    source_label: str
    source_url: str
    suggestions: tuple[Suggestion, ...] = ()
    selection_behavior: Literal["at-most-one", "any"] = "at-most-one"
    links: tuple[CardLink, ...] = ()
    override_reasons: tuple[str, ...] = ()  # codes from HL7 non-adherence-reason-codes
    evidence: tuple[str, ...] = ()
    facts: Mapping[str, Any] = field(default_factory=dict)  # machine-readable figures

    def __post_init__(self) -> None:
        if len(self.summary) >= 140:
            raise ValueError(f"card summary must be under 140 characters: {self.summary!r}")
