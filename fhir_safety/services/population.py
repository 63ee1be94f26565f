"""Population data for the dashboards and the ward endpoint: where it comes from, what the rules say.

**Sources** (``Settings.dashboards.population_source``): the configured FHIR server (paged
searches, then each patient's records read with the same prefetch templates the CDS services
use), or a folder of FHIR Bulk Data NDJSON files, the format ``$export`` writes and ``fhir-safety
synth --format ndjson`` writes too. The folder's ``manifest.json`` (the ``$export`` completion
manifest) gives ``transactionTime``: the moment the export describes, and so the "now" that
lengths of stay and "concerns in the last 24 hours" are counted from. A live server is read as
of the service's clock. The committed demo folder ``data/demo-population`` is the embedded
default (issue #10), so the pages show data with no server to start.

**Numbers** come from the pure rules, exactly as the cards do:

* valproate registry: ``services.registry`` (the JSON/CSV endpoint's own functions), plus the
  prescriber organisation of each patient's valproate request;
* long stays: ``rules.length_of_stay.assess_stay`` per in-progress inpatient Encounter, days
  counted on the trust's calendar as the rule counts them;
* ward data (issue #7 item 6): ``rules.vitals.assess_record`` (NEWS2), ``rules.concern.
  recent_concerns`` (the last ``news2.concern_window_hours``) and the patient's open Martha's
  Rule Tasks, from records built with the ``news2-concern`` service's prefetch templates.

A patient's search that fails is not fatal: the record says which data could not be had, the
rules say "could not check", and the row lists it under ``data_gaps``.
"""

from __future__ import annotations

import asyncio
import csv
import io
import json
import random
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any, Literal
from zoneinfo import ZoneInfo

import httpx

from fhir_safety.cds.definitions.news2 import NEWS2_PREFETCH
from fhir_safety.cds.override_reasons import NON_ADHERENCE_SYSTEM, OVERRIDE_REASON_DISPLAYS
from fhir_safety.cds.prefetch import PrefetchTemplate
from fhir_safety.config import REPO_ROOT, Settings
from fhir_safety.errors import DataUnavailableError, FhirError, RequestError
from fhir_safety.fhir import resources as fhir
from fhir_safety.fhir.client import FhirClient
from fhir_safety.record import PatientRecord
from fhir_safety.rules import concern, length_of_stay, valproate, vitals
from fhir_safety.rules.common import local_date, parse_when
from fhir_safety.rules.news2 import Band, Parameter
from fhir_safety.services import registry as valproate_registry
from fhir_safety.services import synth
from fhir_safety.services.feedback_store import (
    FeedbackEntry,
    FeedbackStore,
    IssuedCard,
    open_feedback_store,
)
from fhir_safety.services.record import FetchOutcome, build_record, resolve_prefetch
from fhir_safety.terminology import Terminology

__all__ = [
    "ARAF_BUCKETS",
    "DEMO_DIR",
    "DEMO_FEEDBACK_FILE",
    "MANIFEST_FILE",
    "OPEN_TASK_STATUSES",
    "UNASSIGNED_WARD",
    "ConcernSummary",
    "EscalationSummary",
    "Inpatient",
    "LongStayList",
    "LongStayRow",
    "News2Summary",
    "Population",
    "PopulationSource",
    "ValproateDashboard",
    "Ward",
    "WardBoard",
    "WardPatient",
    "WardSummary",
    "build_long_stays",
    "build_ward_board",
    "demo_feedback",
    "demo_feedback_store",
    "load_demo_feedback",
    "open_population",
    "population_source",
    "summarise_wards",
    "write_demo_population",
]

# The committed demo population (the embedded default source).
DEMO_DIR = REPO_ROOT / "data" / "demo-population"
MANIFEST_FILE = "manifest.json"
DEMO_FEEDBACK_FILE = "cds-feedback.json"
# FHIR R4 TaskStatus: a Martha's Rule call in one of these is still waiting for, or getting, its
# review. "draft" has not been sent; completed, cancelled, rejected, failed and entered-in-error
# are closed (project decision, docs/dashboards.md).
OPEN_TASK_STATUSES = frozenset(
    {"requested", "received", "accepted", "ready", "in-progress", "on-hold"}
)
LOCATION_PHYSICAL_TYPE = "http://terminology.hl7.org/CodeSystem/location-physical-type"
# A dashboard can wait longer than a clinician's click (CDS hooks use 80% of 5 s).
_RECORD_TIMEOUT_SECONDS = 30.0
_PATIENT = PrefetchTemplate("patient", "Patient/{{context.patientId}}", required=False)
_ENCOUNTERS = PrefetchTemplate(
    "encounters", "Encounter?patient={{context.patientId}}&status=in-progress", required=False
)
# The long-stay service's own keys (cds/definitions/long_stay.py) plus the Patient, for names.
LONG_STAY_TEMPLATES: tuple[PrefetchTemplate, ...] = (
    _PATIENT,
    _ENCOUNTERS,
    PrefetchTemplate("carePlans", "CarePlan?patient={{context.patientId}}", required=False),
    PrefetchTemplate("goals", "Goal?patient={{context.patientId}}", required=False),
)
# The news2-concern service's keys: the ward board's NEWS2 and concerns equal the card's.
WARD_TEMPLATES: tuple[PrefetchTemplate, ...] = NEWS2_PREFETCH


# -- sources -------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PopulationSource:
    kind: Literal["fhir-server", "ndjson"]
    location: str  # the server's base URL or the folder

    def describe(self) -> str:
        if self.kind == "fhir-server":
            return f"FHIR server {self.location}"
        return f"Bulk Data NDJSON folder {self.location}"


def population_source(settings: Settings) -> PopulationSource:
    """The configured source: the FHIR server when there is one (``auto``), else the folder."""
    choice = settings.dashboards.population_source
    if choice == "fhir-server" or (choice == "auto" and settings.fhir_server_url):
        if not settings.fhir_server_url:
            raise DataUnavailableError(
                "dashboards.population_source is fhir-server but no FHIR server is configured: "
                "set FHIR_SAFETY_FHIR_SERVER_URL"
            )
        return PopulationSource("fhir-server", settings.fhir_server_url)
    return PopulationSource("ndjson", str(settings.dashboards.ndjson_dir))


@dataclass(frozen=True, slots=True)
class Ward:
    id: str
    name: str


# Inpatients whose Encounter names no ward. "_" cannot occur in a FHIR id, so no Location clashes.
UNASSIGNED_WARD = Ward("_unassigned", "No ward recorded")


@dataclass(frozen=True, slots=True)
class Inpatient:
    """An in-progress inpatient Encounter, where the patient is, and since when."""

    patient_id: str
    encounter_id: str
    ward: Ward
    bed: str | None
    admitted: datetime | None
    encounter: Mapping[str, Any]  # the raw Encounter


