"""The ``fhir-safety`` command line.

Exit codes: 0 done (no critical card); 1 ``check`` returned a critical card;
2 bad input or usage; 3 required data unavailable (412); 4 configuration or
server error.
"""

from __future__ import annotations

import argparse
import asyncio
import json
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
from rich.console import Console
from rich.table import Table

from fhir_safety import __version__
from fhir_safety.cds.catalogue import CATALOGUE
from fhir_safety.cds.models import CdsRequest, DiscoveryResponse, dump
from fhir_safety.config import REPO_ROOT, Settings, load_settings
from fhir_safety.errors import (
    DataUnavailableError,
    FhirSafetyError,
    RequestError,
)
from fhir_safety.fhir.client import FhirClient
from fhir_safety.fhir.resources import now_utc
from fhir_safety.observability import Metrics
from fhir_safety.services.evaluate import Evaluation, HookEvaluator
from fhir_safety.services.feedback_store import open_feedback_store
from fhir_safety.terminology import Terminology

__all__ = ["main"]

EXIT_CRITICAL, EXIT_INPUT, EXIT_UNAVAILABLE, EXIT_ERROR = 1, 2, 3, 4


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        settings = load_settings(args.config, **_overrides(args))
        result: int = args.handler(args, settings)
        return result
    except DataUnavailableError as exc:
        _error(f"required data unavailable: {exc.message}")
        return EXIT_UNAVAILABLE
    except RequestError as exc:
        _error(exc.message)
        return EXIT_INPUT
    except FhirSafetyError as exc:
        _error(exc.message)
        return EXIT_ERROR


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="fhir-safety", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"fhir-safety {__version__}")
    parser.add_argument("--config", type=Path, help="TOML settings file (FHIR_SAFETY_* env wins)")
    commands = parser.add_subparsers(required=True, metavar="COMMAND")

    serve = commands.add_parser("serve", help="run the CDS Hooks service")
    serve.add_argument("--host", help="address to bind (default 127.0.0.1)")
    serve.add_argument("--port", type=int, help="port (default 8000)")
    serve.add_argument("--fhir-server", help="default FHIR server for requests that name none")
    serve.add_argument(
        "--allow-insecure-bind",
        action="store_true",
        default=None,
        help="allow a non-loopback address with no JWT issuer configured",
    )
    serve.set_defaults(handler=_serve)

    services = commands.add_parser("services", help="print the discovery document")
    services.set_defaults(handler=_services)

    check = commands.add_parser("check", help="evaluate a hook request offline")
    check.add_argument("request", type=Path, help="a CDS Hooks request (JSON file)")
    check.add_argument("--service", help="service id (default: every service for the hook)")
    check.add_argument("--fhir-server", help="FHIR server for data the request does not carry")
    check.add_argument("--now", help="evaluate as of this ISO 8601 time (default: now)")
    check.add_argument("--json", action="store_true", help="print the CDS Hooks responses as JSON")
    check.set_defaults(handler=_check)

    news2 = commands.add_parser(
        "news2", help="NEWS2 score Observation from a Bundle of observations (exit 3: no score)"
    )
    news2.add_argument("bundle", type=Path, help="a FHIR Bundle (JSON) of the patient's data")
    news2.add_argument("--patient", help="patient id (default: the one the Bundle names)")
    news2.add_argument("--now", help="score as of this ISO 8601 time (default: now)")
    news2.set_defaults(handler=_news2)

    load = commands.add_parser("load", help="upload profiles, terminology and demo data")
    load.add_argument(
        "--fhir-server", required=True, help="FHIR base URL, e.g. http://localhost:8080/fhir"
    )
    load.add_argument("--no-examples", action="store_true", help="conformance resources only")
    load.set_defaults(handler=_load)

    subscribe = commands.add_parser("subscribe", help="register a rest-hook Subscription")
    subscribe.add_argument("--fhir-server", required=True, help="FHIR base URL")
    subscribe.add_argument("--criteria", required=True, help="e.g. 'Observation?code=...'")
    subscribe.add_argument(
        "--endpoint",
        required=True,
        help="this service's receiver, e.g. http://host:8000/subscriptions/notify",
    )
    subscribe.add_argument("--secret", help="shared secret (default: subscription_secret setting)")
    subscribe.add_argument("--wait", type=float, default=60.0, help="seconds to wait for 'active'")
    subscribe.set_defaults(handler=_subscribe)

    validate = commands.add_parser("validate", help="validate a FHIR resource on a FHIR server")
    validate.add_argument("file", type=Path, help="a FHIR resource (JSON)")
    validate.add_argument(
        "--profile", help="profile canonical URL (default: the resource's meta.profile)"
    )
    validate.add_argument("--fhir-server", help="FHIR base URL (default: fhir_server_url setting)")
    validate.set_defaults(handler=_validate)

    summary = commands.add_parser("feedback-summary", help="alert fatigue per service and rule")
    summary.add_argument("--database-url", help="feedback store (default from settings)")
    summary.add_argument("--json", action="store_true")
    summary.set_defaults(handler=_feedback_summary)

    registry = commands.add_parser("registry", help="build a safety registry (valproate)")
    registry.add_argument("programme", choices=["valproate"], help="which registry")
    source = registry.add_mutually_exclusive_group(required=True)
    source.add_argument("--fhir-server", help="FHIR base URL to search")
    source.add_argument("--ndjson", type=Path, help="folder of Bulk Data NDJSON files")
    registry.add_argument(
        "--method",
        choices=["auto", "export", "search"],
        help="how to read a server: Bulk Data $export when offered (auto), $export only, or "
        "paged search (default: bulk_export.registry_method, auto)",
    )
    registry.add_argument(
        "--export-dir", type=Path, help="keep the $export NDJSON files in this (empty) folder"
    )
    registry.add_argument("--out", type=Path, default=Path("."), help="output folder")
    registry.add_argument("--now", help="as of this ISO 8601 time (default: now)")
    registry.add_argument("--json", action="store_true", help="print the JSON registry")
    registry.set_defaults(handler=_registry)

    synth = commands.add_parser("synth", help="write a deterministic synthetic population")
    synth.add_argument("--patients", type=int, required=True, help="how many patients")
    synth.add_argument("--seed", type=int, default=1, help="random seed (same seed, same data)")
    synth.add_argument("--out", type=Path, default=Path("synth"), help="output folder")
    synth.add_argument("--format", choices=["bundles", "ndjson"], default="bundles")
    synth.add_argument("--as-of", help="the population's 'today' (default 2026-11-26)")
    synth.add_argument("--valproate-rate", type=float, default=0.2, help="share on valproate")
    synth.add_argument(
        "--hospital",
        action="store_true",
        help="add inpatient stays, wards, vitals, concerns and escalations (dashboards)",
    )
    synth.set_defaults(handler=_synth)
    # Incident investigations with the family, safety signals in patient stories (issue 9).
    from fhir_safety.cli_incidents_stories import add_incident_commands, add_story_commands

    add_incident_commands(commands)
    add_story_commands(commands)
    # Ward links for the patient and family concern form (issue 7, Martha's Rule).
    from fhir_safety.concern_form.cli import add_concern_link_command

    add_concern_link_command(commands)
    return parser


