"""Narrow R4 models of the FHIR fields the rules read: the parse boundary.

Why not the full ``fhir.resources`` models here? Rules read a handful of
fields from hundreds of resources per request, and full validation of every
element costs milliseconds we do not have in the clinician's click path.
These models validate exactly what the rules rely on (types, required
fields, date formats) and ignore the rest; the full R4B models from
``fhir.resources`` are used where a whole resource must be valid, e.g. for
resources our suggestions create.

FHIR camelCase stays in JSON only: fields are snake_case with camelCase aliases.
"""

from __future__ import annotations

import re
from copy import deepcopy
from datetime import UTC, date, datetime, time
from decimal import Decimal
from typing import Annotated, Any, Literal, Self
from zoneinfo import ZoneInfo

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ModelWrapValidatorHandler,
    PrivateAttr,
    field_validator,
    model_validator,
)
from pydantic.alias_generators import to_camel

__all__ = [
    "Address",
    "AdverseEvent",
    "Annotation",
    "CarePlan",
    "CodeableConcept",
    "Coding",
    "Condition",
    "Consent",
    "ConsentProvision",
    "ContactPoint",
    "Device",
    "Encounter",
    "Extension",
    "FhirDateTime",
    "Flag",
    "Goal",
    "GoalTarget",
    "HumanName",
    "Identifier",
    "Medication",
    "MedicationRequest",
    "MedicationStatement",
    "Observation",
    "Patient",
    "PatientContact",
    "Period",
    "Procedure",
    "Quantity",
    "Range",
    "Reference",
    "RelatedPerson",
    "Resource",
    "ServiceRequest",
    "Task",
    "TaskParameter",
    "TaskRestriction",
    "parse_fhir_datetime",
]

# FHIR R4 dateTime: a year, year-month, date, or date-time with a zone when there is a time.
_DATETIME_RE = re.compile(
    r"^(?P<y>\d{4})(-(?P<m>\d{2})(-(?P<d>\d{2})"
    r"(T(?P<t>\d{2}:\d{2}(:\d{2}(\.\d+)?)?)(?P<tz>Z|[+-]\d{2}:\d{2}))?)?)?$"
)


def parse_fhir_datetime(value: str, *, local_zone: ZoneInfo) -> datetime:
    """An aware datetime for a FHIR date or dateTime.

    Partial dates (``2026``, ``2026-03``, ``2026-03-01``) mean the start of that
    period in the trust's local time zone, which is how a ward reads them.
    """
    match = _DATETIME_RE.match(value)
    if match is None:
        raise ValueError(f"not a FHIR dateTime: {value!r}")
    if match["t"] is None:
        day = date(int(match["y"]), int(match["m"] or 1), int(match["d"] or 1))
        return datetime.combine(day, time(0, 0), tzinfo=local_zone)
    parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _check_fhir_datetime(value: str | None) -> str | None:
    if value is not None and _DATETIME_RE.match(value) is None:
        raise ValueError(f"not a FHIR date or dateTime: {value!r}")
    return value


class FhirModel(BaseModel):
    model_config = ConfigDict(
        alias_generator=to_camel, populate_by_name=True, extra="ignore", frozen=True
    )


FhirDateTime = Annotated[str, Field(min_length=4)]


class Extension(FhirModel):
    url: str
    value_date_time: str | None = None
    value_date: str | None = None
    value_string: str | None = None
    value_code: str | None = None
    value_boolean: bool | None = None
    value_reference: Reference | None = None
    value_codeable_concept: CodeableConcept | None = None
    value_annotation: Annotation | None = None

    _check = field_validator("value_date_time", "value_date")(_check_fhir_datetime)


class Coding(FhirModel):
    system: str | None = None
    code: str | None = None
    display: str | None = None


class CodeableConcept(FhirModel):
    coding: list[Coding] = Field(default_factory=list)
    text: str | None = None