class Population:
    """An opened source. Make one per request (``open_population``); it reads on demand."""

    def __init__(
        self,
        source: PopulationSource,
        settings: Settings,
        terminology: Terminology,
        *,
        client: FhirClient | None = None,
        folder: _Folder | None = None,
        now: datetime,
    ) -> None:
        self.source = source
        self.settings = settings
        self.terminology = terminology
        self.zone = ZoneInfo(settings.timezone)
        self._client = client
        self._folder = folder
        # An export describes the moment it was taken; a live server is read as of now.
        self.as_of = folder.transaction_time if folder and folder.transaction_time else now

    @property
    def is_export(self) -> bool:
        return self._folder is not None

    # -- valproate -------------------------------------------------------------------------

    async def valproate(self) -> ValproateDashboard:
        """The registry as the API computes it, with each patient's prescriber organisation."""
        if self._folder is not None:
            patients = await asyncio.to_thread(
                valproate_registry.gather_from_ndjson, self._folder.directory, self.terminology
            )
        else:
            patients = await valproate_registry.gather_from_server(
                self._server(), self.terminology, self.settings, self.as_of
            )
        built = valproate_registry.build_registry(
            patients,
            settings=self.settings,
            terminology=self.terminology,
            now=self.as_of,
            source=self.source.location,
        )
        prescribers = await self._prescribers(patients)
        return ValproateDashboard(
            registry=built,
            prescribers=prescribers,
            today=local_date(self.as_of, self.zone),
            due_soon_days=self.settings.valproate.review_warning_days,
        )

    async def _prescribers(
        self, patients: Sequence[valproate_registry.PatientData]
    ) -> dict[str, str]:
        requesters: dict[str, fhir.Reference | None] = {}
        for data in patients:
            requesters[data.patient_id] = self._valproate_requester(data)
        names = await self._names(
            "Organization",
            {
                ref.reference.removeprefix("Organization/")
                for ref in requesters.values()
                if ref is not None and ref.reference and ref.target_id("Organization")
            },
        )
        return {pid: _organisation_label(ref, names) for pid, ref in requesters.items()}

    def _valproate_requester(self, data: valproate_registry.PatientData) -> fhir.Reference | None:
        """The requester of the patient's current valproate request (the first, by id)."""
        by_ref: dict[str, tuple[fhir.MedicationRequest, dict[str, Any]]] = {}
        for raw in data.resources.get("MedicationRequest", []):
            try:
                parsed = fhir.MedicationRequest.model_validate(raw)
            except ValueError:
                continue
            by_ref[f"MedicationRequest/{parsed.id}"] = (parsed, raw)
        requests = [parsed for parsed, _ in by_ref.values()]
        record = _bare_record(data.patient_id, {"MedicationRequest": requests}, self.as_of)
        for product in sorted(
            valproate.valproate_in_use(record, self.terminology), key=lambda p: p.ref
        ):
            requester = by_ref.get(product.ref, (None, {}))[1].get("requester")
            if isinstance(requester, dict):
                try:
                    return fhir.Reference.model_validate(requester)
                except ValueError:
                    return None
        return None

    async def _names(self, resource_type: str, ids: set[str]) -> dict[str, str]:
        """``name`` of each Organization or Location (ids without one are left out)."""
        if self._folder is not None:
            return {
                i: name for i in ids if (name := self._folder.name_of(resource_type, i)) is not None
            }
        client = self._server()

        async def one(resource_id: str) -> tuple[str, str | None]:
            try:
                found = await client.read(resource_type, resource_id)
            except FhirError:
                return resource_id, None
            name = found.get("name")
            return resource_id, name if isinstance(name, str) else None

        results = await asyncio.gather(*(one(i) for i in sorted(ids)))
        return {i: name for i, name in results if name}

    # -- inpatients ------------------------------------------------------------------------

    async def inpatients(self) -> list[Inpatient]:
        """Every in-progress inpatient Encounter (R4 class IMP, ACUTE or NONAC), by ward."""
        if self._folder is not None:
            encounters = self._folder.of_type("Encounter")
        else:
            encounters = await self._server().search_all("Encounter?status=in-progress&_count=200")
        stays = [e for e in encounters if _is_inpatient_stay(e)]
        wards = await self._ward_names(stays)
        found = [self._inpatient(e, wards) for e in stays]
        return sorted(
            found,
            key=lambda i: (i.ward == UNASSIGNED_WARD, i.ward.name, i.bed or "~", i.patient_id),
        )

    def _inpatient(self, encounter: Mapping[str, Any], wards: Mapping[str, str]) -> Inpatient:
        ward_ref, ward_display, bed = _placement(encounter)
        if ward_ref is not None:
            ward = Ward(ward_ref, wards.get(ward_ref) or ward_display or ward_ref)
        else:
            ward = UNASSIGNED_WARD
        try:
            admitted = parse_when(_get(encounter, "period", "start"), self.zone)
        except ValueError:
            admitted = None
        subject = str(_get(encounter, "subject", "reference") or "")
        return Inpatient(
            patient_id=subject.removeprefix("Patient/"),
            encounter_id=str(encounter["id"]),
            ward=ward,
            bed=bed,
            admitted=admitted,
            encounter=encounter,
        )

    async def _ward_names(self, encounters: Sequence[Mapping[str, Any]]) -> dict[str, str]:
        return await self._names(
            "Location", {ref for e in encounters if (ref := _placement(e)[0]) is not None}
        )

    async def records(
        self, inpatients: Sequence[Inpatient], templates: Sequence[PrefetchTemplate]
    ) -> dict[str, PatientRecord]:
        """Each inpatient's record as of ``as_of``, by encounter id (what the hook would read)."""
        limit = asyncio.Semaphore(self.settings.dashboards.fhir_concurrency)

        async def one(inpatient: Inpatient) -> tuple[str, PatientRecord]:
            async with limit:
                return inpatient.encounter_id, await self._record(inpatient, templates)

        return dict(await asyncio.gather(*(one(i) for i in inpatients)))

    async def _record(
        self, inpatient: Inpatient, templates: Sequence[PrefetchTemplate]
    ) -> PatientRecord:
        context = {"patientId": inpatient.patient_id, "encounterId": inpatient.encounter_id}
        if self._folder is not None:
            templates = _typed_templates(templates)
            outcome = self._folder.outcome(inpatient.patient_id, templates)
        else:
            # The census already has the Encounter: give it as the prefetch of that key.
            census = {
                "resourceType": "Bundle",
                "type": "searchset",
                "entry": [{"resource": dict(inpatient.encounter)}],
            }
            prefetch = {t.key: census for t in templates if t.resource_type == "Encounter"}
            outcome = await resolve_prefetch(
                templates,
                context,
                prefetch,
                self._server(),
                timeout_seconds=_RECORD_TIMEOUT_SECONDS,
            )
        return build_record(
            hook="patient-view",
            context=context,
            templates=templates,
            outcome=outcome,
            now=self.as_of,
            zone=self.zone,
        )

    # -- what the pages and endpoints show --------------------------------------------------

    async def wards(self) -> list[WardSummary]:
        """Wards with inpatients now, and their long stays."""
        return summarise_wards(await self.inpatients(), settings=self.settings, as_of=self.as_of)

    async def long_stays(self) -> LongStayList:
        """Every inpatient's length of stay and discharge planning (the long-stay rule)."""
        inpatients = await self.inpatients()
        records = await self.records(inpatients, LONG_STAY_TEMPLATES)
        return build_long_stays(
            inpatients,
            records,
            settings=self.settings,
            terminology=self.terminology,
            as_of=self.as_of,
            source=self.source.describe(),
        )

    async def ward_board(self, ward_id: str) -> WardBoard:
        """One ward's inpatients with NEWS2, concerns in the window and open escalations."""
        inpatients = [i for i in await self.inpatients() if i.ward.id == ward_id]
        if inpatients:
            ward = inpatients[0].ward
        elif ward_id == UNASSIGNED_WARD.id:
            ward = UNASSIGNED_WARD
        else:  # a ward with nobody in it today
            names = await self._names("Location", {ward_id})
            ward = Ward(ward_id, names.get(ward_id, ward_id))
        records = await self.records(inpatients, WARD_TEMPLATES)
        return build_ward_board(
            ward,
            inpatients,
            records,
            settings=self.settings,
            terminology=self.terminology,
            as_of=self.as_of,
            source=self.source.describe(),
        )

    def _server(self) -> FhirClient:
        if self._client is None:
            raise DataUnavailableError("no FHIR server is configured for the population")
        return self._client


