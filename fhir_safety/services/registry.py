"""Valproate registry: every patient on valproate, classified by NCL's action status.

Reads a FHIR server (Bulk Data ``$export`` when the server offers it, else paged searches) or a
folder of Bulk Data NDJSON files, finds each patient
with an active (or on-hold) valproate MedicationRequest (coded or named: the same terminology
as the cards), and classifies the NCL cohort - not male, aged up to ``ppp_max_age`` (NCL: 0-55
[S23]) - with ``rules.valproate.action_status``: review or refer / consider expiry of ARAF /
keep under review / no action required (``dim_prog_valproate_action_status.sql`` [S23]).

Output: JSON and CSV rows for a dashboard, and FHIR: a ``List`` of the patients (each entry's
``flag`` is the action status) and a summary ``MeasureReport`` with the counts per status. The
registry is reproducible: rows are sorted, nothing random is minted, and the time is the
``now`` passed in.

A per-patient search that fails is recorded on the row (``data_gaps``); the patient is still
classified, fail-safe (a missing Flag reads as "no PPP": review or refer).
"""

from __future__ import annotations

import asyncio
import csv
import io
import json
import tempfile
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Literal
from urllib.parse import quote
from zoneinfo import ZoneInfo

from fhir_safety.config import Settings
from fhir_safety.domain import PROJECT_CANONICAL
from fhir_safety.errors import DataUnavailableError, FhirError, InvalidResourceError, RequestError
from fhir_safety.fhir import resources as fhir
from fhir_safety.fhir.bulk import export_level, run_export
from fhir_safety.fhir.client import FhirClient
from fhir_safety.record import PatientRecord
from fhir_safety.rules import valproate
from fhir_safety.services.record import parse_resource
from fhir_safety.terminology import Terminology

__all__ = [
    "ACTION_ORDER",
    "Gathered",
    "PatientData",
    "Registry",
    "RegistryRow",
    "build_registry",
    "gather",
    "gather_from_ndjson",
    "gather_from_server",
    "registry_bundle",
    "registry_csv",
    "registry_json",
    "write_registry",
]

# NCL's action statuses, most urgent first (their ACTION_ORDER groups 1-4, 5, 6-8, 9) [S23].
ACTION_ORDER: tuple[valproate.ActionStatus, ...] = (
    "Review or refer",
    "Consider expiry of ARAF",
    "Keep under review",
    "No action required",
)
READ_TYPES = (
    "Patient",
    "MedicationRequest",
    "MedicationStatement",
    "Flag",
    "Condition",
    "Procedure",
    "Observation",
)
ARAF_VALUE_SET_URL = f"{PROJECT_CANONICAL}/ValueSet/valproate-araf"
MEASURE_URL = f"{PROJECT_CANONICAL}/Measure/valproate-registry"
MEASURE_POPULATION = "http://terminology.hl7.org/CodeSystem/measure-population"
CSV_COLUMNS = (
    "patient_id",
    "nhs_number",
    "age",
    "gender",
    "action_status",
    "pregnant",
    "learning_disability",
    "permanent_absence_of_pregnancy_risk",
    "ppp_status",
    "araf_date",
    "review_due",
    "products",
    "data_gaps",
)
NHS_NUMBER_SYSTEM = "https://fhir.nhs.uk/Id/nhs-number"

Progress = Callable[[int], None]
GatherMethod = Literal["auto", "export", "search"]


@dataclass
class PatientData:
    """The raw resources gathered for one patient, and the types that could not be read."""

    patient_id: str
    resources: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    unavailable: dict[str, str] = field(default_factory=dict)

    def add(self, resource: dict[str, Any]) -> None:
        self.resources.setdefault(str(resource.get("resourceType")), []).append(resource)


@dataclass(frozen=True, slots=True)
class RegistryRow:
    patient_id: str
    nhs_number: str | None
    age: int | None
    gender: str | None
    action_status: valproate.ActionStatus
    pregnant: bool
    learning_disability: bool
    permanent_absence: bool
    ppp_status: str | None
    araf_date: str | None
    review_due: str | None
    products: tuple[str, ...]
    data_gaps: tuple[str, ...]

    def as_dict(self) -> dict[str, Any]:
        return {
            "patient_id": self.patient_id,
            "nhs_number": self.nhs_number,
            "age": self.age,
            "gender": self.gender,
            "action_status": self.action_status,
            "pregnant": self.pregnant,
            "learning_disability": self.learning_disability,
            "permanent_absence_of_pregnancy_risk": self.permanent_absence,
            "ppp_status": self.ppp_status,
            "araf_date": self.araf_date,
            "review_due": self.review_due,
            "products": list(self.products),
            "data_gaps": list(self.data_gaps),
        }


