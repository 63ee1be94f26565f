"""The concern Observation's shape, the patient the form may ask about, and honest escalation."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from fhir.resources.R4B.bundle import Bundle as R4BBundle
from fhir.resources.R4B.observation import Observation as R4BObservation
from fhir.resources.R4B.relatedperson import RelatedPerson as R4BRelatedPerson

from fhir_safety.config import Settings
from fhir_safety.errors import FhirUnavailableError
from fhir_safety.fhir.client import FhirClient
from fhir_safety.fhir.resources import Patient
from fhir_safety.services.concern_submission import (
    CONCERN_PROFILE,
    ConcernAnswers,
    ConcernSubmitter,
    FormPatient,
    PatientNotReachableError,
    concern_observation_id,
    concern_resources,
    first_name,
    watches_concerns,
)
from fhir_safety.services.escalation import (
    ConcernEscalator,
    EscalationOutcome,
    escalation_task_id,
)
from fhir_safety.terminology import Terminology
from tests.conftest import FIXED_NOW
from tests.unit.concern_form.conftest import form_settings
from tests.unit.concern_form.fake_server import (
    BASE,
    FakeFhir,
    encounter,
    patient,
    subscription,
)

CONCERN = "https://fhir-safety.org/fhir/CodeSystem/patient-concern"
LEVEL = "https://fhir-safety.org/fhir/CodeSystem/concern-level"
SUBMISSION = "0123456789abcdef0123456789abcdef"
OBSERVATION_ID = concern_observation_id(SUBMISSION)
TASK_ID = escalation_task_id(f"Observation/{OBSERVATION_ID}")
PATIENT = FormPatient("p-1", "Martha", "enc-1")


def build(answers: ConcernAnswers, terminology: Terminology) -> list[dict[str, Any]]:
    return concern_resources(
        answers=answers,
        patient=PATIENT,
        submission_id=SUBMISSION,
        now=FIXED_NOW,
        terminology=terminology,
    )


def level(concept: dict[str, Any]) -> str:
    (coding,) = concept["coding"]
    assert coding["system"] == LEVEL
    return str(coding["code"])


# --- the Observation -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("how", "worried", "headline", "escalates"),
    [
        ("better", False, "better", False),
        ("same", False, "same", False),
        ("worse", False, "worse", True),
        ("better", True, "worried", True),
        ("same", True, "worried", True),
        ("worse", True, "worried", True),
    ],
)
def test_concern_resources_value_is_the_headline_answer(
    terminology: Terminology, how: Any, worried: bool, headline: str, escalates: bool
) -> None:
    answers = ConcernAnswers(how_today=how, worried=worried, who="patient")
    (observation,) = build(answers, terminology)
    assert level(observation["valueCodeableConcept"]) == headline
    assert answers.escalates is escalates
    how_component, worried_component = observation["component"]
    assert level(how_component["valueCodeableConcept"]) == how
    assert level(worried_component["valueCodeableConcept"]) == (
        "worried" if worried else "not-worried"
    )


def test_concern_resources_patient_observation_has_the_profile_shape(
    terminology: Terminology,
) -> None:
    answers = ConcernAnswers("worse", True, "patient", note="I feel much worse tonight")
    (observation,) = build(answers, terminology)
    R4BObservation.model_validate(observation)
    assert observation["id"] == OBSERVATION_ID
    assert observation["meta"] == {"profile": [CONCERN_PROFILE]}
    assert observation["status"] == "final"
    assert observation["category"][0]["coding"][0]["code"] == "survey"
    codes = [(c["system"], c["code"]) for c in observation["code"]["coding"]]
    assert codes == [(CONCERN, "concern-observation"), (CONCERN, "patient-concern")]
    assert observation["subject"] == {"reference": "Patient/p-1"}
    assert observation["encounter"] == {"reference": "Encounter/enc-1"}
    assert observation["effectiveDateTime"] == "2026-11-26T09:00:00+00:00"
    assert observation["performer"] == [{"reference": "Patient/p-1", "display": "The patient"}]
    assert observation["note"] == [
        {
            "authorReference": {"reference": "Patient/p-1", "display": "The patient"},
            "time": "2026-11-26T09:00:00+00:00",
            "text": "I feel much worse tonight",
        }
    ]


@pytest.mark.parametrize(
    ("who", "code", "relationship"),
    [("family", "family-concern", "FAMMEMB"), ("carer", "carer-concern", None)],
)
def test_concern_resources_family_or_carer_is_a_related_person(
    terminology: Terminology, who: Any, code: str, relationship: str | None
) -> None:
    answers = ConcernAnswers("same", True, who, name="Jane Mills", phone="07700 900 982")
    person, observation = build(answers, terminology)
    R4BRelatedPerson.model_validate(person)
    R4BObservation.model_validate(observation)
    assert person["patient"] == {"reference": "Patient/p-1"}
    assert person["name"] == [{"text": "Jane Mills"}]
    assert person["telecom"] == [{"system": "phone", "value": "07700 900 982"}]
    codings = person["relationship"][0].get("coding", [])
    assert [c["code"] for c in codings] == ([relationship] if relationship else [])
    assert observation["performer"] == [
        {"reference": f"RelatedPerson/{person['id']}", "display": "Jane Mills"}
    ]
    assert observation["code"]["coding"][1]["code"] == code
    assert "note" not in observation


def test_concern_resources_without_encounter_or_name(terminology: Terminology) -> None:
    answers = ConcernAnswers("better", False, "carer")
    resources = concern_resources(
        answers=answers,
        patient=FormPatient("p-1", None, None),
        submission_id=SUBMISSION,
        now=FIXED_NOW,
        terminology=terminology,
    )
    person, observation = resources
    assert "name" not in person
    assert "telecom" not in person
    assert "encounter" not in observation
    assert observation["performer"][0]["display"] == "Carer"


def test_concern_resources_are_read_by_the_card_rules_as_intended(
    terminology: Terminology,
) -> None:
    """What the news2-concern card and the escalator will say about a form answer."""
    from fhir_safety.record import PatientRecord
    from fhir_safety.rules.concern import concern_from
    from fhir_safety.services.record import parse_resource

    for who, said in (
        ("patient", "The patient"),
        ("family", "A family member"),
        ("carer", "A carer"),
    ):
        observation = build(ConcernAnswers("worse", False, who), terminology)[-1]  # type: ignore[arg-type]
        parsed = parse_resource(observation, "test")
        record = PatientRecord(
            hook="test",
            context={"patientId": "p-1"},
            now=FIXED_NOW,
            zone=FIXED_NOW.tzinfo,  # type: ignore[arg-type]
            patient=None,
            resources={"Observation": (parsed,)},  # type: ignore[dict-item]
            unavailable={},
        )
        concern = concern_from(parsed, record, terminology)  # type: ignore[arg-type]
        assert concern is not None
        assert (concern.who, concern.level, concern.escalates) == (said, "worse", True)


# --- first name --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("names", "expected"),
    [
        ([{"use": "official", "given": ["Martha", "Jane"], "family": "Mills"}], "Martha"),
        ([{"use": "official", "given": ["Robert"]}, {"use": "usual", "given": ["Bob"]}], "Bob"),
        ([{"use": "old", "given": ["Maiden"]}, {"given": ["Current"]}], "Current"),
        ([{"use": "official", "family": "Mills"}], None),
        ([{"text": "Martha Mills"}], None),
        ([], None),
        ([{"given": ["  "]}, {"use": "nickname", "given": ["Mo"]}], "Mo"),
        ([{"given": ["A" * 60]}], "A" * 40),
    ],
)
def test_first_name_is_the_given_name_they_are_called_by(
    names: list[dict[str, Any]], expected: str | None
) -> None:
    assert first_name(Patient.model_validate(patient(name=names))) == expected


# --- reading the patient -------------------------------------------------------------------------


def submitter(
    http: httpx.AsyncClient,
    settings: Settings,
    terminology: Terminology,
    escalate: Callable[[dict[str, Any]], Awaitable[EscalationOutcome]] | None = None,
) -> ConcernSubmitter:
    async def no_sleep(_: float) -> None:
        return None

    return ConcernSubmitter(
        FhirClient(http, BASE),
        settings,
        terminology,
        lambda: FIXED_NOW,
        escalate=escalate,
        sleep=no_sleep,
    )


@pytest.mark.usefixtures("fhir")
async def test_patient_admitted_gives_first_name_and_encounter(
    settings: Settings, terminology: Terminology
) -> None:
    async with httpx.AsyncClient() as http:
        found = await submitter(http, settings, terminology).patient("p-1")
    assert found == FormPatient("p-1", "Martha", "enc-1")


@pytest.mark.parametrize(
    ("resources", "reason"),
    [
        ([], "not found"),
        ([patient(active=False), encounter()], "not active"),
        ([patient(deceasedBoolean=True), encounter()], "died"),
        ([patient(deceasedDateTime="2026-11-25"), encounter()], "died"),
        ([patient()], "no encounter in progress"),
        ([patient(), encounter(status="finished")], "no encounter in progress"),
    ],
)
async def test_patient_who_cannot_be_asked_is_not_reachable(
    httpx_mock: Any,
    settings: Settings,
    terminology: Terminology,
    resources: list[dict[str, Any]],
    reason: str,
) -> None:
    httpx_mock.add_callback(FakeFhir(*resources), is_reusable=True, is_optional=True)
    async with httpx.AsyncClient() as http:
        with pytest.raises(PatientNotReachableError, match=reason):
            await submitter(http, settings, terminology).patient("p-1")


async def test_patient_not_admitted_is_fine_when_admission_not_required(
    httpx_mock: Any, tmp_path: Path, terminology: Terminology
) -> None:
    httpx_mock.add_callback(FakeFhir(patient()), is_reusable=True, is_optional=True)
    settings = form_settings(tmp_path, require_admission=False)
    async with httpx.AsyncClient() as http:
        found = await submitter(http, settings, terminology).patient("p-1")
    assert found == FormPatient("p-1", "Martha", None)


async def test_patient_server_down_is_a_fhir_error(
    httpx_mock: Any, settings: Settings, terminology: Terminology
) -> None:
    httpx_mock.add_response(status_code=503, is_reusable=True)
    async with httpx.AsyncClient() as http:
        with pytest.raises(FhirUnavailableError):
            await submitter(http, settings, terminology).patient("p-1")


# --- writing and escalating ------------------------------------------------------------------------


async def test_submit_writes_one_transaction_of_puts(
    fhir: FakeFhir, settings: Settings, terminology: Terminology
) -> None:
    answers = ConcernAnswers("same", False, "family", name="Jane")
    async with httpx.AsyncClient() as http:
        receipt = await submitter(http, settings, terminology).submit(PATIENT, answers, SUBMISSION)
    (bundle,) = fhir.transactions
    R4BBundle.model_validate(bundle)
    assert [e["request"]["method"] for e in bundle["entry"]] == ["PUT", "PUT"]
    assert [e["request"]["url"] for e in bundle["entry"]] == [
        f"RelatedPerson/concern-person-{SUBMISSION}",
        f"Observation/{OBSERVATION_ID}",
    ]
    assert receipt.observation_id == OBSERVATION_ID
    assert receipt.escalation == "not-needed"
    assert fhir.of_type("Task") == []


async def test_submit_worried_creates_the_task_at_once(
    fhir: FakeFhir, settings: Settings, terminology: Terminology
) -> None:
    async with httpx.AsyncClient() as http:
        client = FhirClient(http, BASE)
        escalator = ConcernEscalator(client, settings, terminology, lambda: FIXED_NOW)
        answers = ConcernAnswers("worse", True, "patient")
        receipt = await submitter(http, settings, terminology, escalator.escalate).submit(
            PATIENT, answers, SUBMISSION
        )
    assert (receipt.escalation, receipt.task_id) == ("requested", TASK_ID)
    (task,) = fhir.of_type("Task")
    assert task["reasonReference"] == {"reference": f"Observation/{OBSERVATION_ID}"}
    assert task["requester"] == {"reference": "Patient/p-1"}


def outcome(action: Any, task: dict[str, Any] | None = None) -> Any:
    async def escalate(_: dict[str, Any]) -> EscalationOutcome:
        return EscalationOutcome(action, "test", task)

    return escalate


async def failing(_: dict[str, Any]) -> EscalationOutcome:
    raise FhirUnavailableError("Task PUT failed")


@pytest.mark.parametrize(
    ("escalate", "server", "expected"),
    [
        # The Task made at once (or already there): asked.
        (outcome("created", {"id": TASK_ID}), [], "requested"),
        (outcome("exists"), [], "requested"),
        # It could not be made and no Subscription will make it: say so.
        (failing, [], "not-requested"),
        (outcome("ignored"), [], "not-requested"),
        (None, [], "not-requested"),
        (None, [subscription(status="off")], "not-requested"),
        (None, [subscription(criteria="Observation?code=8867-4")], "not-requested"),
        # An active Subscription for concerns: being asked, or asked once the Task is seen.
        (failing, [subscription()], "being-requested"),
        (None, [subscription()], "being-requested"),
        (None, [subscription(criteria="Observation")], "being-requested"),
        (
            None,
            [subscription(), {"resourceType": "Task", "id": TASK_ID, "status": "requested"}],
            "requested",
        ),
    ],
)
async def test_submit_worried_says_honestly_whether_the_team_was_asked(
    httpx_mock: Any,
    settings: Settings,
    terminology: Terminology,
    escalate: Any,
    server: list[dict[str, Any]],
    expected: str,
) -> None:
    httpx_mock.add_callback(FakeFhir(*server), is_reusable=True, is_optional=True)
    async with httpx.AsyncClient() as http:
        receipt = await submitter(http, settings, terminology, escalate).submit(
            PATIENT, ConcernAnswers("same", True, "family"), SUBMISSION
        )
    assert receipt.escalation == expected


async def test_submit_without_subscription_secret_never_claims_the_subscription_path(
    httpx_mock: Any, tmp_path: Path, terminology: Terminology
) -> None:
    httpx_mock.add_callback(FakeFhir(subscription()), is_reusable=True, is_optional=True)
    settings = form_settings(tmp_path).model_copy(update={"subscription_secret": None})
    async with httpx.AsyncClient() as http:
        receipt = await submitter(http, settings, terminology).submit(
            PATIENT, ConcernAnswers("worse", False, "patient"), SUBMISSION
        )
    assert receipt.escalation == "not-requested"


async def test_submit_direct_escalation_can_be_turned_off(
    httpx_mock: Any, tmp_path: Path, terminology: Terminology
) -> None:
    httpx_mock.add_callback(FakeFhir(subscription()), is_reusable=True, is_optional=True)
    settings = form_settings(tmp_path, escalate_on_submit=False)
    called = []

    async def escalate(_: dict[str, Any]) -> EscalationOutcome:
        called.append(1)
        return EscalationOutcome("created", "test", None)

    async with httpx.AsyncClient() as http:
        receipt = await submitter(http, settings, terminology, escalate).submit(
            PATIENT, ConcernAnswers("worse", False, "patient"), SUBMISSION
        )
    assert called == []
    assert receipt.escalation == "being-requested"


async def test_submit_write_failure_raises_and_asks_nobody(
    fhir: FakeFhir, settings: Settings, terminology: Terminology
) -> None:
    fhir.fail_writes = True
    async with httpx.AsyncClient() as http:
        with pytest.raises(FhirUnavailableError):
            await submitter(http, settings, terminology, outcome("created")).submit(
                PATIENT, ConcernAnswers("worse", True, "patient"), SUBMISSION
            )


@pytest.mark.parametrize(
    ("changes", "watches"),
    [
        ({}, True),
        (
            {
                "criteria": "Observation?code=https://fhir-safety.org/fhir/CodeSystem/patient-concern|concern-observation"
            },
            True,
        ),
        ({"criteria": "Observation"}, True),
        ({"criteria": "Observation?category=vital-signs"}, False),
        ({"criteria": "Task?code=concern-observation"}, False),
        ({"status": "requested"}, False),
        ({"channel": {"type": "email", "endpoint": "mailto:x@example.org"}}, False),
        ({"channel": {"type": "rest-hook", "endpoint": "http://elsewhere.test/hook"}}, False),
    ],
)
def test_watches_concerns_table(changes: dict[str, Any], watches: bool) -> None:
    assert watches_concerns(subscription() | changes) is watches


def test_submission_ids_fit_fhir_ids() -> None:
    assert len(OBSERVATION_ID) <= 64
    assert len(TASK_ID) <= 64