def _overrides(args: argparse.Namespace) -> dict[str, Any]:
    names = {
        "host": "host",
        "port": "port",
        "fhir_server": "fhir_server_url",
        "allow_insecure_bind": "allow_insecure_bind",
        "database_url": "feedback_database_url",
    }
    return {
        setting: getattr(args, arg)
        for arg, setting in names.items()
        if getattr(args, arg, None) is not None
    }


def _serve(_: argparse.Namespace, settings: Settings) -> int:
    import uvicorn

    from fhir_safety.api.app import create_app
    from fhir_safety.observability import configure_logging

    settings.check_bind()
    configure_logging(settings.log_level)
    uvicorn.run(create_app(settings), host=settings.host, port=settings.port, log_config=None)
    return 0


def _services(_: argparse.Namespace, __: Settings) -> int:
    discovery = DiscoveryResponse(services=[s.descriptor() for s in CATALOGUE.services])
    print(json.dumps(dump(discovery), indent=2))  # noqa: T201
    return 0


def _check(args: argparse.Namespace, settings: Settings) -> int:
    request = _read_request(args.request)
    now = _parse_now(args.now)
    evaluations, unavailable = asyncio.run(_evaluate_all(request, settings, args.service, now))
    if args.json:
        payload: dict[str, Any] = {e.service.id: dump(e.response) for e in evaluations}
        payload |= {service: {"error": message} for service, message in unavailable.items()}
        print(json.dumps(payload, indent=2))  # noqa: T201
    else:
        _print_cards(evaluations)
    for service, message in unavailable.items():
        _error(f"{service}: required data unavailable: {message}")
    if any(c.card.indicator == "critical" for e in evaluations for c in e.cards):
        return EXIT_CRITICAL
    return EXIT_UNAVAILABLE if unavailable else 0