async def open_population(
    settings: Settings,
    terminology: Terminology,
    *,
    http: httpx.AsyncClient | None,
    now: datetime,
) -> Population:
    """The configured population (the FHIR server through ``http``, or the NDJSON folder)."""
    source = population_source(settings)
    client = None
    folder = None
    if source.kind == "fhir-server":
        if http is None:
            raise DataUnavailableError("reading the population from a FHIR server needs HTTP")
        client = FhirClient(
            http,
            source.location,
            access_token=settings.fhir_server_token,
            max_response_bytes=settings.max_fhir_response_bytes,
            max_pages=100_000,  # a population, not one patient: as the registry endpoint does
        )
    else:
        folder = await asyncio.to_thread(_Folder.read, Path(source.location))
    return Population(source, settings, terminology, client=client, folder=folder, now=now)


def _organisation_label(ref: fhir.Reference | None, names: Mapping[str, str]) -> str:
    if ref is None:
        return "Not recorded"
    org_id = ref.target_id("Organization")
    if org_id is not None:
        return names.get(org_id) or ref.display or f"Organization/{org_id}"
    if ref.display:
        return f"{ref.display} (no organisation recorded)"
    return "Not recorded"


def _bare_record(
    patient_id: str, resources: Mapping[str, Sequence[fhir.Resource]], now: datetime
) -> PatientRecord:
    return PatientRecord(
        hook="registry",
        context={"patientId": patient_id},
        now=now,
        zone=ZoneInfo("UTC"),
        patient=None,
        resources={kind: tuple(items) for kind, items in resources.items()},
    )


def _get(resource: Mapping[str, Any], *path: str) -> Any:
    value: Any = resource
    for key in path:
        if not isinstance(value, Mapping):
            return None
        value = value.get(key)
    return value


def _is_inpatient_stay(encounter: Mapping[str, Any]) -> bool:
    subject = _get(encounter, "subject", "reference")
    return (
        encounter.get("resourceType") == "Encounter"
        and isinstance(encounter.get("id"), str)
        and encounter.get("status") == "in-progress"
        and _get(encounter, "class", "code") in length_of_stay.INPATIENT_CLASSES
        and isinstance(subject, str)
        and subject.startswith("Patient/")
    )


def _physical_type(entry: Mapping[str, Any]) -> str | None:
    for coding in _get(entry, "physicalType", "coding") or []:
        if isinstance(coding, Mapping) and coding.get("code"):
            return str(coding["code"])
    return None


def _placement(encounter: Mapping[str, Any]) -> tuple[str | None, str | None, str | None]:
    """(ward Location id, its display, the bed's display) from the Encounter's current locations.

    Current: status active (or none) and no period end. The ward is the entry whose physical
    type is "wa" (ward), else the last current entry that names a Location; the bed is the
    entry of physical type "bd".
    """
    current = [
        entry
        for entry in encounter.get("location") or []
        if isinstance(entry, Mapping)
        and entry.get("status") in {None, "active"}
        and not _get(entry, "period", "end")
    ]
    ward: Mapping[str, Any] | None = None
    bed: str | None = None
    for entry in current:
        kind = _physical_type(entry)
        if kind == "bd":
            bed = _get(entry, "location", "display")
        elif kind == "wa" or (ward is None or _physical_type(ward) != "wa"):
            reference = _get(entry, "location", "reference")
            if isinstance(reference, str) and reference.startswith("Location/"):
                ward = entry
    if ward is None:
        return None, None, bed
    reference = str(_get(ward, "location", "reference")).removeprefix("Location/")
    display = _get(ward, "location", "display")
    return reference, display if isinstance(display, str) else None, bed


# -- the NDJSON folder ----------------------------------------------------------------------------

_SUBJECT_FIELDS = ("subject", "patient", "for")


@dataclass
class _Folder:
    """A Bulk Data export folder read into memory: resources by type, and by patient."""

    directory: Path
    transaction_time: datetime | None
    by_type: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    by_patient: dict[str, dict[str, list[dict[str, Any]]]] = field(default_factory=dict)

    @classmethod
    def read(cls, directory: Path) -> _Folder:
        """The folder's resources; read again only when a file changed (cached by stat)."""
        files = sorted(directory.glob("*.ndjson"))
        if not files:
            raise DataUnavailableError(f"no .ndjson files in the population folder {directory}")
        manifest = directory / MANIFEST_FILE
        signature = tuple(
            (p.name, st.st_mtime_ns, st.st_size)
            for p in [*files, manifest]
            if p.exists() and (st := p.stat())
        )
        cached = _FOLDERS.get(directory)
        if cached is not None and cached[0] == signature:
            return cached[1]
        folder = cls._parse(directory, files)
        _FOLDERS[directory] = (signature, folder)
        return folder

    @classmethod
    def _parse(cls, directory: Path, files: Sequence[Path]) -> _Folder:
        folder = cls(directory, read_transaction_time(directory))
        for resource in _ndjson(files):
            kind = str(resource.get("resourceType"))
            folder.by_type.setdefault(kind, []).append(resource)
            patient_id = _patient_of(resource)
            if patient_id is not None:
                folder.by_patient.setdefault(patient_id, {}).setdefault(kind, []).append(resource)
        return folder

    def of_type(self, kind: str) -> list[dict[str, Any]]:
        return self.by_type.get(kind, [])

    def name_of(self, kind: str, resource_id: str) -> str | None:
        for resource in self.of_type(kind):
            if resource.get("id") == resource_id and isinstance(resource.get("name"), str):
                return str(resource["name"])
        return None

    def outcome(self, patient_id: str, templates: Sequence[PrefetchTemplate]) -> FetchOutcome:
        """The patient's resources of each template's type, as if fetched from a server."""
        mine = self.by_patient.get(patient_id, {})
        outcome = FetchOutcome()
        for template in templates:
            outcome.resources[template.key] = list(mine.get(template.resource_type, []))
            outcome.sources[template.key] = "fhir-server"
        return outcome