@dataclass(frozen=True, slots=True)
class Registry:
    generated: datetime
    source: str
    rows: tuple[RegistryRow, ...]  # the NCL cohort, most urgent first
    on_valproate: int  # every patient with an active valproate MedicationRequest
    outside_cohort: Mapping[str, int]  # "male", "over-age": not classified

    def counts(self) -> dict[str, int]:
        found = Counter(row.action_status for row in self.rows)
        return {status: found.get(status, 0) for status in ACTION_ORDER}


# -- gathering ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Gathered:
    patients: list[PatientData]
    source: str  # where the data came from and how, for the registry's output


async def gather(
    client: FhirClient,
    terminology: Terminology,
    settings: Settings,
    now: datetime,
    *,
    method: GatherMethod = "auto",
    export_dir: Path | None = None,
    on_found: Callable[[int], None] | None = None,
    on_progress: Progress | None = None,
    on_status: Callable[[str], None] | None = None,
) -> Gathered:
    """Every patient on valproate on the server: by ``$export`` when offered, else by search.

    "auto" exports when the CapabilityStatement offers ``$export`` (and says so in ``source``);
    an export that then fails is an error, not a silent switch to another method. "export"
    insists on it; "search" never uses it. ``export_dir`` keeps the downloaded NDJSON (for
    ``--ndjson`` later); by default it goes to a temporary folder removed afterwards.
    """
    level = None if method == "search" else await export_level(client)
    if level is None:
        if method == "export":
            raise DataUnavailableError(
                f"{client.base_url} does not offer Bulk Data $export (its CapabilityStatement "
                "names no export operation): use paged search"
            )
        patients = await gather_from_server(
            client, terminology, settings, now, on_found=on_found, on_progress=on_progress
        )
        return Gathered(patients, f"{client.base_url} (paged search)")
    if export_dir is not None and await asyncio.to_thread(_holds_ndjson, export_dir):
        raise RequestError(f"{export_dir} already holds .ndjson files: name an empty folder")
    with tempfile.TemporaryDirectory(prefix="fhir-safety-export-") as scratch:
        directory = export_dir or Path(scratch)
        manifest = await run_export(
            client,
            directory,
            level=level,
            types=READ_TYPES,
            type_filters=[_araf_filter(terminology)],
            policy=settings.bulk_export,
            on_status=on_status,
        )
        patients = (
            await asyncio.to_thread(
                gather_from_ndjson, directory, terminology, on_progress=on_progress
            )
            if manifest.files
            else []
        )
    if on_found is not None:
        on_found(len(patients))
    when = f", transactionTime {manifest.transaction_time}" if manifest.transaction_time else ""
    return Gathered(patients, f"{client.base_url} ({level}-level $export{when})")


def _holds_ndjson(directory: Path) -> bool:
    return any(directory.glob("*.ndjson"))


def _araf_filter(terminology: Terminology) -> str:
    """Only ARAF Observations: vital signs would dwarf the rest of an export."""
    codes = ",".join(
        f"{system}|{code}" for system, code, _ in terminology.expansion(valproate.ARAF)
    )
    return f"Observation?code={codes}"


async def gather_from_server(
    client: FhirClient,
    terminology: Terminology,
    settings: Settings,
    now: datetime,
    *,
    concurrency: int = 8,
    page_size: int = 500,
    on_found: Callable[[int], None] | None = None,
    on_progress: Progress | None = None,
) -> list[PatientData]:
    """Find patients on valproate with a paged search, then read each one's records."""
    query = f"MedicationRequest?status=active,on-hold&_count={page_size}"
    requests = await client.search_all(query)
    on_valproate = _patients_on_valproate(requests, terminology)
    if on_found is not None:
        on_found(len(on_valproate))
    zone = ZoneInfo(settings.timezone)
    limit = asyncio.Semaphore(concurrency)

    async def one(patient_id: str) -> PatientData:
        async with limit:
            data = await _read_patient(
                client, patient_id, on_valproate[patient_id], settings, now, zone
            )
        if on_progress is not None:
            on_progress(1)
        return data

    return list(await asyncio.gather(*(one(pid) for pid in sorted(on_valproate))))