def _read_request(path: Path) -> CdsRequest:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise RequestError(f"cannot read {path}: {exc}") from exc
    try:
        return CdsRequest.model_validate(data)
    except ValueError as exc:
        raise RequestError(f"{path} is not a CDS Hooks request: {exc}") from exc


def _parse_now(value: str | None) -> datetime:
    if value is None:
        return now_utc()
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError as exc:
        raise RequestError(f"--now must be an ISO 8601 date-time: {value!r}") from exc
    if parsed.tzinfo is None:
        raise RequestError("--now needs a time zone, e.g. 2026-11-26T09:00:00Z")
    return parsed


async def _evaluate_all(
    request: CdsRequest, settings: Settings, service_id: str | None, now: datetime
) -> tuple[list[Evaluation], dict[str, str]]:
    """Every service for the hook (or the one named); a service without its data is listed."""
    services = [
        s
        for s in CATALOGUE.services
        if s.hook == request.hook and (service_id is None or s.id == service_id)
    ]
    if not services:
        raise RequestError(
            f"no service answers {request.hook!r}" + (f" as {service_id!r}" if service_id else "")
        )
    evaluations: list[Evaluation] = []
    unavailable: dict[str, str] = {}
    async with httpx.AsyncClient(timeout=settings.request_deadline_seconds) as http:
        evaluator = HookEvaluator(
            catalogue=CATALOGUE,
            settings=settings,
            http=http,
            terminology=Terminology.load(settings.terminology_dir),
            metrics=Metrics(),
            clock=lambda: now,
        )
        for service in services:
            try:
                evaluations.append(await evaluator.evaluate(service.id, request))
            except DataUnavailableError as exc:
                if service_id is not None:
                    raise
                unavailable[service.id] = exc.message
    return evaluations, unavailable


def _print_cards(evaluations: Sequence[Evaluation]) -> None:
    table = Table(title="fhir-safety cards", show_lines=True)
    for column in ("service", "indicator", "summary", "suggestions"):
        table.add_column(column)
    for evaluation in evaluations:
        for item in evaluation.cards:
            card = item.card
            labels = ", ".join(s.label for s in card.suggestions or [])
            table.add_row(evaluation.service.id, card.indicator, card.summary, labels or "-")
    console = Console()
    if table.row_count:
        console.print(table)
    else:
        console.print("no cards")