# Parsed folders by path, with the (name, mtime, size) of their files when read. Read-only once
# built; a folder that changes on disk is read again on the next request.
_FOLDERS: dict[Path, tuple[tuple[tuple[str, int, int], ...], _Folder]] = {}


def _typed_templates(templates: Sequence[PrefetchTemplate]) -> tuple[PrefetchTemplate, ...]:
    """One template per resource type: a folder holds all of a patient's resources of a type."""
    return tuple(
        PrefetchTemplate(kind, f"{kind}?patient={{{{context.patientId}}}}", required=False)
        for kind in dict.fromkeys(t.resource_type for t in templates)
    )


def read_transaction_time(directory: Path) -> datetime | None:
    """``transactionTime`` of the folder's Bulk Data manifest, or None when there is none."""
    path = directory / MANIFEST_FILE
    if not path.is_file():
        return None
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
        when = datetime.fromisoformat(str(manifest["transactionTime"]).replace("Z", "+00:00"))
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise RequestError(f"{path}: not a Bulk Data manifest with a transactionTime") from exc
    return when if when.tzinfo else when.replace(tzinfo=UTC)


def _ndjson(files: Sequence[Path]) -> Iterator[dict[str, Any]]:
    for path in files:
        with path.open(encoding="utf-8") as lines:
            for number, line in enumerate(lines, start=1):
                if not line.strip():
                    continue
                try:
                    resource = json.loads(line)
                except json.JSONDecodeError as exc:
                    raise RequestError(f"{path.name}:{number}: not JSON ({exc.msg})") from exc
                if isinstance(resource, dict) and isinstance(resource.get("resourceType"), str):
                    yield resource


def _patient_of(resource: Mapping[str, Any]) -> str | None:
    if resource.get("resourceType") == "Patient":
        value = resource.get("id")
        return value if isinstance(value, str) else None
    for name in _SUBJECT_FIELDS:
        reference = _get(resource, name, "reference")
        if isinstance(reference, str) and reference.startswith("Patient/"):
            return reference.removeprefix("Patient/")
    return None


# -- valproate dashboard ---------------------------------------------------------------------------

# When the annual review (ARAF) falls due, relative to the population's day.
ARAF_BUCKETS: tuple[tuple[str, str], ...] = (
    ("overdue", "Review date passed"),
    ("due-soon", "Due soon"),
    ("due-90", "Due within 90 days"),
    ("later", "Due later"),
    ("none", "No ARAF review date"),
)


@dataclass(frozen=True)
class ValproateDashboard:
    registry: valproate_registry.Registry
    prescribers: Mapping[str, str]  # patient id -> prescriber organisation
    today: date
    due_soon_days: int

    def araf_bucket(self, row: valproate_registry.RegistryRow) -> str:
        if row.review_due is None:
            return "none"
        due = date.fromisoformat(row.review_due)
        if due < self.today:
            return "overdue"
        if due <= self.today + timedelta(days=self.due_soon_days):
            return "due-soon"
        if due <= self.today + timedelta(days=90):
            return "due-90"
        return "later"

    def araf_label(self, bucket: str) -> str:
        if bucket == "due-soon":
            return f"Due within {self.due_soon_days} days"
        return dict(ARAF_BUCKETS)[bucket]

    def by_araf(self) -> dict[str, int]:
        found = Counter(self.araf_bucket(row) for row in self.registry.rows)
        return {key: found.get(key, 0) for key, _ in ARAF_BUCKETS}

    def organisation(self, row: valproate_registry.RegistryRow) -> str:
        return self.prescribers.get(row.patient_id, "Not recorded")

    def by_organisation(self) -> list[tuple[str, dict[str, int], int]]:
        """(organisation, counts by action status, total), largest first."""
        table: dict[str, Counter[str]] = {}
        for row in self.registry.rows:
            table.setdefault(self.organisation(row), Counter())[row.action_status] += 1
        rows: list[tuple[str, dict[str, int], int]] = [
            (org, {s: counts.get(s, 0) for s in valproate_registry.ACTION_ORDER}, counts.total())
            for org, counts in table.items()
        ]
        return sorted(rows, key=lambda r: (-r[2], r[0]))

    def upcoming_reviews(self, days: int = 90) -> list[valproate_registry.RegistryRow]:
        """Rows whose ARAF review date has passed or falls within ``days``, soonest first."""
        limit = self.today + timedelta(days=days)
        rows = [
            r
            for r in self.registry.rows
            if r.review_due and date.fromisoformat(r.review_due) <= limit
        ]
        return sorted(rows, key=lambda r: (r.review_due or "", r.patient_id))

    def select(
        self,
        *,
        status: str | None = None,
        organisation: str | None = None,
        araf: str | None = None,
    ) -> tuple[valproate_registry.RegistryRow, ...]:
        return tuple(
            row
            for row in self.registry.rows
            if (status is None or row.action_status == status)
            and (organisation is None or self.organisation(row) == organisation)
            and (araf is None or self.araf_bucket(row) == araf)
        )

    def csv(self, rows: Sequence[valproate_registry.RegistryRow]) -> str:
        """The registry CSV (the API's columns) of ``rows``, plus the prescriber organisation."""
        text = valproate_registry.registry_csv(replace(self.registry, rows=tuple(rows)))
        reader = csv.reader(io.StringIO(text))
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        header = next(reader)
        writer.writerow([*header, "prescriber_organisation"])
        for values, row in zip(reader, rows, strict=True):
            writer.writerow([*values, self.organisation(row)])
        return out.getvalue()

    def as_json(self) -> dict[str, Any]:
        body = valproate_registry.registry_json(self.registry)
        for patient, row in zip(body["patients"], self.registry.rows, strict=True):
            patient["prescriber_organisation"] = self.organisation(row)
            patient["araf_due"] = self.araf_bucket(row)
        body["araf_due"] = self.by_araf()
        body["by_prescriber_organisation"] = [
            {"organisation": org, "counts": counts, "total": total}
            for org, counts, total in self.by_organisation()
        ]
        return body