async def _read_patient(
    client: FhirClient,
    patient_id: str,
    requests: list[dict[str, Any]],
    settings: Settings,
    now: datetime,
    zone: ZoneInfo,
) -> PatientData:
    data = PatientData(patient_id)
    for request in requests:
        data.add(request)
    try:
        data.add(await client.read("Patient", patient_id))
    except FhirError as exc:
        data.unavailable["Patient"] = exc.message
    if not _needs_classifying(data, settings, now, zone):
        return data  # a man or over the age band: not in the cohort, nothing more to read
    pid = quote(patient_id, safe="")
    araf = quote(ARAF_VALUE_SET_URL, safe="")
    queries = {
        "Flag": f"Flag?patient={pid}",
        "Condition": f"Condition?patient={pid}",
        "Procedure": f"Procedure?patient={pid}",
        "Observation": f"Observation?patient={pid}&code:in={araf}",
    }
    results = await asyncio.gather(
        *(client.search_all(q) for q in queries.values()), return_exceptions=True
    )
    for resource_type, result in zip(queries, results, strict=True):
        if isinstance(result, FhirError):
            data.unavailable[resource_type] = result.message
        elif isinstance(result, BaseException):
            raise result
        else:
            for resource in result:
                data.add(resource)
    return data


def gather_from_ndjson(
    directory: Path, terminology: Terminology, *, on_progress: Progress | None = None
) -> list[PatientData]:
    """Read a Bulk Data export folder (``*.ndjson``, one resource per line, any file names)."""
    files = sorted(directory.glob("*.ndjson"))
    if not files:
        raise RequestError(f"no .ndjson files in {directory}")
    by_patient: dict[str, PatientData] = {}
    for resource in _ndjson_resources(files, on_progress):
        kind = resource.get("resourceType")
        if kind not in READ_TYPES:
            continue
        patient_id = _patient_of(resource)
        if patient_id is None:
            continue
        if kind == "Observation" and not _is_araf(resource, terminology):
            continue  # only coded ARAFs matter here; vital signs would only cost memory
        by_patient.setdefault(patient_id, PatientData(patient_id)).add(resource)
    on_valproate = _patients_on_valproate(
        [r for d in by_patient.values() for r in d.resources.get("MedicationRequest", [])],
        terminology,
    )
    return [by_patient[pid] for pid in sorted(on_valproate)]


def _ndjson_resources(
    files: Sequence[Path], on_progress: Progress | None
) -> Iterator[dict[str, Any]]:
    for path in files:
        with path.open(encoding="utf-8") as lines:
            for number, line in enumerate(lines, start=1):
                if not line.strip():
                    continue
                try:
                    resource = json.loads(line)
                except json.JSONDecodeError as exc:
                    raise RequestError(f"{path.name}:{number}: not JSON ({exc.msg})") from exc
                if isinstance(resource, dict):
                    yield resource
        if on_progress is not None:
            on_progress(1)


def _patients_on_valproate(
    requests: Iterable[dict[str, Any]], terminology: Terminology
) -> dict[str, list[dict[str, Any]]]:
    found: dict[str, list[dict[str, Any]]] = {}
    for raw in requests:
        try:
            request = parse_resource(raw, "MedicationRequest")
        except InvalidResourceError:
            continue
        if not isinstance(request, fhir.MedicationRequest):
            continue
        if request.status not in valproate.CURRENT_REQUEST_STATUSES:
            continue
        patient_id = request.subject.target_id("Patient")
        if patient_id is None:
            continue
        record = _record(patient_id, {"MedicationRequest": [request]}, {}, None, _EPOCH, _UTC)
        if valproate.valproate_in_use(record, terminology):
            found.setdefault(patient_id, []).append(raw)
    return found


def _patient_of(resource: dict[str, Any]) -> str | None:
    if resource.get("resourceType") == "Patient":
        value = resource.get("id")
        return value if isinstance(value, str) else None
    subject = resource.get("subject")
    reference = subject.get("reference") if isinstance(subject, dict) else None
    if isinstance(reference, str) and reference.startswith("Patient/"):
        return reference.removeprefix("Patient/")
    return None


