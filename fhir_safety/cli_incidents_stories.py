"""``fhir-safety incident open|record|status`` and ``fhir-safety stories classify|evaluate``.

Registered on the main parser by ``fhir_safety.cli``; errors are ``FhirSafetyError``s, which
``cli.main`` turns into exit codes (2 bad input, 3 data unavailable, 4 server or configuration).
"""

from __future__ import annotations

import argparse
import asyncio
import json
from collections.abc import Awaitable, Callable
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar
from zoneinfo import ZoneInfo

import httpx
from rich.console import Console
from rich.table import Table

from fhir_safety.config import Settings
from fhir_safety.errors import DataUnavailableError, RequestError
from fhir_safety.fhir.client import FhirClient
from fhir_safety.fhir.resources import now_utc
from fhir_safety.rules.incident_engagement import EngagementStatus
from fhir_safety.services.incidents import (
    MEDIA,
    FamilyMember,
    IncidentService,
    NewInvestigation,
    StepRecord,
    describe_steps,
    parse_step_outcome,
    status_json,
)
from fhir_safety.terminology import Terminology

__all__ = ["add_incident_commands", "add_story_commands"]

T = TypeVar("T")


def add_incident_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    incident = commands.add_parser(
        "incident", help="incident investigations with the family as partners (PSIRF)"
    )
    actions = incident.add_subparsers(required=True, metavar="ACTION")

    opening = actions.add_parser("open", help="open an investigation and its engagement plan")
    _server_option(opening)
    opening.add_argument("--patient", required=True, help="Patient id")
    opening.add_argument(
        "--learning-response",
        required=True,
        help="psii | after-action-review | swarm-huddle | mdt-review | thematic-review",
    )
    opening.add_argument("--event", help="what happened, in plain words (new incident)")
    opening.add_argument("--occurred", help="when it happened, ISO 8601 (new incident)")
    opening.add_argument("--incident", help="investigate this existing AdverseEvent id instead")
    opening.add_argument("--encounter", help="Encounter id the incident happened in")
    opening.add_argument("--lead", help="Practitioner/<id> or PractitionerRole/<id>")
    opening.add_argument("--lead-name", help="the lead's name, as the family know them")
    opening.add_argument(
        "--family-member", action="append", default=[], help="RelatedPerson/<id> (repeatable)"
    )
    opening.add_argument("--family-name", help="a family member to add as a RelatedPerson")
    opening.add_argument("--relationship", help="their relationship in words, e.g. daughter")
    opening.add_argument("--relationship-code", help="HL7 v3 RoleCode, e.g. DAUC")
    opening.add_argument("--family-phone", help="their phone number")
    opening.add_argument("--due", help="the learning response's due date (YYYY-MM-DD)")
    opening.add_argument("--json", action="store_true")
    opening.set_defaults(handler=_open)

    record = actions.add_parser("record", help="record an engagement step with the family")
    _server_option(record)
    record.add_argument("incident", help="AdverseEvent id")
    record.add_argument("step", help="family-engagement-step code, e.g. first-contact")
    record.add_argument(
        "--outcome", default="done", help="done (default) | declined | paused | rescheduled"
    )
    record.add_argument("--note", help="what was said or shared (goes to the family's record)")
    record.add_argument("--when", help="when, ISO 8601 (default: now)")
    record.add_argument("--medium", choices=sorted(MEDIA), help="how")
    record.add_argument("--recipient", help="RelatedPerson/<id> (default: the step's family)")
    record.add_argument(
        "--question", action="append", default=[], help="a question from the family (repeatable)"
    )
    record.add_argument("--document", help="e.g. DocumentReference/<id> of the report shared")
    record.add_argument("--due", help="the new due date agreed with the family (rescheduled)")
    record.add_argument("--json", action="store_true")
    record.set_defaults(handler=_record)

    status = actions.add_parser("status", help="engagement status: done, due, overdue")
    _server_option(status)
    status.add_argument("incident", nargs="?", help="AdverseEvent id (default: every open one)")
    status.add_argument("--now", help="as of this ISO 8601 time (default: now)")
    status.add_argument("--json", action="store_true")
    status.set_defaults(handler=_status)


def add_story_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    stories = commands.add_parser("stories", help="safety signals in patient stories")
    actions = stories.add_subparsers(required=True, metavar="ACTION")

    classify = actions.add_parser(
        "classify", help="flag stories (Care Opinion API v2 JSON) that may describe an incident"
    )
    classify.add_argument("source", type=Path, help="a JSON file, or a folder of them")
    classify.add_argument("--threshold", type=float, help="flag at this score or above")
    classify.add_argument("--out", type=Path, help="write bundle.json and summary.json here")
    classify.add_argument("--fhir-server", dest="fhir_server", help="also upload the Bundle")
    classify.add_argument("--now", help="identifiedDateTime of the DetectedIssues (ISO 8601)")
    classify.add_argument("--json", action="store_true", help="print the summary as JSON")
    classify.set_defaults(handler=_classify)

    evaluate = actions.add_parser(
        "evaluate", help="precision and recall on a labelled set (the table in docs/stories.md)"
    )
    evaluate.add_argument("labelled", type=Path, help="labelled stories (tests/data/stories/...)")
    evaluate.set_defaults(handler=_evaluate)


def _server_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--fhir-server", dest="fhir_server", help="FHIR base URL (default: fhir_server_url)"
    )


# -- incident -----------------------------------------------------------------------------


