"""Population loading (NDJSON folder and FHIR server) and the long-stay and ward computations.

The synthetic hospital (``synth.generate(hospital=True)``) records each stay's ground truth
(days, ward, expected discharge date, concern, escalation) worked out from the generator's own
choices, so the rules' answers are checked against it independently.
"""

from __future__ import annotations

import json
from collections import Counter
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from fhir.resources.R4B.careplan import CarePlan
from fhir.resources.R4B.encounter import Encounter
from fhir.resources.R4B.goal import Goal
from fhir.resources.R4B.location import Location
from fhir.resources.R4B.medicationrequest import MedicationRequest
from fhir.resources.R4B.observation import Observation
from fhir.resources.R4B.organization import Organization
from fhir.resources.R4B.relatedperson import RelatedPerson
from fhir.resources.R4B.task import Task
from pytest_httpx import HTTPXMock

from fhir_safety.config import Settings
from fhir_safety.errors import DataUnavailableError, RequestError
from fhir_safety.rules import concern
from fhir_safety.services import population as pop
from fhir_safety.services import registry, synth
from fhir_safety.terminology import Terminology
from tests.unit.web.fake_server import BASE, population_server

AS_OF = date(2026, 11, 26)
NOW = datetime(2026, 11, 26, 9, 0, tzinfo=UTC)
LATER = datetime(2027, 3, 1, 12, 0, tzinfo=UTC)  # the clock; an export must not use it
SEED = 7
R4B_MODELS = {
    "Encounter": Encounter,
    "CarePlan": CarePlan,
    "Goal": Goal,
    "Observation": Observation,
    "Task": Task,
    "Location": Location,
    "Organization": Organization,
    "RelatedPerson": RelatedPerson,
    "MedicationRequest": MedicationRequest,
}


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory, terminology: Terminology) -> Path:
    directory = tmp_path_factory.mktemp("population")
    pop.write_demo_population(
        directory, terminology=terminology, patients=500, seed=SEED, valproate_rate=0.3
    )
    return directory


@pytest.fixture(scope="module")
def truth(folder: Path) -> list[dict[str, Any]]:
    patients: list[dict[str, Any]] = json.loads((folder / "ground-truth.json").read_text())[
        "patients"
    ]
    return patients