def _news2(args: argparse.Namespace, settings: Settings) -> int:
    """Print the NEWS2 Observation (exit 0) or the OperationOutcome saying why not (exit 3)."""
    from fhir_safety.services.news2_operation import news2_from_bundle

    try:
        bundle = json.loads(args.bundle.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise RequestError(f"cannot read {args.bundle}: {exc}") from exc
    answer = news2_from_bundle(
        bundle,
        patient_id=args.patient,
        now=_parse_now(args.now),
        settings=settings,
        terminology=Terminology.load(settings.terminology_dir),
    )
    print(json.dumps(answer.resource, indent=2, ensure_ascii=False))  # noqa: T201
    return 0 if answer.scored else EXIT_UNAVAILABLE


def _load(args: argparse.Namespace, settings: Settings) -> int:
    from rich.progress import Progress

    from fhir_safety.services.loader import collect_load_items, load_items

    items = collect_load_items(REPO_ROOT, with_examples=not args.no_examples)

    async def run(progress: Progress) -> int:
        task = progress.add_task(f"loading into {args.fhir_server}", total=len(items))
        async with httpx.AsyncClient(timeout=60.0) as http:
            client = FhirClient(http, args.fhir_server, access_token=settings.fhir_server_token)
            return await load_items(client, items, on_progress=lambda n: progress.advance(task, n))

    with Progress(console=Console(stderr=True)) as progress:
        loaded = asyncio.run(run(progress))
    print(f"loaded {loaded} resources into {args.fhir_server}")  # noqa: T201
    return 0


def _validate(args: argparse.Namespace, settings: Settings) -> int:
    from fhir_safety.services.validation import validate_resource

    server = args.fhir_server or settings.fhir_server_url
    if not server:
        raise RequestError("a FHIR server is needed: --fhir-server or FHIR_SAFETY_FHIR_SERVER_URL")
    try:
        resource = json.loads(args.file.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise RequestError(f"cannot read {args.file}: {exc}") from exc
    if not isinstance(resource, dict) or "resourceType" not in resource:
        raise RequestError(f"{args.file} is not a FHIR resource")

    async def run() -> list[Any]:
        async with httpx.AsyncClient(timeout=120.0) as http:
            client = FhirClient(http, server, access_token=settings.fhir_server_token)
            return await validate_resource(client, resource, args.profile)

    issues = asyncio.run(run())
    for issue in issues:
        print(f"{issue.severity:<11} {issue.location or '-'}: {issue.message}")  # noqa: T201
    errors = sum(issue.is_error for issue in issues)
    print(f"{errors} error(s), {len(issues) - errors} other issue(s)")  # noqa: T201
    return EXIT_INPUT if errors else 0


def _subscribe(args: argparse.Namespace, settings: Settings) -> int:
    from fhir_safety.services.subscriptions import register_subscription

    secret = args.secret or settings.subscription_secret
    if not secret:
        raise RequestError("a shared secret is needed: --secret or FHIR_SAFETY_SUBSCRIPTION_SECRET")

    async def run() -> dict[str, Any]:
        async with httpx.AsyncClient(timeout=30.0) as http:
            client = FhirClient(http, args.fhir_server, access_token=settings.fhir_server_token)
            return await register_subscription(
                client, args.criteria, args.endpoint, secret, wait_seconds=args.wait
            )

    subscription = asyncio.run(run())
    print(f"Subscription/{subscription['id']} is active")  # noqa: T201
    return 0


def _feedback_summary(args: argparse.Namespace, settings: Settings) -> int:
    store = open_feedback_store(settings.feedback_database_url, timezone=settings.timezone)
    try:
        rows = store.summary()
    finally:
        store.close()
    if args.json:
        from fhir_safety.api.routes.feedback import summary_row

        print(json.dumps({"rules": [summary_row(r) for r in rows]}, indent=2))  # noqa: T201
        return 0
    table = Table(title="Feedback per service and rule")
    for column in (
        "service",
        "rule",
        "shown",
        "accepted",
        "overridden",
        "no feedback",
        "top override reasons",
    ):
        table.add_column(column)
    for row in rows:
        reasons = ", ".join(f"{code} ({n})" for code, n in row.override_reasons[:3])
        table.add_row(
            row.service_id,
            row.rule_id,
            str(row.shown),
            str(row.accepted),
            str(row.overridden),
            str(row.no_feedback),
            reasons or "-",
        )
    Console().print(table)
    return 0


def _registry(args: argparse.Namespace, settings: Settings) -> int:
    from rich.progress import Progress

    from fhir_safety.services import registry as valproate_registry

    now = _parse_now(args.now)
    terminology = Terminology.load(settings.terminology_dir)

    async def from_server(progress: Progress) -> valproate_registry.Gathered:
        task = progress.add_task(f"reading {args.fhir_server}", total=None)
        async with httpx.AsyncClient(timeout=60.0) as http:
            client = FhirClient(
                http,
                args.fhir_server,
                access_token=settings.fhir_server_token,
                max_response_bytes=settings.max_fhir_response_bytes,
                max_pages=100_000,
            )
            return await valproate_registry.gather(
                client,
                terminology,
                settings,
                now,
                method=args.method or settings.bulk_export.registry_method,
                export_dir=args.export_dir,
                on_found=lambda n: progress.update(task, total=n, description="reading records"),
                on_progress=lambda n: progress.advance(task, n),
                on_status=lambda text: progress.update(task, description=text),
            )

    with Progress(console=Console(stderr=True)) as progress:
        if args.ndjson is not None:
            files = len(list(args.ndjson.glob("*.ndjson")))
            task = progress.add_task(f"reading {args.ndjson}", total=files)
            patients = valproate_registry.gather_from_ndjson(
                args.ndjson, terminology, on_progress=lambda n: progress.advance(task, n)
            )
            source = f"ndjson:{args.ndjson}"
        else:
            gathered = asyncio.run(from_server(progress))
            patients, source = gathered.patients, gathered.source
    built = valproate_registry.build_registry(
        patients, settings=settings, terminology=terminology, now=now, source=source
    )
    written = valproate_registry.write_registry(built, args.out)
    if args.json:
        print(json.dumps(valproate_registry.registry_json(built), indent=2))  # noqa: T201
    else:
        table = Table(title=f"Valproate registry ({len(built.rows)} in the cohort)")
        table.add_column("action status")
        table.add_column("patients", justify="right")
        for status, count in built.counts().items():
            table.add_row(status, str(count))
        Console().print(table)
        for path in written:
            print(f"wrote {path}")  # noqa: T201
    return 0


def _synth(args: argparse.Namespace, settings: Settings) -> int:
    from datetime import date

    from fhir_safety.services import synth

    try:
        as_of = date.fromisoformat(args.as_of) if args.as_of else synth.DEFAULT_AS_OF
    except ValueError as exc:
        raise RequestError(f"--as-of must be a date like 2026-11-26: {args.as_of!r}") from exc
    if args.patients < 0 or not 0 <= args.valproate_rate <= 1:
        raise RequestError("--patients must be >= 0 and --valproate-rate between 0 and 1")
    population = synth.generate(
        patients=args.patients,
        seed=args.seed,
        terminology=Terminology.load(settings.terminology_dir),
        as_of=as_of,
        valproate_rate=args.valproate_rate,
        hospital=args.hospital,
    )
    if args.format == "ndjson":
        paths = synth.write_ndjson(population, args.out)
    else:
        paths = synth.write_bundles(population, args.out)
    truth = synth.write_ground_truth(population, args.out, seed=args.seed, as_of=as_of)
    print(f"wrote {len(paths)} {args.format} file(s) and {truth} to {args.out}")  # noqa: T201
    return 0


def _error(message: str) -> None:
    Console(stderr=True).print(f"[bold red]error:[/] {message}")


if __name__ == "__main__":
    raise SystemExit(main())
