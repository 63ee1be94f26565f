"""Build a ``PatientRecord`` from the EHR's prefetch, falling back to its FHIR server.

CDS Hooks 2.0 §"Prefetch": use what the client sent; fetch what is absent or
failed (an OperationOutcome, or something that is not FHIR) from ``fhirServer``
with the granted bearer token, in parallel and under the request deadline;
``null`` means "no data". If a required key cannot be had, answer 412
(``DataUnavailableError``). An optional key that cannot be had is reported to
the rules as unavailable, so they can say which check did not run.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal
from zoneinfo import ZoneInfo

from pydantic import ValidationError

from fhir_safety.cds.prefetch import PrefetchTemplate, render_template
from fhir_safety.errors import DataUnavailableError, FhirError, InvalidResourceError
from fhir_safety.fhir import resources as fhir
from fhir_safety.fhir.client import FhirClient
from fhir_safety.record import PatientRecord

__all__ = ["FetchOutcome", "build_record", "parse_resource", "resolve_prefetch"]

log = logging.getLogger(__name__)

MODELS: Mapping[str, type[fhir.Resource]] = {
    model.__name__: model
    for model in (
        fhir.Patient,
        fhir.Encounter,
        fhir.CarePlan,
        fhir.Goal,
        fhir.Condition,
        fhir.Procedure,
        fhir.MedicationRequest,
        fhir.MedicationStatement,
        fhir.Medication,
        fhir.Device,
        fhir.Observation,
        fhir.Flag,
        fhir.ServiceRequest,
        fhir.Task,
        fhir.AdverseEvent,
        fhir.Consent,
        fhir.RelatedPerson,
    )
}

Source = Literal["prefetch", "fhir-server", "none"]


@dataclass
class FetchOutcome:
    """Raw resources per prefetch key, where each came from, and what could not be had."""

    resources: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    sources: dict[str, Source] = field(default_factory=dict)
    unavailable: dict[str, str] = field(default_factory=dict)


async def resolve_prefetch(
    templates: Sequence[PrefetchTemplate],
    context: Mapping[str, Any],
    prefetch: Mapping[str, Any] | None,
    fhir_client: FhirClient | None,
    *,
    timeout_seconds: float,
) -> FetchOutcome:
    outcome = FetchOutcome()
    supplied = prefetch or {}
    pending: list[tuple[PrefetchTemplate, str, dict[str, Any] | None]] = []
    for template in templates:
        query = render_template(template, context)
        if query is None:  # an optional token (e.g. encounterId) is absent: nothing to fetch
            outcome.resources[template.key] = []
            outcome.sources[template.key] = "none"
            continue
        first_page = _take_supplied(template, supplied, outcome)
        if first_page is not None or template.key not in outcome.resources:
            pending.append((template, query, first_page))
    results = await asyncio.gather(
        *(
            _fetch_key(template, query, page, fhir_client, timeout_seconds)
            for template, query, page in pending
        )
    )
    for (template, _, page), result in zip(pending, results, strict=True):
        if isinstance(result, str):
            outcome.unavailable[template.key] = result
            continue
        if page is not None:
            outcome.resources[template.key].extend(result)
        else:
            outcome.resources[template.key] = result
            outcome.sources[template.key] = "fhir-server"
    return outcome


def _take_supplied(
    template: PrefetchTemplate, supplied: Mapping[str, Any], outcome: FetchOutcome
) -> dict[str, Any] | None:
    """Use the client's value for this key if usable; return a Bundle whose next pages are due."""
    if template.key not in supplied:
        return None
    value = supplied[template.key]
    location = f"prefetch.{template.key}"
    if value is None:  # the client ran the query and found nothing
        outcome.resources[template.key] = []
        outcome.sources[template.key] = "prefetch"
        return None
    if not isinstance(value, dict) or not isinstance(value.get("resourceType"), str):
        log.warning("prefetch key %s is not a FHIR resource; fetching it", template.key)
        return None
    kind = value["resourceType"]
    if kind == "OperationOutcome":  # the client's own query failed
        return None
    if kind == "Bundle":
        resources = _bundle_resources(value, location)
        outcome.resources[template.key] = resources
        outcome.sources[template.key] = "prefetch"
        return value if _has_next(value) else None
    if kind != template.resource_type:
        raise InvalidResourceError(
            f"{location} should be a {template.resource_type}, not a {kind}", location=location
        )
    outcome.resources[template.key] = [value]
    outcome.sources[template.key] = "prefetch"
    return None