@pytest.fixture(scope="module")
def stays(truth: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {p["patient_id"]: p["stay"] for p in truth if "stay" in p}


def ndjson_settings(directory: Path, **overrides: Any) -> Settings:
    return Settings(dashboards={"ndjson_dir": directory}, **overrides)


def server_settings() -> Settings:
    return Settings(fhir_server_url=BASE)


def resources_in(directory: Path) -> list[dict[str, Any]]:
    found = []
    for path in sorted(directory.glob("*.ndjson")):
        found += [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return found


async def open_folder(
    directory: Path, terminology: Terminology, **overrides: Any
) -> pop.Population:
    settings = ndjson_settings(directory, **overrides)
    return await pop.open_population(settings, terminology, http=None, now=LATER)


def write_folder(directory: Path, resources: list[dict[str, Any]], *, as_of: datetime) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    by_type: dict[str, list[str]] = {}
    for resource in resources:
        by_type.setdefault(resource["resourceType"], []).append(json.dumps(resource))
    for kind, lines in by_type.items():
        (directory / f"{kind}.ndjson").write_text("\n".join(lines) + "\n")
    manifest = {"transactionTime": as_of.isoformat(), "output": [], "error": []}
    (directory / pop.MANIFEST_FILE).write_text(json.dumps(manifest))
    return directory


def inpatient(
    pid: str,
    start: str | None,
    *,
    ward: str | None = "ward-a",
    cls: str = "IMP",
    status: str = "in-progress",
    extension: list[dict[str, Any]] | None = None,
) -> list[dict[str, Any]]:
    encounter: dict[str, Any] = {
        "resourceType": "Encounter",
        "id": f"{pid}-enc",
        "status": status,
        "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": cls},
        "subject": {"reference": f"Patient/{pid}"},
    }
    if start is not None:
        encounter["period"] = {"start": start}
    if ward is not None:
        encounter["location"] = [{"location": {"reference": f"Location/{ward}"}}]
    if extension:
        encounter["extension"] = extension
    patient = {"resourceType": "Patient", "id": pid, "gender": "female", "birthDate": "1950-01-01"}
    return [patient, encounter]


# -- sources -------------------------------------------------------------------------------------


def test_population_source_auto_with_server_reads_the_server() -> None:
    source = pop.population_source(server_settings())
    assert (source.kind, source.location) == ("fhir-server", BASE)


def test_population_source_auto_without_server_reads_the_demo_folder() -> None:
    source = pop.population_source(Settings())
    assert source.kind == "ndjson"
    assert Path(source.location) == pop.DEMO_DIR


def test_population_source_forced_ndjson_ignores_the_server(tmp_path: Path) -> None:
    settings = Settings(
        fhir_server_url=BASE,
        dashboards={"population_source": "ndjson", "ndjson_dir": tmp_path},
    )
    assert pop.population_source(settings).kind == "ndjson"


def test_population_source_forced_server_without_url_is_unavailable() -> None:
    with pytest.raises(DataUnavailableError):
        pop.population_source(Settings(dashboards={"population_source": "fhir-server"}))


async def test_folder_as_of_is_the_manifest_transaction_time(
    folder: Path, terminology: Terminology
) -> None:
    population = await open_folder(folder, terminology)
    assert population.as_of == synth.snapshot_time(AS_OF)
    assert population.is_export


async def test_folder_without_manifest_is_read_as_of_the_clock(
    tmp_path: Path, terminology: Terminology
) -> None:
    write_folder(tmp_path, inpatient("p1", "2027-02-20T10:00:00Z"), as_of=NOW)
    (tmp_path / pop.MANIFEST_FILE).unlink()
    population = await open_folder(tmp_path, terminology)
    assert population.as_of == LATER


async def test_folder_without_ndjson_is_unavailable(
    tmp_path: Path, terminology: Terminology
) -> None:
    with pytest.raises(DataUnavailableError, match=r"no \.ndjson"):
        await open_folder(tmp_path, terminology)


async def test_folder_with_a_broken_line_names_it(tmp_path: Path, terminology: Terminology) -> None:
    (tmp_path / "Encounter.ndjson").write_text('{"resourceType": "Encounter"}\n{broken\n')
    with pytest.raises(RequestError, match=r"Encounter.ndjson:2"):
        await open_folder(tmp_path, terminology)


async def test_folder_is_read_again_when_a_file_changes(
    tmp_path: Path, terminology: Terminology
) -> None:
    write_folder(tmp_path, inpatient("p1", "2026-11-20T10:00:00Z"), as_of=NOW)
    assert len(await (await open_folder(tmp_path, terminology)).inpatients()) == 1
    write_folder(
        tmp_path,
        inpatient("p1", "2026-11-20T10:00:00Z") + inpatient("p2", "2026-11-21T10:00:00Z"),
        as_of=NOW,
    )
    assert len(await (await open_folder(tmp_path, terminology)).inpatients()) == 2


# -- census ----------------------------------------------------------------------------------------


async def test_census_takes_in_progress_inpatient_classes_only(
    tmp_path: Path, terminology: Terminology
) -> None:
    resources = (
        inpatient("imp", "2026-11-20T10:00:00Z")
        + inpatient("acute", "2026-11-20T10:00:00Z", cls="ACUTE")
        + inpatient("nonac", "2026-11-20T10:00:00Z", cls="NONAC")
        + inpatient("outpatient", "2026-11-20T10:00:00Z", cls="AMB")
        + inpatient("emergency", "2026-11-20T10:00:00Z", cls="EMER")
        + inpatient("gone-home", "2026-11-20T10:00:00Z", status="finished")
    )
    write_folder(tmp_path, resources, as_of=NOW)
    found = await (await open_folder(tmp_path, terminology)).inpatients()
    assert sorted(i.patient_id for i in found) == ["acute", "imp", "nonac"]


async def test_census_ward_is_the_ward_location_and_bed_its_bed(
    tmp_path: Path, terminology: Terminology
) -> None:
    resources = inpatient("p1", "2026-11-20T10:00:00Z", ward=None)
    resources[1]["location"] = [
        {"location": {"reference": "Location/old-ward"}, "period": {"end": "2026-11-21"}},
        {
            "location": {"reference": "Location/room-3"},
            "physicalType": {"coding": [{"code": "ro"}]},
        },
        {
            "location": {"reference": "Location/ward-7", "display": "Ward 7"},
            "physicalType": {"coding": [{"code": "wa"}]},
        },
        {"location": {"display": "Bed 12"}, "physicalType": {"coding": [{"code": "bd"}]}},
    ]
    location = {"resourceType": "Location", "id": "ward-7", "name": "Ward 7 (Cardiology)"}
    write_folder(tmp_path, [*resources, location], as_of=NOW)
    [found] = await (await open_folder(tmp_path, terminology)).inpatients()
    assert found.ward == pop.Ward("ward-7", "Ward 7 (Cardiology)")
    assert found.bed == "Bed 12"


async def test_census_encounter_without_a_ward_is_unassigned(
    tmp_path: Path, terminology: Terminology
) -> None:
    write_folder(tmp_path, inpatient("p1", "2026-11-20T10:00:00Z", ward=None), as_of=NOW)
    [found] = await (await open_folder(tmp_path, terminology)).inpatients()
    assert found.ward == pop.UNASSIGNED_WARD


# -- long stays ------------------------------------------------------------------------------------


def band_for(days: int) -> str:
    return "super-stranded" if days >= 21 else "stranded" if days >= 7 else "short"


async def test_long_stays_match_ground_truth(
    folder: Path, terminology: Terminology, stays: dict[str, dict[str, Any]]
) -> None:
    listing = await (await open_folder(folder, terminology)).long_stays()
    assert {r.patient_id for r in listing.rows} == set(stays)
    for row in listing.rows:
        stay = stays[row.patient_id]
        assert row.days == stay["days"]
        assert row.band == band_for(stay["days"])
        assert row.ward.id == stay["ward"]
        assert row.bed == stay["bed"]
        expected = stay["expected_discharge"]
        assert row.expected_discharge == (date.fromisoformat(expected) if expected else None)
        assert row.expected_discharge_passed == bool(expected and expected < AS_OF.isoformat())
        assert (row.plan_ref is not None) == stay["discharge_plan"]
        assert row.plan_shared == stay["plan_shared"]
        assert row.goals_recorded == stay["goals"]
    counts = listing.counts()
    assert counts["inpatients"] == len(stays)
    assert counts["super_stranded"] == sum(s["days"] >= 21 for s in stays.values())
    assert counts["stranded"] == sum(s["days"] >= 7 for s in stays.values())
    assert sum(n for _, n, _ in listing.histogram()) == len(stays)


@pytest.mark.parametrize(
    ("days", "band"),
    [(0, "short"), (6, "short"), (7, "stranded"), (20, "stranded"), (21, "super-stranded")],
)
async def test_long_stay_band_edges(
    tmp_path: Path, terminology: Terminology, days: int, band: str
) -> None:
    start = (NOW - timedelta(days=days, hours=1)).isoformat()
    write_folder(tmp_path, inpatient("p1", start), as_of=NOW)
    [row] = (await (await open_folder(tmp_path, terminology)).long_stays()).rows
    assert (row.days, row.day_number, row.band) == (days, days + 1, band)


async def test_long_stay_days_are_counted_on_the_trusts_calendar(
    tmp_path: Path, terminology: Terminology
) -> None:
    # 23:30 UTC on 30 June is 00:30 BST on 1 July: six days by the London calendar, not seven.
    write_folder(
        tmp_path,
        inpatient("p1", "2026-06-30T23:30:00Z"),
        as_of=datetime(2026, 7, 7, 9, 0, tzinfo=UTC),
    )
    [row] = (await (await open_folder(tmp_path, terminology)).long_stays()).rows
    assert (row.days, row.band, row.admitted) == (6, "short", date(2026, 7, 1))


@pytest.mark.parametrize(
    ("start", "problem"),
    [(None, "no admission date"), ("2026-11-27T10:00:00Z", "admission date in the future")],
)
async def test_long_stay_without_a_usable_admission_date_is_unknown(
    tmp_path: Path, terminology: Terminology, start: str | None, problem: str
) -> None:
    write_folder(tmp_path, inpatient("p1", start), as_of=NOW)
    listing = await (await open_folder(tmp_path, terminology)).long_stays()
    [row] = listing.rows
    assert (row.days, row.band, row.problem) == (None, "unknown", problem)
    assert listing.counts()["length_unknown"] == 1


async def test_long_stay_expected_discharge_from_the_encounter_extension(
    tmp_path: Path, terminology: Terminology
) -> None:
    edd = [{"url": synth.PLANNED_END_DATE_URL, "valueDate": "2026-11-25"}]
    write_folder(tmp_path, inpatient("p1", "2026-11-01T10:00:00Z", extension=edd), as_of=NOW)
    [row] = (await (await open_folder(tmp_path, terminology)).long_stays()).rows
    assert row.expected_discharge == date(2026, 11, 25)
    assert row.expected_discharge_passed


async def test_long_stay_csv_has_a_row_per_patient(folder: Path, terminology: Terminology) -> None:
    listing = await (await open_folder(folder, terminology)).long_stays()
    lines = listing.csv().splitlines()
    assert lines[0].split(",") == list(pop.LONG_STAY_CSV_COLUMNS)
    assert len(lines) == len(listing.rows) + 1


# -- ward data -------------------------------------------------------------------------------------


async def test_wards_list_every_ward_with_inpatients(
    folder: Path, terminology: Terminology, stays: dict[str, dict[str, Any]]
) -> None:
    wards = await (await open_folder(folder, terminology)).wards()
    expected = Counter(s["ward"] for s in stays.values())
    assert {w.ward.id: w.inpatients for w in wards} == dict(expected)
    names = dict(synth.HOSPITAL_WARDS)
    assert all(w.ward.name == names[w.ward.id] for w in wards)


async def test_ward_board_matches_ground_truth(
    folder: Path, terminology: Terminology, stays: dict[str, dict[str, Any]]
) -> None:
    population = await open_folder(folder, terminology)
    for ward_id, _ in synth.HOSPITAL_WARDS:
        board = await population.ward_board(ward_id)
        mine = {pid: s for pid, s in stays.items() if s["ward"] == ward_id}
        assert {p.patient_id for p in board.patients} == set(mine)
        for patient in board.patients:
            stay = mine[patient.patient_id]
            said = stay["concern_at"]
            in_window = said is not None and NOW - datetime.fromisoformat(said) <= timedelta(
                hours=24
            )
            assert [c.level for c in patient.concerns] == ([stay["concern"]] if in_window else [])
            is_open = stay["escalation"] in pop.OPEN_TASK_STATUSES
            assert [e.status for e in patient.open_escalations] == (
                [stay["escalation"]] if is_open else []
            )
            worried = in_window and stay["concern"] in {"worried", "worse"}
            assert patient.unanswered_worry == (worried and not is_open)
            if stay["vitals"] == "recent":
                assert patient.news2.status in {"scored", "not-applicable"}
            elif stay["vitals"] in {"stale", "none"}:
                assert patient.news2.status in {"no-vitals", "not-applicable"}
            else:
                assert patient.news2.status in {"incomplete", "not-applicable"}


async def test_ward_board_news2_is_the_cards_news2(
    folder: Path, terminology: Terminology, stays: dict[str, dict[str, Any]]
) -> None:
    """The board's score, band and floor are those of the news2-concern card's facts."""
    population = await open_folder(folder, terminology)
    inpatients = await population.inpatients()
    records = await population.records(inpatients, pop.WARD_TEMPLATES)
    settings = population.settings
    checked = 0
    for ward_id, _ in synth.HOSPITAL_WARDS:
        board = await population.ward_board(ward_id)
        for patient in board.patients:
            record = records[patient.encounter_ref.removeprefix("Encounter/")]
            card = next(
                f
                for f in concern.evaluate(record, settings.news2, terminology)
                if f.rule_id.startswith("news2.")
            )
            facts = card.facts
            assert patient.news2.total == facts["total"]
            assert patient.news2.band == facts["band"]
            assert patient.news2.partial_total == facts["partialTotal"]
            assert patient.news2.minimum_band == facts["minimumBand"]
            checked += 1
    assert checked == len(stays)


async def test_ward_board_puts_unanswered_worry_then_highest_band_first(
    folder: Path, terminology: Terminology
) -> None:
    population = await open_folder(folder, terminology)
    for ward_id, _ in synth.HOSPITAL_WARDS:
        patients = (await population.ward_board(ward_id)).patients
        keys = [(not p.unanswered_worry, -p.news2.rank) for p in patients]
        assert keys == sorted(keys)


async def test_ward_board_of_an_empty_ward_has_no_patients(
    folder: Path, terminology: Terminology
) -> None:
    board = await (await open_folder(folder, terminology)).ward_board("no-such-ward")
    assert board.patients == ()
    assert board.ward == pop.Ward("no-such-ward", "no-such-ward")


@pytest.mark.parametrize(
    ("status", "is_open"),
    [
        ("draft", False),
        ("requested", True),
        ("received", True),
        ("accepted", True),
        ("ready", True),
        ("in-progress", True),
        ("on-hold", True),
        ("completed", False),
        ("cancelled", False),
        ("rejected", False),
        ("failed", False),
        ("entered-in-error", False),
    ],
)
async def test_ward_board_open_escalations_by_task_status(
    tmp_path: Path, terminology: Terminology, status: str, is_open: bool
) -> None:
    task = {
        "resourceType": "Task",
        "id": "t1",
        "status": status,
        "intent": "order",
        "code": {"coding": [{"system": concern.MARTHAS_RULE_SYSTEM, "code": "marthas-rule-call"}]},
        "for": {"reference": "Patient/p1"},
    }
    other = task | {"id": "t2", "status": "requested", "code": {"text": "Another task"}}
    write_folder(tmp_path, [*inpatient("p1", "2026-11-20T10:00:00Z"), task, other], as_of=NOW)
    [patient] = (await (await open_folder(tmp_path, terminology)).ward_board("ward-a")).patients
    assert [e.reference for e in patient.open_escalations] == (["Task/t1"] if is_open else [])


# -- the FHIR server path ----------------------------------------------------------------------------


def without_source(body: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in body.items() if k != "source"}


async def test_server_and_folder_give_the_same_wards_and_stays(
    folder: Path, terminology: Terminology, httpx_mock: HTTPXMock
) -> None:
    httpx_mock.add_callback(population_server(resources_in(folder)), is_reusable=True)
    from_folder = await open_folder(folder, terminology)
    async with httpx.AsyncClient() as http:
        from_server = await pop.open_population(
            server_settings(), terminology, http=http, now=synth.snapshot_time(AS_OF)
        )
        assert [w.as_dict() for w in await from_server.wards()] == [
            w.as_dict() for w in await from_folder.wards()
        ]
        assert without_source((await from_server.long_stays()).as_json()) == without_source(
            (await from_folder.long_stays()).as_json()
        )
        for ward_id, _ in synth.HOSPITAL_WARDS:
            assert without_source((await from_server.ward_board(ward_id)).as_json()) == (
                without_source((await from_folder.ward_board(ward_id)).as_json())
            )


async def test_server_failed_observation_search_is_a_data_gap(
    folder: Path, terminology: Terminology, httpx_mock: HTTPXMock
) -> None:
    httpx_mock.add_callback(
        population_server(resources_in(folder), failing=frozenset({"Observation"})),
        is_reusable=True,
    )
    async with httpx.AsyncClient() as http:
        population = await pop.open_population(
            server_settings(), terminology, http=http, now=synth.snapshot_time(AS_OF)
        )
        board = await population.ward_board(synth.HOSPITAL_WARDS[0][0])
    assert board.patients
    for patient in board.patients:
        assert patient.news2.status == "unavailable"
        assert patient.news2.label.startswith("Could not check")
        assert any(gap.startswith("Observation:") for gap in patient.data_gaps)


async def test_server_valproate_equals_the_folder_and_the_registry(
    folder: Path, terminology: Terminology, httpx_mock: HTTPXMock
) -> None:
    httpx_mock.add_callback(population_server(resources_in(folder)), is_reusable=True)
    from_folder = await (await open_folder(folder, terminology)).valproate()
    async with httpx.AsyncClient() as http:
        population = await pop.open_population(
            server_settings(), terminology, http=http, now=synth.snapshot_time(AS_OF)
        )
        from_server = await population.valproate()
    assert from_server.registry.counts() == from_folder.registry.counts()
    assert dict(from_server.prescribers) == dict(from_folder.prescribers)
    assert from_server.by_organisation() == from_folder.by_organisation()


# -- valproate --------------------------------------------------------------------------------------


async def test_valproate_counts_are_the_registrys_and_match_ground_truth(
    folder: Path, terminology: Terminology, truth: list[dict[str, Any]]
) -> None:
    dash = await (await open_folder(folder, terminology)).valproate()
    expected = Counter(p["expected_action"] for p in truth if p["expected_action"])
    assert dash.registry.counts() == {s: expected.get(s, 0) for s in registry.ACTION_ORDER}
    assert sum(total for _, _, total in dash.by_organisation()) == len(dash.registry.rows)
    assert sum(dash.by_araf().values()) == len(dash.registry.rows)


async def test_valproate_prescriber_is_the_requesting_organisation(
    folder: Path, terminology: Terminology
) -> None:
    dash = await (await open_folder(folder, terminology)).valproate()
    requests = {
        r["subject"]["reference"].removeprefix("Patient/"): r
        for r in resources_in(folder)
        if r["resourceType"] == "MedicationRequest" and r["id"].endswith("-valproate")
    }
    names = dict(synth.PRESCRIBER_ORGANISATIONS)
    for row in dash.registry.rows:
        org_id = requests[row.patient_id]["requester"]["reference"].removeprefix("Organization/")
        assert dash.organisation(row) == names[org_id]


async def test_valproate_select_and_csv(folder: Path, terminology: Terminology) -> None:
    dash = await (await open_folder(folder, terminology)).valproate()
    org, counts, _ = dash.by_organisation()[0]
    rows = dash.select(status="Review or refer", organisation=org)
    assert len(rows) == counts["Review or refer"]
    lines = dash.csv(rows).splitlines()
    assert lines[0].endswith(",prescriber_organisation")
    assert lines[0].startswith(",".join(registry.CSV_COLUMNS))
    assert len(lines) == len(rows) + 1
    assert all(line.endswith(org) for line in lines[1:])
    body = dash.as_json()
    assert body["counts"] == dash.registry.counts()
    assert body["araf_due"] == dash.by_araf()


def registry_row(review_due: date | None) -> registry.RegistryRow:
    return registry.RegistryRow(
        patient_id="p1",
        nhs_number=None,
        age=30,
        gender="female",
        action_status="Consider expiry of ARAF",
        pregnant=False,
        learning_disability=False,
        permanent_absence=False,
        ppp_status="enrolled",
        araf_date=None,
        review_due=review_due.isoformat() if review_due else None,
        products=(),
        data_gaps=(),
    )


@pytest.mark.parametrize(
    ("offset", "bucket"),
    [
        (-1, "overdue"),
        (0, "due-soon"),
        (30, "due-soon"),
        (31, "due-90"),
        (90, "due-90"),
        (91, "later"),
        (None, "none"),
    ],
)
def test_valproate_araf_bucket_edges(offset: int | None, bucket: str) -> None:
    today = date(2026, 11, 26)
    due = None if offset is None else today + timedelta(days=offset)
    row = registry_row(due)
    built = registry.Registry(
        generated=NOW, source="test", rows=(row,), on_valproate=1, outside_cohort={}
    )
    dash = pop.ValproateDashboard(registry=built, prescribers={}, today=today, due_soon_days=30)
    assert dash.araf_bucket(row) == bucket
    assert dash.organisation(row) == "Not recorded"


# -- synthetic hospital and demo data ----------------------------------------------------------------


def test_synth_hospital_adds_without_changing_anything_else(terminology: Terminology) -> None:
    plain = synth.generate(patients=200, seed=5, terminology=terminology)
    hospital = synth.generate(patients=200, seed=5, terminology=terminology, hospital=True)
    for before, after in zip(plain, hospital, strict=True):
        original = {(r["resourceType"], r["id"]) for r in before.resources}
        kept = [r for r in after.resources if (r["resourceType"], r["id"]) in original]
        stripped = [{k: v for k, v in r.items() if k != "requester"} for r in kept]
        assert stripped == before.resources
        assert {k: v for k, v in after.truth().items() if k != "stay"} == before.truth()
    assert sum(p.stay is not None for p in hospital) > 10


def test_synth_hospital_resources_are_valid_r4b(terminology: Terminology) -> None:
    people = synth.generate(patients=300, seed=9, terminology=terminology, hospital=True)
    seen: Counter[str] = Counter()
    for person in people:
        for resource in person.resources:
            model = R4B_MODELS.get(resource["resourceType"])
            if model is not None and (
                person.stay is not None or resource["resourceType"] in {"Location", "Organization"}
            ):
                model.model_validate(resource)
                seen[resource["resourceType"]] += 1
    assert set(seen) == set(R4B_MODELS)


def test_synth_hospital_keeps_the_registry_ground_truth(
    terminology: Terminology, tmp_path: Path
) -> None:
    people = synth.generate(
        patients=300, seed=11, terminology=terminology, valproate_rate=0.6, hospital=True
    )
    synth.write_ndjson(people, tmp_path)
    built = registry.build_registry(
        registry.gather_from_ndjson(tmp_path, terminology),
        settings=Settings(),
        terminology=terminology,
        now=NOW,
        source="test",
    )
    expected = Counter(p.expected_action for p in people if p.expected_action)
    assert built.counts() == {s: expected.get(s, 0) for s in registry.ACTION_ORDER}


def test_committed_demo_population_is_what_the_generator_writes(
    terminology: Terminology, tmp_path: Path
) -> None:
    """Regenerate with: python -m fhir_safety.services.population data/demo-population"""
    written = pop.write_demo_population(tmp_path, terminology=terminology)
    for path in written:
        committed = pop.DEMO_DIR / path.name
        assert committed.read_bytes() == path.read_bytes(), f"{committed} is out of date"
    assert sorted(p.name for p in pop.DEMO_DIR.iterdir()) == sorted(p.name for p in written)


def test_demo_feedback_store_holds_the_demo_sample(tmp_path: Path) -> None:
    sample = pop.demo_feedback(as_of=NOW, days=5)
    (tmp_path / pop.DEMO_FEEDBACK_FILE).write_text(json.dumps(sample))
    store = pop.demo_feedback_store(tmp_path, timezone="Europe/London")
    assert store is not None
    summary = store.summary()
    assert sum(r.shown for r in summary) == len(sample["cards"])
    assert sum(r.accepted + r.overridden for r in summary) == len(sample["feedback"])
    assert pop.demo_feedback_store(tmp_path, timezone="Europe/London") is store  # cached
    assert pop.demo_feedback(as_of=NOW, days=5) == sample  # deterministic


def test_demo_feedback_store_absent_without_the_file(tmp_path: Path) -> None:
    assert pop.demo_feedback_store(tmp_path, timezone="UTC") is None
