"""``ServiceDefinition``: one CDS service on one hook (texts, prefetch templates, rules)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from fhir_safety import __version__
from fhir_safety.cds.models import ServiceDescriptor
from fhir_safety.cds.prefetch import PrefetchTemplate
from fhir_safety.domain import Finding
from fhir_safety.record import PatientRecord, RuleEnvironment

__all__ = ["RuleFunction", "ServiceDefinition"]

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