def _open(args: argparse.Namespace, settings: Settings) -> int:
    family = [FamilyMember(reference=ref) for ref in args.family_member]
    if args.family_name:
        family.append(
            FamilyMember(
                name=args.family_name,
                relationship=args.relationship,
                relationship_code=args.relationship_code,
                phone=args.family_phone,
            )
        )
    request = NewInvestigation(
        patient_id=args.patient,
        learning_response=args.learning_response,
        event=args.event,
        occurred=args.occurred,
        incident_id=args.incident,
        encounter_id=args.encounter,
        family=tuple(family),
        lead=args.lead,
        lead_name=args.lead_name,
        due=args.due,
    )
    status = _run(settings, now_utc, lambda service: service.open_investigation(request))
    _show(status, as_json=args.json)
    return 0


def _record(args: argparse.Namespace, settings: Settings) -> int:
    record = StepRecord(
        step=args.step,
        outcome=parse_step_outcome(args.outcome),
        note=args.note,
        when=_parse_time(args.when, "--when") if args.when else None,
        medium=args.medium,
        recipient=args.recipient,
        questions=tuple(args.question),
        document=args.document,
        due=args.due,
    )
    status = _run(settings, now_utc, lambda service: service.record_step(args.incident, record))
    _show(status, as_json=args.json)
    return 0


def _status(args: argparse.Namespace, settings: Settings) -> int:
    now = _parse_time(args.now, "--now") if args.now else now_utc()
    if args.incident:
        status = _run(settings, lambda: now, lambda s: s.engagement_status(args.incident))
        _show(status, as_json=args.json)
        return 0
    statuses = _run(settings, lambda: now, lambda s: s.open_investigations())
    if args.json:
        print(json.dumps({"investigations": [status_json(s) for s in statuses]}, indent=2))  # noqa: T201
        return 0
    if not statuses:
        Console().print("no open investigations")
    for status in statuses:
        _show(status, as_json=False)
    return 0


def _run(
    settings: Settings,
    clock: Callable[[], datetime],
    action: Callable[[IncidentService], Awaitable[T]],
) -> T:
    if not settings.fhir_server_url:
        raise DataUnavailableError("a FHIR server is needed: --fhir-server or fhir_server_url")
    base_url = settings.fhir_server_url

    async def run() -> T:
        async with httpx.AsyncClient(timeout=30.0) as http:
            client = FhirClient(http, base_url, access_token=settings.fhir_server_token)
            service = IncidentService(
                client,
                settings.incidents,
                Terminology.load(settings.terminology_dir),
                zone=ZoneInfo(settings.timezone),
                clock=clock,
            )
            return await action(service)

    return asyncio.run(run())


def _show(status: EngagementStatus, *, as_json: bool) -> None:
    if as_json:
        print(json.dumps(status_json(status), indent=2))  # noqa: T201
        return
    response = status.response_display or "no learning response"
    state = "open" if status.open else (status.response_status or "not started")
    table = Table(
        title=f"{status.incident_ref}: {status.event}\n{response} ({state})"
        + (f", due {status.response_due}" if status.response_due else ""),
        caption="Family: " + (", ".join(status.family) or "none recorded"),
    )
    table.add_column("step")
    table.add_column("state")
    for display, state_words in describe_steps(status.steps):
        table.add_row(display, state_words)
    Console().print(table)


def _parse_time(value: str, option: str) -> datetime:
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError as exc:
        raise RequestError(f"{option} must be an ISO 8601 date-time: {value!r}") from exc
    if parsed.tzinfo is None:
        raise RequestError(f"{option} needs a time zone, e.g. 2026-11-26T09:00:00Z")
    return parsed


# -- stories ------------------------------------------------------------------------------


def _classify(args: argparse.Namespace, settings: Settings) -> int:
    from fhir_safety.services import stories

    now = _parse_time(args.now, "--now") if args.now else now_utc()
    threshold = args.threshold if args.threshold is not None else settings.stories.threshold
    result = stories.classify_source(
        args.source, threshold=threshold, lexicon=stories.load_lexicon(settings.stories), now=now
    )
    if args.out:
        stories.write_outputs(result, args.out)
    if args.fhir_server:
        base_url = args.fhir_server

        async def upload() -> dict[str, Any]:
            async with httpx.AsyncClient(timeout=60.0) as http:
                client = FhirClient(http, base_url, access_token=settings.fhir_server_token)
                return await client.post("", result.bundle)

        asyncio.run(upload())
    if args.json:
        print(json.dumps(result.summary, indent=2))  # noqa: T201
    else:
        _print_story_summary(result.summary)
    return 0


def _print_story_summary(summary: dict[str, Any]) -> None:
    table = Table(
        title=(
            f"{summary['flagged']} of {summary['stories']} stories flagged "
            f"(threshold {summary['threshold']})"
        )
    )
    for column in ("health service", "stories", "flagged", "share", "main signals"):
        table.add_column(column)
    for row in summary["services"]:
        signals = ", ".join(f"{c} ({n})" for c, n in row["categories"][:3])
        table.add_row(
            f"{row['name']} [{row['id']}]",
            str(row["stories"]),
            str(row["flagged"]),
            f"{row['flaggedShare']:.0%}",
            signals or "-",
        )
    Console().print(table)


def _evaluate(args: argparse.Namespace, settings: Settings) -> int:
    from fhir_safety.services import stories

    lexicon = stories.load_lexicon(settings.stories)
    print(stories.metrics_markdown(args.labelled, lexicon, settings.stories.threshold))  # noqa: T201
    return 0