class Reference(FhirModel):
    reference: str | None = None
    display: str | None = None
    type: str | None = None

    def target_id(self, resource_type: str) -> str | None:
        """The id of a relative or absolute reference to ``resource_type``."""
        if not self.reference:
            return None
        parts = self.reference.rstrip("/").split("/")
        if len(parts) >= 2 and parts[-2] == resource_type:
            return parts[-1]
        if self.reference.startswith("urn:uuid:") and self.type == resource_type:
            return self.reference
        return None


class Identifier(FhirModel):
    system: str | None = None
    value: str | None = None


class Period(FhirModel):
    start: str | None = None
    end: str | None = None

    _check = field_validator("start", "end")(_check_fhir_datetime)


class Quantity(FhirModel):
    value: Decimal | None = None
    unit: str | None = None
    system: str | None = None
    code: str | None = None


class Range(FhirModel):
    low: Quantity | None = None
    high: Quantity | None = None


class Annotation(FhirModel):
    text: str | None = None


class HumanName(FhirModel):
    use: str | None = None
    text: str | None = None
    family: str | None = None
    given: list[str] = Field(default_factory=list)
    prefix: list[str] = Field(default_factory=list)


class ContactPoint(FhirModel):
    system: str | None = None  # phone | fax | email | pager | url | sms | other
    value: str | None = None
    use: str | None = None
    rank: int | None = None


class Address(FhirModel):
    use: str | None = None
    type: str | None = None
    text: str | None = None
    city: str | None = None
    district: str | None = None
    state: str | None = None
    postal_code: str | None = None
    country: str | None = None
    period: Period | None = None


class Resource(FhirModel):
    resource_type: str
    id: str | None = None
    extension: list[Extension] = Field(default_factory=list)


class Patient(Resource):
    resource_type: Literal["Patient"]
    gender: Literal["male", "female", "other", "unknown"] | None = None
    birth_date: str | None = None
    deceased_boolean: bool | None = None
    deceased_date_time: str | None = None
    identifier: list[Identifier] = Field(default_factory=list)
    # The concern form greets the patient by first name and refuses inactive records.
    active: bool | None = None
    name: list[HumanName] = Field(default_factory=list)
    # Reasonable adjustments (family/carer contacts) and pelvic mesh (region) read these.
    address: list[Address] = Field(default_factory=list)
    contact: list[PatientContact] = Field(default_factory=list)

    _check = field_validator("birth_date", "deceased_date_time")(_check_fhir_datetime)


class PatientContact(FhirModel):
    relationship: list[CodeableConcept] = Field(default_factory=list)
    name: HumanName | None = None
    telecom: list[ContactPoint] = Field(default_factory=list)
    period: Period | None = None


class Encounter(Resource):
    resource_type: Literal["Encounter"]
    status: str
    class_: Coding | None = Field(default=None, alias="class")
    subject: Reference | None = None
    period: Period | None = None
    service_provider: Reference | None = None
    location: list[dict[str, Any]] = Field(default_factory=list)


class CarePlan(Resource):
    resource_type: Literal["CarePlan"]
    status: str
    intent: str
    category: list[CodeableConcept] = Field(default_factory=list)
    subject: Reference
    encounter: Reference | None = None
    period: Period | None = None
    title: str | None = None
    care_team: list[Reference] = Field(default_factory=list)
    contributor: list[Reference] = Field(default_factory=list)


class Goal(Resource):
    resource_type: Literal["Goal"]
    lifecycle_status: str
    description: CodeableConcept
    subject: Reference
    expressed_by: Reference | None = None
    category: list[CodeableConcept] = Field(default_factory=list)
    start_date: str | None = None
    target: list[GoalTarget] = Field(default_factory=list)

    _check = field_validator("start_date")(_check_fhir_datetime)


class GoalTarget(FhirModel):
    measure: CodeableConcept | None = None
    detail_range: Range | None = None
    detail_quantity: Quantity | None = None


class Condition(Resource):
    resource_type: Literal["Condition"]
    clinical_status: CodeableConcept | None = None
    verification_status: CodeableConcept | None = None
    category: list[CodeableConcept] = Field(default_factory=list)
    code: CodeableConcept | None = None
    subject: Reference
    onset_date_time: str | None = None
    recorded_date: str | None = None
    abatement_date_time: str | None = None