def _is_araf(resource: dict[str, Any], terminology: Terminology) -> bool:
    try:
        parsed = parse_resource(resource, "Observation")
    except InvalidResourceError:
        return False
    return (
        isinstance(parsed, fhir.Observation)
        and terminology.match(valproate.ARAF, parsed.code) is not None
    )


def _needs_classifying(
    data: PatientData, settings: Settings, now: datetime, zone: ZoneInfo
) -> bool:
    patient = _patient(data)
    if patient is None:
        return True
    return _outside_cohort(patient, settings, now, zone) is None


# -- classification -----------------------------------------------------------------------------


def build_registry(
    patients: Iterable[PatientData],
    *,
    settings: Settings,
    terminology: Terminology,
    now: datetime,
    source: str,
) -> Registry:
    """Classify every gathered patient (pure: no I/O)."""
    zone = ZoneInfo(settings.timezone)
    rows: list[RegistryRow] = []
    outside: Counter[str] = Counter()
    total = 0
    for data in patients:
        total += 1
        patient = _patient(data)
        reason = _outside_cohort(patient, settings, now, zone) if patient else None
        if reason is not None:
            outside[reason] += 1
            continue
        rows.append(_row(data, patient, settings, terminology, now, zone))
    rows.sort(key=lambda r: (ACTION_ORDER.index(r.action_status), r.patient_id))
    return Registry(
        generated=now,
        source=source,
        rows=tuple(rows),
        on_valproate=total,
        outside_cohort={"male": outside["male"], "over-age": outside["over-age"]},
    )


def _row(
    data: PatientData,
    patient: fhir.Patient | None,
    settings: Settings,
    terminology: Terminology,
    now: datetime,
    zone: ZoneInfo,
) -> RegistryRow:
    parsed: dict[str, list[fhir.Resource]] = {}
    for kind, raws in data.resources.items():
        for index, raw in enumerate(raws):
            try:
                resource = parse_resource(raw, f"{kind}[{index}]")
            except InvalidResourceError:
                continue  # a malformed resource in the source: skipped, as the hooks do
            if resource is not None and not isinstance(resource, fhir.Patient):
                parsed.setdefault(kind, []).append(resource)
    record = _record(data.patient_id, parsed, data.unavailable, patient, now, zone)
    assessment = valproate.assess(record, settings.valproate, terminology)
    ppp = assessment.ppp
    products = tuple(
        dict.fromkeys(p.display for p in valproate.valproate_in_use(record, terminology))
    )
    return RegistryRow(
        patient_id=data.patient_id,
        nhs_number=_nhs_number(patient),
        age=assessment.age,
        gender=assessment.gender,
        action_status=valproate.action_status(assessment),
        pregnant=bool(assessment.pregnancy),
        learning_disability=bool(assessment.learning_disability),
        permanent_absence=bool(assessment.risk_absent),
        ppp_status=ppp.code if ppp else None,
        araf_date=ppp.araf_date.isoformat() if ppp and ppp.araf_date else None,
        review_due=ppp.review_due.isoformat() if ppp and ppp.review_due else None,
        products=products,
        data_gaps=tuple(f"{kind}: {why}" for kind, why in sorted(data.unavailable.items())),
    )


def _patient(data: PatientData) -> fhir.Patient | None:
    for raw in data.resources.get("Patient", []):
        try:
            parsed = parse_resource(raw, "Patient")
        except InvalidResourceError:
            return None
        if isinstance(parsed, fhir.Patient):
            return parsed
    return None


def _outside_cohort(
    patient: fhir.Patient | None, settings: Settings, now: datetime, zone: ZoneInfo
) -> str | None:
    """NCL cohort: not male, aged 0 to ``ppp_max_age`` inclusive (unknown age stays in)."""
    if patient is None:
        return None
    if patient.gender == "male":
        return "male"
    age = valproate.age_of(_record(patient.id or "", {}, {}, patient, now, zone))
    if age is not None and age > settings.valproate.ppp_max_age:
        return "over-age"
    return None


_UTC = ZoneInfo("UTC")
_EPOCH = datetime(1970, 1, 1, tzinfo=_UTC)