# -- long stays ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class LongStayRow:
    patient_id: str
    name: str | None
    nhs_number: str | None
    ward: Ward
    bed: str | None
    encounter_ref: str
    admitted: date | None
    days: int | None  # completed days (None: the admission date is missing or in the future)
    band: Literal["short", "stranded", "super-stranded", "unknown"]
    expected_discharge: date | None
    expected_discharge_passed: bool
    plan_ref: str | None
    plan_shared: bool
    goals_recorded: bool
    problem: str | None  # why the length of stay could not be worked out
    data_gaps: tuple[str, ...]

    @property
    def day_number(self) -> int | None:
        return None if self.days is None else self.days + 1

    def as_dict(self) -> dict[str, Any]:
        return {
            "patient_id": self.patient_id,
            "name": self.name,
            "nhs_number": self.nhs_number,
            "ward_id": self.ward.id,
            "ward": self.ward.name,
            "bed": self.bed,
            "encounter": self.encounter_ref,
            "admitted": self.admitted.isoformat() if self.admitted else None,
            "days": self.days,
            "day_number": self.day_number,
            "band": self.band,
            "expected_discharge": (
                self.expected_discharge.isoformat() if self.expected_discharge else None
            ),
            "expected_discharge_passed": self.expected_discharge_passed,
            "discharge_plan": self.plan_ref,
            "plan_shared_with_patient": self.plan_shared,
            "what_matters_goals": self.goals_recorded,
            "problem": self.problem,
            "data_gaps": list(self.data_gaps),
        }


LONG_STAY_CSV_COLUMNS = (
    "ward",
    "bed",
    "patient_id",
    "nhs_number",
    "name",
    "admitted",
    "days",
    "day_number",
    "band",
    "expected_discharge",
    "expected_discharge_passed",
    "plan_shared_with_patient",
    "what_matters_goals",
    "problem",
    "data_gaps",
)
# Histogram bins of completed days (a week each; the last is open-ended).
LOS_BINS: tuple[tuple[int, int | None], ...] = (
    (0, 6),
    (7, 13),
    (14, 20),
    (21, 27),
    (28, 34),
    (35, 41),
    (42, None),
)


@dataclass(frozen=True)
class LongStayList:
    as_of: datetime
    source: str
    stranded_days: int
    super_stranded_days: int
    rows: tuple[LongStayRow, ...]  # by ward, longest stay first

    def counts(self) -> dict[str, int]:
        long = [r for r in self.rows if r.band in {"stranded", "super-stranded"}]
        return {
            "inpatients": len(self.rows),
            "stranded": len(long),  # 7+ days, super-stranded included (the NHS usage)
            "super_stranded": sum(r.band == "super-stranded" for r in self.rows),
            "long_stay_without_expected_discharge": sum(r.expected_discharge is None for r in long),
            "long_stay_expected_discharge_passed": sum(r.expected_discharge_passed for r in long),
            "length_unknown": sum(r.band == "unknown" for r in self.rows),
        }

    def histogram(self) -> list[tuple[str, int, str]]:
        """(label, patients, band of the bin) for the distribution of completed days."""
        out = []
        for low, high in LOS_BINS:
            found = sum(
                r.days is not None and r.days >= low and (high is None or r.days <= high)
                for r in self.rows
            )
            label = f"{low}+" if high is None else f"{low}-{high}"
            band = (
                "super-stranded"
                if low >= self.super_stranded_days
                else "stranded"
                if low >= self.stranded_days
                else "short"
            )
            out.append((label, found, band))
        return out

    def wards(self) -> list[tuple[Ward, list[LongStayRow]]]:
        grouped: dict[Ward, list[LongStayRow]] = {}
        for row in self.rows:
            grouped.setdefault(row.ward, []).append(row)
        return sorted(grouped.items(), key=lambda item: (item[0] == UNASSIGNED_WARD, item[0].name))

    def select(self, *, ward: str | None = None, band: str | None = None) -> LongStayList:
        rows = tuple(
            r
            for r in self.rows
            if (ward is None or r.ward.id == ward)
            and (
                band is None
                or r.band == band
                or (band == "stranded-or-longer" and r.band in {"stranded", "super-stranded"})
            )
        )
        return replace(self, rows=rows)

    def csv(self) -> str:
        out = io.StringIO()
        writer = csv.DictWriter(out, fieldnames=LONG_STAY_CSV_COLUMNS, lineterminator="\n")
        writer.writeheader()
        for row in self.rows:
            values = row.as_dict()
            values["data_gaps"] = "; ".join(row.data_gaps)
            writer.writerow(
                {k: "" if values.get(k) is None else values[k] for k in LONG_STAY_CSV_COLUMNS}
            )
        return out.getvalue()

    def as_json(self) -> dict[str, Any]:
        return {
            "as_of": self.as_of.isoformat(),
            "source": self.source,
            "thresholds": {
                "stranded_days": self.stranded_days,
                "super_stranded_days": self.super_stranded_days,
            },
            "counts": self.counts(),
            "histogram": [
                {"days": label, "patients": n, "band": band} for label, n, band in self.histogram()
            ],
            "patients": [row.as_dict() for row in self.rows],
        }


def build_long_stays(
    inpatients: Sequence[Inpatient],
    records: Mapping[str, PatientRecord],
    *,
    settings: Settings,
    terminology: Terminology,
    as_of: datetime,
    source: str,
) -> LongStayList:
    """Length of stay and discharge planning of every inpatient, with the long-stay rule. Pure."""
    rows = [
        _long_stay_row(i, records[i.encounter_id], settings, terminology)
        for i in inpatients
        if i.encounter_id in records
    ]
    rows.sort(
        key=lambda r: (
            r.ward == UNASSIGNED_WARD,
            r.ward.name,
            -(r.days if r.days is not None else 10**6),  # unknown length first: look at it
            r.patient_id,
        )
    )
    return LongStayList(
        as_of=as_of,
        source=source,
        stranded_days=settings.long_stay.stranded_days,
        super_stranded_days=settings.long_stay.super_stranded_days,
        rows=tuple(rows),
    )