class ProcedureFocalDevice(FhirModel):
    manipulated: Reference


class Procedure(Resource):
    resource_type: Literal["Procedure"]
    status: str
    code: CodeableConcept | None = None
    subject: Reference
    performed_date_time: str | None = None
    performed_period: Period | None = None
    reason_code: list[CodeableConcept] = Field(default_factory=list)
    used_code: list[CodeableConcept] = Field(default_factory=list)  # e.g. the device product fitted (an LNG-IUS)
    used_reference: list[Reference] = Field(default_factory=list)
    focal_device: list[ProcedureFocalDevice] = Field(default_factory=list)

    _check = field_validator("performed_date_time")(_check_fhir_datetime)


class MedicationRequest(Resource):
    resource_type: Literal["MedicationRequest"]
    status: str
    intent: str
    medication_codeable_concept: CodeableConcept | None = None
    medication_reference: Reference | None = None
    subject: Reference
    authored_on: str | None = None
    group_identifier: Identifier | None = None
    dosage_instruction: list[dict[str, Any]] = Field(default_factory=list)
    contained: list[dict[str, Any]] = Field(default_factory=list)  # e.g. a contained Medication ("#med")

    _check = field_validator("authored_on")(_check_fhir_datetime)
    # The resource exactly as received: a suggestion that updates it must send the whole
    # resource back (CDS Hooks "update" action), not the few fields modelled here.
    _source: dict[str, Any] = PrivateAttr(default={})

    @model_validator(mode="wrap")
    @classmethod
    def _keep_source(cls, data: Any, handler: ModelWrapValidatorHandler[Self]) -> Self:
        model = handler(data)
        if isinstance(data, dict):
            model._source = data
        return model

    def source_json(self) -> dict[str, Any]:
        """A deep copy of the resource as received (empty when built in code)."""
        return deepcopy(self._source)


class Medication(Resource):
    resource_type: Literal["Medication"]
    code: CodeableConcept | None = None
    status: str | None = None


class MedicationStatement(Resource):
    resource_type: Literal["MedicationStatement"]
    status: str
    medication_codeable_concept: CodeableConcept | None = None
    subject: Reference
    effective_date_time: str | None = None
    effective_period: Period | None = None
    medication_reference: Reference | None = None
    contained: list[dict[str, Any]] = Field(default_factory=list)
    date_asserted: str | None = None


class DeviceName(FhirModel):
    name: str
    type: str | None = None


class Device(Resource):
    resource_type: Literal["Device"]
    status: str | None = None
    type: CodeableConcept | None = None
    patient: Reference | None = None
    device_name: list[DeviceName] = Field(default_factory=list)


class ObservationComponent(FhirModel):
    code: CodeableConcept
    value_quantity: Quantity | None = None
    value_codeable_concept: CodeableConcept | None = None


class Observation(Resource):
    resource_type: Literal["Observation"]
    status: str
    category: list[CodeableConcept] = Field(default_factory=list)
    code: CodeableConcept
    subject: Reference | None = None
    effective_date_time: str | None = None
    effective_period: Period | None = None
    effective_instant: str | None = None
    issued: str | None = None
    value_quantity: Quantity | None = None
    value_codeable_concept: CodeableConcept | None = None
    value_string: str | None = None
    value_boolean: bool | None = None
    performer: list[Reference] = Field(default_factory=list)
    component: list[ObservationComponent] = Field(default_factory=list)
    note: list[dict[str, Any]] = Field(default_factory=list)
    derived_from: list[Reference] = Field(default_factory=list)

    _check = field_validator("effective_date_time", "effective_instant", "issued")(
        _check_fhir_datetime
    )


class Flag(Resource):
    resource_type: Literal["Flag"]
    status: str
    category: list[CodeableConcept] = Field(default_factory=list)
    code: CodeableConcept
    subject: Reference
    period: Period | None = None