def _record(
    patient_id: str,
    resources: Mapping[str, Sequence[fhir.Resource]],
    unavailable: Mapping[str, str],
    patient: fhir.Patient | None,
    now: datetime,
    zone: ZoneInfo,
) -> PatientRecord:
    return PatientRecord(
        hook="registry",
        context={"patientId": patient_id},
        now=now,
        zone=zone,
        patient=patient,
        resources={kind: tuple(items) for kind, items in resources.items()},
        unavailable=dict(unavailable),
    )


def _nhs_number(patient: fhir.Patient | None) -> str | None:
    if patient is None:
        return None
    return next(
        (i.value for i in patient.identifier if i.system == NHS_NUMBER_SYSTEM and i.value), None
    )


# -- output ---------------------------------------------------------------------------------------


def registry_json(registry: Registry) -> dict[str, Any]:
    return {
        "registry": "valproate",
        "generated": registry.generated.isoformat(),
        "source": registry.source,
        "on_valproate": registry.on_valproate,
        "outside_cohort": dict(registry.outside_cohort),
        "cohort": len(registry.rows),
        "counts": registry.counts(),
        "patients": [row.as_dict() for row in registry.rows],
    }


def registry_csv(registry: Registry) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=CSV_COLUMNS, lineterminator="\n")
    writer.writeheader()
    for row in registry.rows:
        values = row.as_dict()
        values["products"] = "; ".join(row.products)
        values["data_gaps"] = "; ".join(row.data_gaps)
        writer.writerow({k: "" if values[k] is None else values[k] for k in CSV_COLUMNS})
    return out.getvalue()


def registry_bundle(registry: Registry) -> dict[str, Any]:
    """A collection Bundle: the List of patients and the MeasureReport with the counts."""
    stamp = registry.generated.strftime("%Y%m%dT%H%M%SZ")
    when = registry.generated.isoformat()
    day = registry.generated.date().isoformat()
    entries: list[dict[str, Any]] = [
        {
            "item": {"reference": f"Patient/{row.patient_id}"},
            "flag": {"text": row.action_status},
        }
        for row in registry.rows
    ]
    listing: dict[str, Any] = {
        "resourceType": "List",
        "id": f"valproate-registry-{stamp}",
        "status": "current",
        "mode": "snapshot",
        "title": "Valproate registry: patients who could become pregnant, by NCL action status",
        "code": {"text": "Valproate registry"},
        "date": when,
        "orderedBy": {"text": "NCL action status, most urgent first"},
    }
    if entries:
        listing["entry"] = entries
    else:
        listing["emptyReason"] = {"text": "No patient in the cohort is on valproate"}
    counts = registry.counts()
    report = {
        "resourceType": "MeasureReport",
        "id": f"valproate-registry-{stamp}",
        "status": "complete",
        "type": "summary",
        "measure": MEASURE_URL,
        "date": when,
        "period": {"start": day, "end": day},
        "group": [
            {
                "code": {"text": "Valproate cohort (not male, aged 0-55) by NCL action status"},
                "population": [_population(len(registry.rows))],
                "stratifier": [
                    {
                        "code": [{"text": "NCL action status"}],
                        "stratum": [
                            {"value": {"text": status}, "population": [_population(count)]}
                            for status, count in counts.items()
                        ],
                    }
                ],
            }
        ],
    }
    return {
        "resourceType": "Bundle",
        "id": f"valproate-registry-{stamp}",
        "type": "collection",
        "timestamp": when,
        "entry": [
            {"fullUrl": f"List/{listing['id']}", "resource": listing},
            {"fullUrl": f"MeasureReport/{report['id']}", "resource": report},
        ],
    }


def _population(count: int) -> dict[str, Any]:
    return {
        "code": {"coding": [{"system": MEASURE_POPULATION, "code": "initial-population"}]},
        "count": count,
    }


def write_registry(registry: Registry, directory: Path) -> list[Path]:
    """Write valproate-registry.{json,csv,bundle.json} into ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    outputs = {
        "valproate-registry.json": json.dumps(registry_json(registry), indent=2) + "\n",
        "valproate-registry.csv": registry_csv(registry),
        "valproate-registry.bundle.json": json.dumps(registry_bundle(registry), indent=2) + "\n",
    }
    written = []
    for name, text in outputs.items():
        path = directory / name
        path.write_text(text, encoding="utf-8")
        written.append(path)
    return written