def _long_stay_row(
    inpatient: Inpatient, record: PatientRecord, settings: Settings, terminology: Terminology
) -> LongStayRow:
    encounter = fhir.Encounter.model_validate(inpatient.encounter)
    today = local_date(record.now, record.zone)
    start = inpatient.admitted
    name, nhs_number = _identity(record)
    gaps = _gaps(record)
    if start is None or start > record.now:
        problem = "no admission date" if start is None else "admission date in the future"
        return LongStayRow(
            patient_id=inpatient.patient_id,
            name=name,
            nhs_number=nhs_number,
            ward=inpatient.ward,
            bed=inpatient.bed,
            encounter_ref=f"Encounter/{inpatient.encounter_id}",
            admitted=local_date(start, record.zone) if start else None,
            days=None,
            band="unknown",
            expected_discharge=None,
            expected_discharge_passed=False,
            plan_ref=None,
            plan_shared=False,
            goals_recorded=False,
            problem=problem,
            data_gaps=gaps,
        )
    # The rule's own count: calendar days on the trust's wall clock (rules/length_of_stay.py).
    days = (today - local_date(start, record.zone)).days
    stay = length_of_stay.assess_stay(record, encounter, days, settings.long_stay, terminology)
    band: Literal["short", "stranded", "super-stranded"] = (
        "super-stranded"
        if stay.band == "super-stranded"
        else "stranded"
        if stay.band == "stranded"
        else "short"
    )
    return LongStayRow(
        patient_id=inpatient.patient_id,
        name=name,
        nhs_number=nhs_number,
        ward=inpatient.ward,
        bed=inpatient.bed,
        encounter_ref=stay.encounter_ref,
        admitted=local_date(start, record.zone),
        days=stay.days,
        band=band,
        expected_discharge=stay.expected_discharge,
        expected_discharge_passed=(
            stay.expected_discharge is not None and stay.expected_discharge < today
        ),
        plan_ref=stay.plan_ref,
        plan_shared=stay.plan_shared_with_patient,
        goals_recorded=stay.goals_recorded,
        problem=None,
        data_gaps=gaps,
    )


def _identity(record: PatientRecord) -> tuple[str | None, str | None]:
    patient = record.patient
    if patient is None:
        return None, None
    name = None
    for entry in sorted(patient.name, key=lambda n: n.use != "official"):
        parts = [*entry.given, entry.family or ""]
        text = entry.text or " ".join(p for p in parts if p)
        if text:
            name = text
            break
    nhs = next(
        (
            i.value
            for i in patient.identifier
            if i.system == valproate_registry.NHS_NUMBER_SYSTEM and i.value
        ),
        None,
    )
    return name, nhs


def _gaps(record: PatientRecord) -> tuple[str, ...]:
    return tuple(f"{kind}: {why}" for kind, why in sorted(record.unavailable.items()))


# -- ward data --------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class News2Summary:
    status: Literal["scored", "incomplete", "not-applicable", "no-vitals", "unavailable"]
    total: int | None
    band: str | None  # Band value when scored
    partial_total: int | None
    minimum_band: str | None  # what an incomplete set already guarantees
    missing: tuple[str, ...]  # parameter labels
    stale: tuple[str, ...]
    reason: str | None
    latest_reading: datetime | None

    @property
    def rank(self) -> int:
        """For sorting: the band, or the band an incomplete set has already reached."""
        shown = self.band or self.minimum_band
        return Band(shown).rank + 1 if shown else 0

    @property
    def label(self) -> str:
        if self.status == "scored":
            return f"{self.total} ({self.band})"
        if self.status == "incomplete":
            missing = ", ".join(self.missing) or "parameters"
            floor = f"at least {self.partial_total}" if self.partial_total else "not scored"
            band = f", {self.minimum_band}" if self.minimum_band else ""
            return f"Incomplete ({floor}{band}): no {missing}"
        if self.status == "not-applicable":
            return f"Not used: {self.reason}"
        if self.status == "unavailable":
            return f"Could not check: {self.reason}"
        if self.stale:
            return "No current vital signs (the last set is too old to score)"
        return "No vital signs recorded"

    def as_dict(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "total": self.total,
            "band": self.band,
            "partial_total": self.partial_total,
            "minimum_band": self.minimum_band,
            "missing": list(self.missing),
            "stale": list(self.stale),
            "reason": self.reason,
            "latest_reading": self.latest_reading.isoformat() if self.latest_reading else None,
            "label": self.label,
        }


@dataclass(frozen=True, slots=True)
class ConcernSummary:
    reference: str
    level: str | None
    level_display: str
    who: str
    said_at: datetime
    escalates: bool
    sentence: str

    def as_dict(self) -> dict[str, Any]:
        return {
            "observation": self.reference,
            "level": self.level,
            "level_display": self.level_display,
            "who": self.who,
            "said_at": self.said_at.isoformat(),
            "escalates": self.escalates,
            "text": self.sentence,
        }


@dataclass(frozen=True, slots=True)
class EscalationSummary:
    reference: str
    status: str
    priority: str | None
    authored_on: str | None
    concern: str | None

    def as_dict(self) -> dict[str, Any]:
        return {
            "task": self.reference,
            "status": self.status,
            "priority": self.priority,
            "authored_on": self.authored_on,
            "concern": self.concern,
        }


@dataclass(frozen=True, slots=True)
class WardPatient:
    patient_id: str
    name: str | None
    nhs_number: str | None
    bed: str | None
    encounter_ref: str
    admitted: date | None
    news2: News2Summary
    concerns: tuple[ConcernSummary, ...]  # in the concern window, newest first
    open_escalations: tuple[EscalationSummary, ...]
    data_gaps: tuple[str, ...]

    @property
    def unanswered_worry(self) -> bool:
        """A worried/worse concern in the window with no Martha's Rule call standing for it."""
        asked = {e.concern for e in self.open_escalations}
        return any(c.escalates and c.reference not in asked for c in self.concerns)

    def as_dict(self) -> dict[str, Any]:
        return {
            "patient_id": self.patient_id,
            "name": self.name,
            "nhs_number": self.nhs_number,
            "bed": self.bed,
            "encounter": self.encounter_ref,
            "admitted": self.admitted.isoformat() if self.admitted else None,
            "news2": self.news2.as_dict(),
            "concerns": [c.as_dict() for c in self.concerns],
            "open_escalations": [e.as_dict() for e in self.open_escalations],
            "worry_without_open_escalation": self.unanswered_worry,
            "data_gaps": list(self.data_gaps),
        }


@dataclass(frozen=True)
class WardBoard:
    ward: Ward
    as_of: datetime
    source: str
    concern_window_hours: int
    patients: tuple[WardPatient, ...]  # most in need first

    def counts(self) -> dict[str, int]:
        return {
            "inpatients": len(self.patients),
            "news2_high": sum(p.news2.band == "high" for p in self.patients),
            "news2_medium": sum(p.news2.band == "medium" for p in self.patients),
            "news2_incomplete_or_missing": sum(
                p.news2.status in {"incomplete", "no-vitals", "unavailable"} for p in self.patients
            ),
            "with_concerns": sum(bool(p.concerns) for p in self.patients),
            "worried_or_worse": sum(any(c.escalates for c in p.concerns) for p in self.patients),
            "open_escalations": sum(len(p.open_escalations) for p in self.patients),
            "worry_without_open_escalation": sum(p.unanswered_worry for p in self.patients),
        }

    def as_json(self) -> dict[str, Any]:
        return {
            "ward": {"id": self.ward.id, "name": self.ward.name},
            "as_of": self.as_of.isoformat(),
            "source": self.source,
            "concern_window_hours": self.concern_window_hours,
            "counts": self.counts(),
            "patients": [p.as_dict() for p in self.patients],
        }


