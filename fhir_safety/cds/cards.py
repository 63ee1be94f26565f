"""Findings -> CDS Hooks cards. Pure, apart from the uuids it mints.

uuids are minted here (not in the rules) so the rules stay deterministic; the
``IssuedCard`` records returned alongside let feedback about a card uuid be
traced back to the service and rule that produced it.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from fhir_safety.cds import models
from fhir_safety.cds.override_reasons import NON_ADHERENCE_SYSTEM, OVERRIDE_REASON_DISPLAYS
from fhir_safety.domain import Action, CardLink, Finding, Suggestion

__all__ = ["CardWithOrigin", "to_action", "to_cards"]


@dataclass(frozen=True, slots=True)
class CardWithOrigin:
    card: models.Card
    rule_id: str


def to_cards(
    findings: Sequence[Finding], *, new_uuid: Callable[[], str] = lambda: str(uuid.uuid4())
) -> list[CardWithOrigin]:
    """One card per finding, most urgent first (stable within a severity)."""
    ordered = sorted(findings, key=lambda f: -f.severity.rank)
    return [CardWithOrigin(_to_card(f, new_uuid), f.rule_id) for f in ordered]


def _to_card(finding: Finding, new_uuid: Callable[[], str]) -> models.Card:
    suggestions = [_to_suggestion(s, new_uuid) for s in finding.suggestions]
    return models.Card(
        uuid=new_uuid(),
        summary=finding.summary,
        detail=finding.detail or None,
        indicator=finding.severity.value,
        source=models.Source(
            label=finding.source_label,
            url=finding.source_url,
            topic=models.Coding(
                system=finding.topic.system, code=finding.topic.code, display=finding.topic.display
            ),
        ),
        suggestions=suggestions or None,
        # CDS Hooks 2.0 cds-resp-6: selectionBehavior MUST be present with suggestions.
        selection_behavior=finding.selection_behavior if suggestions else None,
        override_reasons=[_override_reason(code) for code in finding.override_reasons] or None,
        links=[_to_link(link) for link in finding.links] or None,
    )


def _to_suggestion(suggestion: Suggestion, new_uuid: Callable[[], str]) -> models.Suggestion:
    return models.Suggestion(
        label=suggestion.label,
        uuid=new_uuid(),
        is_recommended=suggestion.is_recommended or None,
        actions=[to_action(a) for a in suggestion.actions] or None,
    )


def to_action(action: Action) -> models.Action:
    return models.Action(
        type=action.type,
        description=action.description,
        resource=dict(action.resource) if action.resource is not None else None,
        resource_id=action.resource_id,
    )


def _override_reason(code: str) -> models.Coding:
    # KeyError here is a programming error caught by the card tests, never user input.
    return models.Coding(
        system=NON_ADHERENCE_SYSTEM, code=code, display=OVERRIDE_REASON_DISPLAYS[code]
    )


def _to_link(link: CardLink) -> models.Link:
    return models.Link(
        label=link.label,
        url=link.url,
        type=link.type,
        app_context=link.app_context if link.type == "smart" else None,
    )
