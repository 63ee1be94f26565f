"""The CDS services fhir-safety offers, gathered from ``cds/definitions/``.

``cds/definitions/<domain>.py`` binds rules to hooks (texts, prefetch templates);
this module checks every template against the restricted query subset at import
and routes a call by (id, hook). A service id may be offered on several hooks
(CDS Hooks 2.0 allows the same id under different hooks).
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Sequence

from fhir_safety.cds import definitions
from fhir_safety.cds.hooks import hook_spec
from fhir_safety.cds.prefetch import check_template
from fhir_safety.cds.service import ServiceDefinition
from fhir_safety.errors import HookMismatchError, UnknownServiceError

__all__ = ["CATALOGUE", "Catalogue", "ServiceDefinition", "discover_services"]


class Catalogue:
    def __init__(self, services: Sequence[ServiceDefinition]) -> None:
        self._by_id: dict[str, dict[str, ServiceDefinition]] = {}
        for service in services:
            spec = hook_spec(service.hook)
            problems = [p for t in service.prefetch for p in check_template(spec, t)]
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


def discover_services() -> tuple[ServiceDefinition, ...]:
    """Every ``SERVICES`` tuple in ``fhir_safety.cds.definitions``, in module-name order."""
    services: list[ServiceDefinition] = []
    for module in sorted(pkgutil.iter_modules(definitions.__path__), key=lambda m: m.name):
        loaded = importlib.import_module(f"{definitions.__name__}.{module.name}")
        services.extend(loaded.SERVICES)
    return tuple(services)


CATALOGUE = Catalogue(discover_services())
