"""The HRT pharmacy check as a FHIR operation: ``MedicationRequest/$hrt-check``.

Input (the body of ``POST /fhir-safety/MedicationRequest/$hrt-check``):

- a **MedicationRequest**: the prescription being dispensed. The rest of the patient's record
  (other prescriptions, procedures, conditions, devices) is read from the configured FHIR
  server (``fhir_server_url``); without one, the checks that need it say they could not run.
- a **Bundle** (any type): every MedicationRequest in it is being dispensed, and the Bundle is
  taken as the patient's whole record (what it does not hold is taken as absent).

Output: an OperationOutcome, one issue per finding of the ``hrt-joint-items`` order-dispatch
rules (critical -> error, warning -> warning, info -> information; a check that could not run ->
warning/incomplete), the label wording as an information issue, or a single information issue
when there is nothing to report. The check ran, so the HTTP status is 200 whatever it found.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx

from fhir_safety.cds.catalogue import CATALOGUE
from fhir_safety.config import Settings
from fhir_safety.domain import Finding, Severity
from fhir_safety.errors import InvalidRequestError
from fhir_safety.fhir.client import FhirClient
from fhir_safety.record import RuleEnvironment
from fhir_safety.services.record import build_record, resolve_prefetch
from fhir_safety.terminology import Terminology

__all__ = ["SERVICE_ID", "findings_to_outcome", "run_hrt_check"]

SERVICE_ID = "hrt-joint-items"
_HOOK = "order-dispatch"
# A placeholder for the order-dispatch context's required performer: the operation's caller.
_PERFORMER = "Organization/dispensing-pharmacy"
_ISSUE = {
    Severity.CRITICAL: ("error", "business-rule"),
    Severity.WARNING: ("warning", "business-rule"),
    Severity.INFO: ("information", "informational"),
}


async def run_hrt_check(
    body: Mapping[str, Any],
    *,
    settings: Settings,
    http: httpx.AsyncClient,
    clock: Callable[[], datetime],
) -> dict[str, Any]:
    """Check the MedicationRequest(s) in ``body`` as a pharmacy would; an OperationOutcome."""
    orders, record_resources = _split(body)
    patient_id = _patient_id(orders)
    service = CATALOGUE.find(SERVICE_ID, _HOOK)
    context = {
        "patientId": patient_id,
        "dispatchedOrders": [f"MedicationRequest/{order['id']}" for order in orders],
        "performer": _PERFORMER,
        # The orders travel as draft orders, so the rule sees them even when no server holds them.
        "draftOrders": {
            "resourceType": "Bundle",
            "type": "collection",
            "entry": [{"resource": order} for order in orders],
        },
    }
    if record_resources is None:  # a lone MedicationRequest: the rest from the FHIR server
        prefetch: dict[str, Any] = {}
        client = _fhir_client(settings, http)
    else:
        prefetch = {
            template.key: _searchset(
                [r for r in record_resources if r.get("resourceType") == template.resource_type]
            )
            for template in service.prefetch
        }
        client = None
    outcome = await resolve_prefetch(
        service.prefetch,
        context,
        prefetch,
        client,
        timeout_seconds=settings.request_deadline_seconds * 0.8,
    )
    record = build_record(
        hook=_HOOK,
        context=context,
        templates=service.prefetch,
        outcome=outcome,
        now=clock(),
        zone=ZoneInfo(settings.timezone),
    )
    env = RuleEnvironment(settings=settings, terminology=_terminology(settings.terminology_dir))
    return findings_to_outcome(service.rules(record, env))


def findings_to_outcome(findings: Sequence[Finding]) -> dict[str, Any]:
    """An OperationOutcome with one issue per finding, most urgent first."""
    issues = []
    for finding in sorted(findings, key=lambda f: -f.severity.rank):
        severity, code = _ISSUE[finding.severity]
        if finding.rule_id.endswith("could-not-check"):
            severity, code = "warning", "incomplete"
        text = finding.summary
        if "label" in finding.facts:
            text = f"Label: {finding.facts['label']}"
        issues.append(
            {
                "severity": severity,
                "code": code,
                "details": {
                    "coding": [
                        {
                            "system": finding.topic.system,
                            "code": finding.topic.code,
                            "display": finding.topic.display,
                        }
                    ],
                    "text": text,
                },
                "diagnostics": finding.detail,
            }
        )
    if not issues:
        issues.append(
            {
                "severity": "information",
                "code": "informational",
                "details": {"text": "No HRT safety issue found for the dispensed items"},
            }
        )
    return {"resourceType": "OperationOutcome", "issue": issues}


def _split(body: Mapping[str, Any]) -> tuple[list[dict[str, Any]], list[dict[str, Any]] | None]:
    """(orders to check, the record from a Bundle or None for a lone MedicationRequest)."""
    kind = body.get("resourceType")
    if kind == "MedicationRequest":
        return [_with_id(dict(body), 0)], None
    if kind != "Bundle":
        raise InvalidRequestError(
            f"$hrt-check takes a MedicationRequest or a Bundle, not a {kind}",
            location="resourceType",
        )
    resources = []
    for index, entry in enumerate(body.get("entry") or []):
        resource = entry.get("resource") if isinstance(entry, dict) else None
        if not isinstance(resource, dict) or not isinstance(resource.get("resourceType"), str):
            raise InvalidRequestError(
                f"Bundle.entry[{index}] has no resource", location=f"Bundle.entry[{index}]"
            )
        resources.append(resource)
    orders = [
        _with_id(r, index)
        for index, r in enumerate(resources)
        if r["resourceType"] == "MedicationRequest"
    ]
    if not orders:
        raise InvalidRequestError("the Bundle holds no MedicationRequest to check")
    others = [r for r in resources if r["resourceType"] != "MedicationRequest"]
    return orders, others


def _with_id(resource: dict[str, Any], index: int) -> dict[str, Any]:
    """Orders are referred to by id; one without an id (not yet stored) gets a local one."""
    if not resource.get("id"):
        resource = {**resource, "id": f"hrt-check-{index + 1}"}
    return resource


def _patient_id(orders: Sequence[Mapping[str, Any]]) -> str:
    patients = set()
    for order in orders:
        subject = order.get("subject")
        reference = subject.get("reference") if isinstance(subject, dict) else None
        if not isinstance(reference, str) or "Patient/" not in reference:
            raise InvalidRequestError(
                "each MedicationRequest needs subject.reference 'Patient/<id>'",
                location="MedicationRequest.subject",
            )
        patients.add(reference.rstrip("/").rsplit("/", 1)[-1])
    if len(patients) != 1:
        raise InvalidRequestError("the MedicationRequests are for more than one patient")
    return patients.pop()


def _searchset(resources: list[dict[str, Any]]) -> dict[str, Any] | None:
    if not resources:
        return None  # CDS Hooks prefetch: null = the query ran and found nothing
    return {
        "resourceType": "Bundle",
        "type": "searchset",
        "total": len(resources),
        "entry": [{"resource": r, "search": {"mode": "match"}} for r in resources],
    }


def _fhir_client(settings: Settings, http: httpx.AsyncClient) -> FhirClient | None:
    if not settings.fhir_server_url:
        return None
    return FhirClient(
        http,
        settings.fhir_server_url,
        access_token=settings.fhir_server_token,
        max_response_bytes=settings.max_fhir_response_bytes,
        max_pages=settings.max_fhir_pages,
    )


@functools.lru_cache(maxsize=4)
def _terminology(directory: Path) -> Terminology:
    """The same files the hook services load (read once per process)."""
    return Terminology.load(directory)