class ServiceRequest(Resource):
    resource_type: Literal["ServiceRequest"]
    status: str
    intent: str
    code: CodeableConcept | None = None
    subject: Reference
    performer: list[Reference] = Field(default_factory=list)
    # Pelvic mesh referrals (rules/pelvic_mesh.py).
    authored_on: str | None = None
    reason_code: list[CodeableConcept] = Field(default_factory=list)
    reason_reference: list[Reference] = Field(default_factory=list)
    supporting_info: list[Reference] = Field(default_factory=list)

    _check_service_request = field_validator("authored_on")(_check_fhir_datetime)


class Task(Resource):
    resource_type: Literal["Task"]
    status: str
    intent: str
    code: CodeableConcept | None = None
    focus: Reference | None = None
    for_: Reference | None = Field(default=None, alias="for")
    authored_on: str | None = None
    priority: str | None = None
    owner: Reference | None = None
    reason_reference: Reference | None = None
    requester: Reference | None = None
    # Incident learning responses and family engagement (rules/incident_engagement.py).
    part_of: list[Reference] = Field(default_factory=list)
    status_reason: CodeableConcept | None = None
    description: str | None = None
    last_modified: str | None = None
    execution_period: Period | None = None
    restriction: TaskRestriction | None = None
    input: list[TaskParameter] = Field(default_factory=list)
    output: list[TaskParameter] = Field(default_factory=list)

    _check_task = field_validator("authored_on", "last_modified")(_check_fhir_datetime)


class TaskRestriction(FhirModel):
    """Task.restriction: when the task is due (``period.end``) and for whom (``recipient``)."""

    period: Period | None = None
    recipient: list[Reference] = Field(default_factory=list)


class TaskParameter(FhirModel):
    """Task.input / Task.output, narrowed to the value types we read."""

    type: CodeableConcept
    value_string: str | None = None
    value_reference: Reference | None = None
    value_date_time: str | None = None


class AdverseEvent(Resource):
    """R4 AdverseEvent: a patient safety incident (profile ``safety-incident``)."""

    resource_type: Literal["AdverseEvent"]
    actuality: str
    category: list[CodeableConcept] = Field(default_factory=list)
    event: CodeableConcept | None = None
    subject: Reference
    encounter: Reference | None = None
    date: str | None = None
    detected: str | None = None
    recorded_date: str | None = None
    location: Reference | None = None
    seriousness: CodeableConcept | None = None
    severity: CodeableConcept | None = None
    outcome: CodeableConcept | None = None
    recorder: Reference | None = None

    _check = field_validator("date", "detected", "recorded_date")(_check_fhir_datetime)


class ConsentProvision(FhirModel):
    type: str | None = None  # deny | permit
    purpose: list[Coding] = Field(default_factory=list)
    period: Period | None = None


class Consent(Resource):
    """R4 Consent (reasonable adjustments: NHS England FlagConsent, rules/reasonable_adjustments)."""

    resource_type: Literal["Consent"]
    status: str
    scope: CodeableConcept | None = None
    category: list[CodeableConcept] = Field(default_factory=list)
    patient: Reference | None = None
    date_time: str | None = None
    policy_rule: CodeableConcept | None = None
    provision: ConsentProvision | None = None
    contained: list[dict[str, Any]] = Field(default_factory=list)  # NHS England FlagProvenance is contained

    _check = field_validator("date_time")(_check_fhir_datetime)


class RelatedPerson(Resource):
    """R4 RelatedPerson: family, carers and other contacts of the patient."""

    resource_type: Literal["RelatedPerson"]
    active: bool | None = None
    patient: Reference
    relationship: list[CodeableConcept] = Field(default_factory=list)
    name: list[HumanName] = Field(default_factory=list)
    telecom: list[ContactPoint] = Field(default_factory=list)
    period: Period | None = None


Extension.model_rebuild()
Patient.model_rebuild()
Task.model_rebuild()


def now_utc() -> datetime:
    """The wall clock, for the edges of the system only (rules receive ``now``)."""
    return datetime.now(UTC)
