"""Answer one CDS Hooks call: check the context, gather data, run the rules, make cards."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from zoneinfo import ZoneInfo

import httpx

from fhir_safety.cds.cards import CardWithOrigin, to_cards
from fhir_safety.cds.catalogue import Catalogue, ServiceDefinition
from fhir_safety.cds.hooks import check_context, hook_spec
from fhir_safety.cds.models import CdsRequest, CdsResponse
from fhir_safety.config import Settings
from fhir_safety.fhir.client import FhirClient
from fhir_safety.observability import Metrics
from fhir_safety.record import RuleEnvironment
from fhir_safety.services.feedback_store import IssuedCard
from fhir_safety.services.record import FetchOutcome, build_record, resolve_prefetch
from fhir_safety.terminology import Terminology

__all__ = ["Evaluation", "HookEvaluator", "issued_cards"]

log = logging.getLogger(__name__)

# Share of the request deadline given to FHIR fetches; the rest is for rules and cards.
_FETCH_SHARE = 0.8


@dataclass(frozen=True, slots=True)
class Evaluation:
    response: CdsResponse
    cards: list[CardWithOrigin]
    service: ServiceDefinition


class HookEvaluator:
    def __init__(
        self,
        *,
        catalogue: Catalogue,
        settings: Settings,
        http: httpx.AsyncClient,
        terminology: Terminology,
        metrics: Metrics,
        clock: Callable[[], datetime],
    ) -> None:
        self._catalogue = catalogue
        self._settings = settings
        self._http = http
        self._env = RuleEnvironment(settings=settings, terminology=terminology)
        self._metrics = metrics
        self._clock = clock
        self._zone = ZoneInfo(settings.timezone)

    async def evaluate(self, service_id: str, request: CdsRequest) -> Evaluation:
        service = self._catalogue.find(service_id, request.hook)
        check_context(hook_spec(service.hook), request.context)
        started = time.perf_counter()
        outcome = await resolve_prefetch(
            service.prefetch,
            request.context,
            request.prefetch,
            self._fhir_client(request),
            timeout_seconds=self._settings.request_deadline_seconds * _FETCH_SHARE,
        )
        self._count_prefetch(service, outcome)
        record = build_record(
            hook=request.hook,
            context=request.context,
            templates=service.prefetch,
            outcome=outcome,
            now=self._clock(),
            zone=self._zone,
        )
        cards = to_cards(service.rules(record, self._env))
        for item in cards:
            self._metrics.cards.labels(service.id, item.rule_id, item.card.indicator).inc()
        log.info(
            "hook answered",
            extra={
                "fields": {
                    "hookInstance": request.hook_instance,
                    "service": service.id,
                    "hook": request.hook,
                    "cards": len(cards),
                    "ms": round((time.perf_counter() - started) * 1000, 2),
                }
            },
        )
        return Evaluation(CdsResponse(cards=[c.card for c in cards]), cards, service)

    def _fhir_client(self, request: CdsRequest) -> FhirClient | None:
        if request.fhir_server:
            token = request.fhir_authorization.access_token if request.fhir_authorization else None
            base = request.fhir_server
        elif self._settings.fhir_server_url:
            token, base = self._settings.fhir_server_token, self._settings.fhir_server_url
        else:
            return None
        return FhirClient(
            self._http,
            base,
            access_token=token,
            max_response_bytes=self._settings.max_fhir_response_bytes,
            max_pages=self._settings.max_fhir_pages,
        )

    def _count_prefetch(self, service: ServiceDefinition, outcome: FetchOutcome) -> None:
        for template in service.prefetch:
            source = (
                "failed"
                if template.key in outcome.unavailable
                else outcome.sources.get(template.key, "none")
            )
            self._metrics.prefetch.labels(service.id, template.key, source).inc()


def issued_cards(evaluation: Evaluation, issued_at: datetime) -> list[IssuedCard]:
    """What the feedback store keeps about each card: no patient data."""
    return [
        IssuedCard(
            card_uuid=item.card.uuid or "",
            service_id=evaluation.service.id,
            hook=evaluation.service.hook,
            rule_id=item.rule_id,
            indicator=item.card.indicator,
            issued_at=issued_at,
        )
        for item in evaluation.cards
    ]