def build_ward_board(
    ward: Ward,
    inpatients: Sequence[Inpatient],
    records: Mapping[str, PatientRecord],
    *,
    settings: Settings,
    terminology: Terminology,
    as_of: datetime,
    source: str,
) -> WardBoard:
    """NEWS2, concerns in the window and open escalations of a ward's inpatients. Pure."""
    window = timedelta(hours=settings.news2.concern_window_hours)
    patients = [
        _ward_patient(i, records[i.encounter_id], settings, terminology, window)
        for i in inpatients
        if i.ward == ward and i.encounter_id in records
    ]
    patients.sort(
        key=lambda p: (
            not p.unanswered_worry,
            -p.news2.rank,
            -(p.news2.total if p.news2.total is not None else p.news2.partial_total or 0),
            not p.concerns,
            p.bed or "~",
            p.patient_id,
        )
    )
    return WardBoard(
        ward=ward,
        as_of=as_of,
        source=source,
        concern_window_hours=settings.news2.concern_window_hours,
        patients=tuple(patients),
    )


def _ward_patient(
    inpatient: Inpatient,
    record: PatientRecord,
    settings: Settings,
    terminology: Terminology,
    window: timedelta,
) -> WardPatient:
    name, nhs_number = _identity(record)
    concerns = concern.recent_concerns(record, terminology, window=window)
    return WardPatient(
        patient_id=inpatient.patient_id,
        name=name,
        nhs_number=nhs_number,
        bed=inpatient.bed,
        encounter_ref=f"Encounter/{inpatient.encounter_id}",
        admitted=local_date(inpatient.admitted, record.zone) if inpatient.admitted else None,
        news2=_news2(record, settings, terminology),
        concerns=tuple(
            ConcernSummary(
                reference=c.reference,
                level=c.level,
                level_display=c.level_display,
                who=c.who,
                said_at=c.said_at,
                escalates=c.escalates,
                sentence=c.sentence(),
            )
            for c in concerns
        ),
        open_escalations=_open_escalations(record),
        data_gaps=_gaps(record),
    )


def _news2(record: PatientRecord, settings: Settings, terminology: Terminology) -> News2Summary:
    if (why := record.why_unavailable("Observation")) is not None:
        return News2Summary("unavailable", None, None, None, None, (), (), why, None)
    assessment = vitals.assess_record(record, settings.news2, terminology)
    result = assessment.result
    readings = [
        reading.taken_at
        for name in (
            "respiration_rate",
            "spo2",
            "on_oxygen",
            "systolic_bp",
            "pulse",
            "consciousness",
            "temperature",
        )
        if (reading := getattr(assessment.inputs.vitals, name)) is not None
    ]
    latest = max(readings) if readings else None
    missing = tuple(vitals.parameter_label(p) for p in result.missing)
    stale = tuple(vitals.parameter_label(p) for p in result.stale)
    if result.status == "scored":
        status: Literal["scored", "incomplete", "not-applicable", "no-vitals"] = "scored"
    elif result.status == "not-applicable":
        status = "not-applicable"
    elif len(result.missing) == len(Parameter):
        status = "no-vitals"  # nothing current: no reading at all, or only stale ones
    else:
        status = "incomplete"
    return News2Summary(
        status=status,
        total=result.total,
        band=result.band.value if result.band else None,
        partial_total=result.partial_total,
        minimum_band=result.minimum_band.value if result.minimum_band else None,
        missing=missing,
        stale=stale,
        reason=result.reason,
        latest_reading=latest,
    )


def _open_escalations(record: PatientRecord) -> tuple[EscalationSummary, ...]:
    found = []
    for task in record.of_type(fhir.Task):
        if task.status not in OPEN_TASK_STATUSES or task.code is None:
            continue
        if not any(
            c.system == concern.MARTHAS_RULE_SYSTEM and c.code == concern.MARTHAS_RULE_CALL
            for c in task.code.coding
        ):
            continue
        reason = task.reason_reference
        concern_id = reason.target_id("Observation") if reason is not None else None
        found.append(
            EscalationSummary(
                reference=f"Task/{task.id}",
                status=task.status,
                priority=task.priority,
                authored_on=task.authored_on,
                concern=f"Observation/{concern_id}" if concern_id else None,
            )
        )
    return tuple(sorted(found, key=lambda e: (e.authored_on or "", e.reference), reverse=True))


@dataclass(frozen=True, slots=True)
class WardSummary:
    ward: Ward
    inpatients: int
    stranded: int  # 7+ days (super-stranded included)
    super_stranded: int

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.ward.id,
            "name": self.ward.name,
            "inpatients": self.inpatients,
            "stranded": self.stranded,
            "super_stranded": self.super_stranded,
        }


def summarise_wards(
    inpatients: Sequence[Inpatient], *, settings: Settings, as_of: datetime
) -> list[WardSummary]:
    """Wards with inpatients today, and their long stays (from the Encounters alone). Pure."""
    zone = ZoneInfo(settings.timezone)
    today = local_date(as_of, zone)
    grouped: dict[Ward, list[int | None]] = {}
    for inpatient in inpatients:
        admitted = inpatient.admitted
        days = (
            (today - local_date(admitted, zone)).days
            if admitted is not None and admitted <= as_of
            else None
        )
        grouped.setdefault(inpatient.ward, []).append(days)
    stranded = settings.long_stay.stranded_days
    super_stranded = settings.long_stay.super_stranded_days
    return sorted(
        (
            WardSummary(
                ward=ward,
                inpatients=len(days),
                stranded=sum(d is not None and d >= stranded for d in days),
                super_stranded=sum(d is not None and d >= super_stranded for d in days),
            )
            for ward, days in grouped.items()
        ),
        key=lambda s: (s.ward == UNASSIGNED_WARD, s.ward.name),
    )


# -- demo data ----------------------------------------------------------------------------------------