async def _fetch_key(
    template: PrefetchTemplate,
    query: str,
    first_page: dict[str, Any] | None,
    fhir_client: FhirClient | None,
    timeout_seconds: float,
) -> list[dict[str, Any]] | str:
    """The key's resources, or a reason (str) why they could not be had."""
    if fhir_client is None:
        return "no prefetch and no FHIR server to fetch from"
    try:
        async with asyncio.timeout(timeout_seconds):
            if first_page is not None:
                return await fhir_client.follow_pages(first_page, query)
            if template.is_read:
                resource_type, _, resource_id = query.partition("/")
                return [await fhir_client.read(resource_type, resource_id)]
            return await fhir_client.search_all(query)
    except TimeoutError:
        return f"the FHIR server did not answer within {timeout_seconds:.1f} s"
    except FhirError as exc:
        return f"the FHIR server could not provide it ({exc.message})"


def _bundle_resources(bundle: dict[str, Any], location: str) -> list[dict[str, Any]]:
    entries = bundle.get("entry") or []
    if not isinstance(entries, list):
        raise InvalidResourceError(f"{location}.entry must be an array", location=location)
    resources = []
    for index, entry in enumerate(entries):
        resource = entry.get("resource") if isinstance(entry, dict) else None
        if not isinstance(resource, dict):
            raise InvalidResourceError(
                f"{location}.entry[{index}] has no resource", location=location
            )
        if (entry.get("search") or {}).get("mode", "match") == "match":
            resources.append(resource)
    return resources


def _has_next(bundle: dict[str, Any]) -> bool:
    return any(
        isinstance(link, dict) and link.get("relation") == "next"
        for link in bundle.get("link") or []
    )


def build_record(
    *,
    hook: str,
    context: Mapping[str, Any],
    templates: Sequence[PrefetchTemplate],
    outcome: FetchOutcome,
    now: datetime,
    zone: ZoneInfo,
) -> PatientRecord:
    """Parse what was gathered; 412 when a required key is missing."""
    for template in templates:
        reason = outcome.unavailable.get(template.key)
        if reason is not None and template.required:
            raise DataUnavailableError(
                f"required data '{template.key}' ({template.resource_type}) is unavailable: {reason}",
                location=f"prefetch.{template.key}",
            )
    by_type: dict[str, dict[str, fhir.Resource]] = {}
    for template in templates:
        origin = outcome.sources.get(template.key, "fhir-server")
        for index, raw in enumerate(outcome.resources.get(template.key, [])):
            location = f"prefetch.{template.key}[{index}]"
            parsed = _parse_gathered(raw, location, from_client=origin == "prefetch")
            if parsed is not None:
                by_type.setdefault(parsed.resource_type, {})[parsed.id or location] = parsed
    unavailable = {
        template.resource_type: reason
        for template in templates
        if (reason := outcome.unavailable.get(template.key)) is not None
    }
    patients = [r for r in by_type.get("Patient", {}).values() if isinstance(r, fhir.Patient)]
    return PatientRecord(
        hook=hook,
        context=context,
        now=now,
        zone=zone,
        patient=patients[0] if patients else None,
        resources={kind: tuple(items.values()) for kind, items in by_type.items()},
        draft_orders=_draft_orders(context),
        unavailable=unavailable,
    )


def _parse_gathered(
    raw: dict[str, Any], location: str, *, from_client: bool
) -> fhir.Resource | None:
    try:
        return parse_resource(raw, location)
    except InvalidResourceError:
        if from_client:
            raise
        # A server's malformed resource is its problem; skip it, but never silently.
        log.warning("skipping an invalid resource from the FHIR server at %s", location)
        return None


def parse_resource(raw: Any, location: str) -> fhir.Resource | None:
    """A narrow model for a resource type the rules read; None for other types."""
    if not isinstance(raw, dict):
        raise InvalidResourceError(f"{location} is not a FHIR resource", location=location)
    model = MODELS.get(str(raw.get("resourceType")))
    if model is None:
        return None
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        path = ".".join(str(part) for part in first["loc"])
        raise InvalidResourceError(
            f"{location} is not a valid {raw['resourceType']}: {path}: {first['msg']}",
            location=location,
        ) from exc


def _draft_orders(context: Mapping[str, Any]) -> tuple[fhir.Resource, ...]:
    bundle = context.get("draftOrders")
    if not isinstance(bundle, dict):
        return ()
    orders = []
    for index, entry in enumerate(bundle.get("entry") or []):
        parsed = parse_resource(entry.get("resource"), f"context.draftOrders.entry[{index}]")
        if parsed is not None:
            orders.append(parsed)
    return tuple(orders)
