"""The CDS services fhir-safety offers: hook, texts, prefetch templates, rules.

This is the only place rules are bound to hooks. A service id may be offered
on several hooks (CDS Hooks 2.0 allows the same id under different hooks);
a call is routed by (id, hook).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from fhir_safety import __version__
from fhir_safety.cds.hooks import hook_spec
from fhir_safety.cds.models import ServiceDescriptor
from fhir_safety.cds.prefetch import PrefetchTemplate, check_template
from fhir_safety.domain import Finding
from fhir_safety.errors import HookMismatchError, UnknownServiceError
from fhir_safety.record import PatientRecord, RuleEnvironment
from fhir_safety.rules import length_of_stay

__all__ = ["CATALOGUE", "Catalogue", "ServiceDefinition"]

RuleFunction = Callable[[PatientRecord, RuleEnvironment], list[Finding]]


@dataclass(frozen=True, slots=True)
class ServiceDefinition:
    id: str
    hook: str
    title: str
    description: str
    usage_requirements: str
    prefetch: tuple[PrefetchTemplate, ...]
    rules: RuleFunction
    version: str = __version__

    def descriptor(self) -> ServiceDescriptor:
        return ServiceDescriptor(
            hook=self.hook,
            title=self.title,
            description=self.description,
            id=self.id,
            prefetch={t.key: t.query for t in self.prefetch} or None,
            usage_requirements=self.usage_requirements,
            version=self.version,
        )


class Catalogue:
    def __init__(self, services: Sequence[ServiceDefinition]) -> None:
        self._by_id: dict[str, dict[str, ServiceDefinition]] = {}
        for service in services:
            problems = [p for t in service.prefetch for p in check_template(hook_spec(service.hook), t)]
            if problems:
                raise ValueError(f"service {service.id}: {'; '.join(problems)}")
            self._by_id.setdefault(service.id, {})[service.hook] = service
        self.services = tuple(services)

    def find(self, service_id: str, hook: str) -> ServiceDefinition:
        hooks = self._by_id.get(service_id)
        if hooks is None:
            raise UnknownServiceError(f"no CDS service {service_id!r}", location="id")
        service = hooks.get(hook)
        if service is None:
            offered = ", ".join(sorted(hooks))
            raise HookMismatchError(
                f"service {service_id!r} answers {offered}, not {hook!r}", location="hook"
            )
        return service

    def exists(self, service_id: str) -> bool:
        return service_id in self._by_id


def _long_stay(record: PatientRecord, env: RuleEnvironment) -> list[Finding]:
    return length_of_stay.evaluate(record, env.settings.long_stay, env.terminology)


_LONG_STAY_PREFETCH = (
    PrefetchTemplate("encounters", "Encounter?patient={{context.patientId}}&status=in-progress"),
    PrefetchTemplate("carePlans", "CarePlan?patient={{context.patientId}}", required=False),
    PrefetchTemplate("goals", "Goal?patient={{context.patientId}}", required=False),
)
_LONG_STAY_USAGE = (
    "Needs read access to the patient's Encounter, CarePlan and Goal resources "
    "(prefetch or the FHIR server). Counts days on the trust's local calendar."
)

SERVICES: tuple[ServiceDefinition, ...] = (
    ServiceDefinition(
        id="long-stay",
        hook="patient-view",
        title="Long hospital stay (stranded / super-stranded)",
        description=(
            "Warns when an inpatient has been in hospital 7+ days (stranded) or 21+ days "
            "(super-stranded) without an expected discharge date or a discharge plan shared "
            "with the patient, and offers to start one."
        ),
        usage_requirements=_LONG_STAY_USAGE,
        prefetch=_LONG_STAY_PREFETCH,
        rules=_long_stay,
    ),
    ServiceDefinition(
        id="long-stay",
        hook="encounter-discharge",
        title="Long hospital stay at discharge",
        description=(
            "At discharge of a long stay (7+ days), checks that a discharge plan exists and "
            "was shared with the patient."
        ),
        usage_requirements=_LONG_STAY_USAGE,
        prefetch=_LONG_STAY_PREFETCH,
        rules=_long_stay,
    ),
)

CATALOGUE = Catalogue(SERVICES)