# Demo feedback: (service, hook, rule, indicator, cards a day, accepted share, overridden share,
# override reasons offered). Shares are invented for the demo; they are not measurements.
_DEMO_RULES: tuple[tuple[str, str, str, str, int, float, float, tuple[str, ...]], ...] = (
    (
        "long-stay",
        "patient-view",
        "long-stay.stranded",
        "warning",
        6,
        0.35,
        0.45,
        ("action-completed", "need-more-info", "cds-not-applicable"),
    ),
    (
        "long-stay",
        "patient-view",
        "long-stay.super-stranded",
        "warning",
        3,
        0.55,
        0.3,
        ("action-completed", "need-more-info"),
    ),
    (
        "news2-concern",
        "patient-view",
        "news2.scored",
        "info",
        9,
        0.2,
        0.6,
        ("cds-not-applicable", "wrong-time-workflow", "action-completed"),
    ),
    (
        "news2-concern",
        "patient-view",
        "patient-concern.escalate",
        "critical",
        1,
        0.8,
        0.1,
        ("action-completed",),
    ),
    (
        "valproate",
        "order-sign",
        "valproate.ppp-missing",
        "critical",
        2,
        0.6,
        0.3,
        ("patient-ineligible", "indication-order-exists", "expert-contradicts"),
    ),
    (
        "valproate",
        "order-sign",
        "valproate.male-advice",
        "info",
        2,
        0.3,
        0.5,
        ("cds-not-applicable", "action-completed"),
    ),
    (
        "hrt-joint-items",
        "order-sign",
        "hrt-joint-items.unopposed",
        "critical",
        1,
        0.7,
        0.25,
        ("patient-ineligible", "action-completed"),
    ),
)


def demo_feedback(*, as_of: datetime, days: int = 28, seed: int = 2026) -> dict[str, Any]:
    """Deterministic invented cards and feedback (CDS Hooks shape) for the demo's fatigue page."""
    rng = random.Random(f"{seed}-feedback")
    cards: list[dict[str, Any]] = []
    feedback: list[dict[str, Any]] = []
    start = as_of - timedelta(days=days)
    for day in range(days):
        for service, hook, rule, indicator, per_day, accepted, overridden, reasons in _DEMO_RULES:
            for n in range(max(0, per_day + rng.randint(-1, 2))):
                issued = start + timedelta(days=day, minutes=rng.randint(7 * 60, 19 * 60))
                uuid = f"demo-{day:02d}-{rule}-{n}"
                cards.append(
                    {
                        "card": uuid,
                        "service": service,
                        "hook": hook,
                        "rule": rule,
                        "indicator": indicator,
                        "issued": issued.isoformat(),
                    }
                )
                draw = rng.random()
                when = (issued + timedelta(minutes=rng.randint(1, 30))).isoformat()
                if draw < accepted:
                    feedback.append(
                        {"card": uuid, "service": service, "outcome": "accepted", "time": when}
                    )
                elif draw < accepted + overridden:
                    reason = rng.choice(reasons) if rng.random() < 0.85 else None
                    feedback.append(
                        {
                            "card": uuid,
                            "service": service,
                            "outcome": "overridden",
                            "time": when,
                            "reason": reason,
                        }
                    )
    return {
        "note": "Invented demo feedback for the alert-fatigue page; not measurements.",
        "cards": cards,
        "feedback": feedback,
    }


def load_demo_feedback(path: Path, store: FeedbackStore) -> None:
    """Put a demo feedback file (``demo_feedback``'s shape) into ``store``."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        cards = [
            IssuedCard(
                card_uuid=c["card"],
                service_id=c["service"],
                hook=c["hook"],
                rule_id=c["rule"],
                indicator=c["indicator"],
                issued_at=datetime.fromisoformat(c["issued"]),
            )
            for c in data["cards"]
        ]
        entries = [
            FeedbackEntry(
                card_uuid=f["card"],
                service_id=f["service"],
                outcome=f["outcome"],
                outcome_timestamp=datetime.fromisoformat(f["time"]),
                override_reason_system=NON_ADHERENCE_SYSTEM if f.get("reason") else None,
                override_reason_code=f.get("reason"),
                override_reason_display=OVERRIDE_REASON_DISPLAYS.get(f.get("reason") or ""),
            )
            for f in data["feedback"]
        ]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise RequestError(f"{path}: not a demo feedback file") from exc
    store.record_cards(cards)
    store.record_feedback(entries)


# In-memory stores of demo feedback files, by path, with the file's (mtime, size) when loaded.
_DEMO_STORES: dict[Path, tuple[tuple[int, int], FeedbackStore]] = {}


def demo_feedback_store(directory: Path, *, timezone: str) -> FeedbackStore | None:
    """The folder's demo feedback (``cds-feedback.json``) in an in-memory store, or None."""
    path = directory / DEMO_FEEDBACK_FILE
    if not path.is_file():
        return None
    stat = path.stat()
    signature = (stat.st_mtime_ns, stat.st_size)
    cached = _DEMO_STORES.get(path)
    if cached is not None and cached[0] == signature:
        return cached[1]
    store = open_feedback_store("sqlite:///:memory:", timezone=timezone)
    load_demo_feedback(path, store)
    _DEMO_STORES[path] = (signature, store)
    if cached is not None:
        cached[1].close()
    return store


def write_demo_population(
    directory: Path,
    *,
    terminology: Terminology,
    patients: int = 300,
    seed: int = 2026,
    as_of: date = synth.DEFAULT_AS_OF,
    valproate_rate: float = 0.25,
) -> list[Path]:
    """The committed demo: synthetic NDJSON with the hospital, its manifest and demo feedback."""
    population = synth.generate(
        patients=patients,
        seed=seed,
        terminology=terminology,
        as_of=as_of,
        valproate_rate=valproate_rate,
        hospital=True,
    )
    for stale in directory.glob("*.ndjson"):
        stale.unlink()
    paths = synth.write_ndjson(population, directory)
    paths.append(synth.write_ground_truth(population, directory, seed=seed, as_of=as_of))
    when = synth.snapshot_time(as_of)
    manifest = {
        "transactionTime": when.isoformat().replace("+00:00", "Z"),
        "request": f"synth.generate(patients={patients}, seed={seed}, hospital=True)",
        "requiresAccessToken": False,
        "output": [{"type": p.stem, "url": p.name} for p in paths if p.suffix == ".ndjson"],
        "error": [],
    }
    manifest_path = directory / MANIFEST_FILE
    manifest_path.write_text(json.dumps(manifest, indent=1) + "\n", encoding="utf-8")
    feedback_path = directory / DEMO_FEEDBACK_FILE
    feedback_path.write_text(
        json.dumps(demo_feedback(as_of=when, seed=seed), indent=None, separators=(",", ":")) + "\n",
        encoding="utf-8",
    )
    return [*paths, manifest_path, feedback_path]


if __name__ == "__main__":  # python -m fhir_safety.services.population [folder]
    import sys

    from fhir_safety.terminology import load_default_terminology

    target = Path(sys.argv[1]) if len(sys.argv) > 1 else Path("data/demo-population")
    written = write_demo_population(target, terminology=load_default_terminology())
    sys.stdout.write(f"wrote {len(written)} files to {target}\n")
