"""``PatientRecord``: everything a rule may look at for one hook call.

Built by ``fhir_safety.services.record`` from prefetch and the FHIR server;
read by the pure rules. It carries which resource types could NOT be had, so a
rule can say "could not check" instead of reading an absence as "all clear".
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TypeVar
from zoneinfo import ZoneInfo

from fhir_safety.config import Settings
from fhir_safety.fhir.resources import Patient, Resource
from fhir_safety.terminology import Terminology

__all__ = ["PatientRecord", "RuleEnvironment"]

R = TypeVar("R", bound=Resource)


@dataclass(frozen=True, slots=True)
class PatientRecord:
    hook: str
    context: Mapping[str, Any]
    now: datetime
    zone: ZoneInfo
    patient: Patient | None
    resources: Mapping[str, tuple[Resource, ...]]  # by resourceType, de-duplicated by id
    draft_orders: tuple[Resource, ...] = ()
    unavailable: Mapping[str, str] = field(default_factory=dict)  # resourceType -> why

    @property
    def patient_id(self) -> str:
        return str(self.context.get("patientId", ""))

    @property
    def encounter_id(self) -> str | None:
        value = self.context.get("encounterId")
        return value if isinstance(value, str) else None

    def of_type(self, model: type[R]) -> tuple[R, ...]:
        """The resources of one type (an empty tuple when none, or when unavailable)."""
        # Model classes in fhir_safety.fhir.resources are named after their resource type.
        return tuple(r for r in self.resources.get(model.__name__, ()) if isinstance(r, model))

    def why_unavailable(self, resource_type: str) -> str | None:
        """Why a resource type could not be had, or None when it was read."""
        return self.unavailable.get(resource_type)


@dataclass(frozen=True, slots=True)
class RuleEnvironment:
    """What every rule may use besides the record: settings and the loaded terminology."""

    settings: Settings
    terminology: Terminology
