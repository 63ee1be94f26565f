"""``fhir-safety concern-link --patient ID --ward W``: a ward link for the concern form.

Prints the URL to put in a QR code or a text message, the code grouped in fours for a card,
and when it stops working. With a FHIR server configured (``--fhir-server`` or the
``fhir_server_url`` setting) it first reads the patient and prints their first name, so that
the member of staff can check it is the right person before handing it out.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from typing import Any
from zoneinfo import ZoneInfo

import httpx

from fhir_safety.concern_form.links import IssuedLink, issue_link
from fhir_safety.config import Settings
from fhir_safety.errors import InvalidRequestError
from fhir_safety.fhir.client import FhirClient
from fhir_safety.fhir.resources import now_utc
from fhir_safety.services.concern_submission import (
    ConcernSubmitter,
    FormPatient,
    PatientNotReachableError,
)
from fhir_safety.terminology import Terminology

__all__ = ["add_concern_link_command"]


def add_concern_link_command(commands: Any) -> None:
    """Add ``concern-link`` to the ``fhir-safety`` subcommands."""
    parser = commands.add_parser(
        "concern-link", help="a ward link for the patient and family concern form"
    )
    parser.add_argument("--patient", required=True, help="the patient's FHIR id")
    parser.add_argument("--ward", required=True, help="the ward, e.g. 7A")
    parser.add_argument("--days", type=int, help="days the link works (default: the lifetime)")
    parser.add_argument("--fhir-server", help="FHIR base URL to check the patient on")
    parser.add_argument(
        "--no-check", action="store_true", help="do not read the patient from the FHIR server"
    )
    parser.add_argument("--json", action="store_true", help="print JSON")
    parser.set_defaults(handler=_concern_link)


def _concern_link(args: argparse.Namespace, settings: Settings) -> int:
    issued = issue_link(settings, args.patient, args.ward, now=now_utc(), days=args.days)
    patient = None
    if settings.fhir_server_url and not args.no_check:
        patient = asyncio.run(_read_patient(settings, args.patient))
    zone = ZoneInfo(settings.timezone)
    if args.json:
        print(json.dumps(_as_json(issued, patient), indent=2))  # noqa: T201
    else:
        print(_as_text(issued, patient, zone))  # noqa: T201
    if not settings.concern_form.marthas_rule_phone:
        print(  # noqa: T201
            "warning: concern_form.marthas_rule_phone is not set: the form can only tell "
            "worried families to speak to a nurse",
            file=sys.stderr,
        )
    if patient is None and not args.no_check:
        print("warning: no FHIR server configured: the patient was not checked", file=sys.stderr)  # noqa: T201
    return 0


async def _read_patient(settings: Settings, patient_id: str) -> FormPatient:
    assert settings.fhir_server_url is not None
    async with httpx.AsyncClient(timeout=settings.request_deadline_seconds) as http:
        client = FhirClient(http, settings.fhir_server_url, access_token=settings.fhir_server_token)
        submitter = ConcernSubmitter(
            client, settings, Terminology.load(settings.terminology_dir), now_utc
        )
        try:
            return await submitter.patient(patient_id)
        except PatientNotReachableError as exc:
            raise InvalidRequestError(
                f"the form cannot take concerns for this patient: {exc.message}"
            ) from exc


def _as_json(issued: IssuedLink, patient: FormPatient | None) -> dict[str, Any]:
    return {
        "patient": issued.patient_id,
        "ward": issued.ward,
        "url": issued.url,
        "code": issued.grouped_code,
        "expires": issued.expires_at.isoformat(),
        "firstName": patient.first_name if patient else None,
        "encounter": patient.encounter_id if patient else None,
    }


def _as_text(issued: IssuedLink, patient: FormPatient | None, zone: ZoneInfo) -> str:
    until = issued.expires_at.astimezone(zone)
    who = f"Patient/{issued.patient_id}, ward {issued.ward}"
    if patient is not None:
        who = f"{patient.first_name or '(no first name recorded)'} ({who})"
    return "\n".join(
        [
            f"Concern form link for {who}",
            f"  Link:  {issued.url}",
            f"  Code:  {issued.grouped_code}",
            f"  Works until {until:%A} {until.day} {until:%B %Y, %H:%M} ({zone.key})",
        ]
    )
