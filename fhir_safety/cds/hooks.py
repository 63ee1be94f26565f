"""What each supported hook puts in ``context``, and how it is checked.

Source: CDS Hooks library hook definitions (patient-view 2.0, order-select 2.0,
order-sign 2.0, order-dispatch 1.1, encounter-start/-discharge 1.0) as
summarised in shared/reference/cds-hooks.md §1.8. "token" marks the fields a
prefetch template may use as ``{{context.<field>}}``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from fhir_safety.errors import ContextError, HookMismatchError

__all__ = ["HOOKS", "ContextField", "HookSpec", "check_context", "hook_spec"]

FieldKind = Literal["id", "reference", "reference-list", "bundle", "resource-list"]

_ID_RE = re.compile(r"^[A-Za-z0-9\-.]{1,64}$")
_REFERENCE_RE = re.compile(r"^(?P<type>[A-Z][A-Za-z]+)/(?P<id>[A-Za-z0-9\-.]{1,64})$")


@dataclass(frozen=True, slots=True)
class ContextField:
    name: str
    kind: FieldKind
    required: bool
    token: bool  # usable as a prefetch token
    types: tuple[str, ...] = ()  # allowed resource types for references


@dataclass(frozen=True, slots=True)
class HookSpec:
    name: str
    fields: tuple[ContextField, ...]

    def field(self, name: str) -> ContextField | None:
        return next((f for f in self.fields if f.name == name), None)


_USER_ANY = ("Practitioner", "PractitionerRole", "Patient", "RelatedPerson")
_USER_PRESCRIBER = ("Practitioner", "PractitionerRole")
_ORDER_TYPES = (
    "MedicationRequest",
    "ServiceRequest",
    "NutritionOrder",
    "DeviceRequest",
    "VisionPrescription",
    "CommunicationRequest",
    "Task",
)


def _f(
    name: str, kind: FieldKind, required: bool, token: bool, types: tuple[str, ...] = ()
) -> ContextField:
    return ContextField(name, kind, required, token, types)


HOOKS: Mapping[str, HookSpec] = {
    spec.name: spec
    for spec in (
        HookSpec(
            "patient-view",
            (
                _f("userId", "reference", True, True, _USER_ANY),
                _f("patientId", "id", True, True),
                _f("encounterId", "id", False, True),
            ),
        ),
        HookSpec(
            "order-select",
            (
                _f("userId", "reference", True, True, _USER_PRESCRIBER),
                _f("patientId", "id", True, True),
                _f("encounterId", "id", False, True),
                _f("selections", "reference-list", True, False, _ORDER_TYPES),
                _f("draftOrders", "bundle", True, False),
            ),
        ),
        HookSpec(
            "order-sign",
            (
                _f("userId", "reference", True, True, _USER_PRESCRIBER),
                _f("patientId", "id", True, True),
                _f("encounterId", "id", False, True),
                _f("draftOrders", "bundle", True, False),
            ),
        ),
        HookSpec(
            "order-dispatch",
            (
                _f("patientId", "id", True, True),
                _f("dispatchedOrders", "reference-list", True, True, _ORDER_TYPES),
                _f("performer", "reference", True, True, ()),
                _f("fulfillmentTasks", "resource-list", False, False),
            ),
        ),
        HookSpec(
            "encounter-start",
            (
                _f("userId", "reference", True, True, _USER_ANY),
                _f("patientId", "id", True, True),
                _f("encounterId", "id", True, True),
            ),
        ),
        HookSpec(
            "encounter-discharge",
            (
                _f("userId", "reference", True, True, _USER_ANY),
                _f("patientId", "id", True, True),
                _f("encounterId", "id", True, True),
            ),
        ),
    )
}


def hook_spec(hook: str) -> HookSpec:
    spec = HOOKS.get(hook)
    if spec is None:
        raise HookMismatchError(f"hook {hook!r} is not supported", location="hook")
    return spec


def check_context(spec: HookSpec, context: Mapping[str, Any]) -> None:
    """Raise ``ContextError`` naming the first field that is missing or malformed.

    Unknown context fields are tolerated (hooks evolve; ``extension`` too).
    """
    for field in spec.fields:
        value = context.get(field.name)
        location = f"context.{field.name}"
        if value is None:
            if field.required:
                raise ContextError(f"{location} is required for {spec.name}", location=location)
            continue
        _check_field(field, value, location)
    if spec.field("selections") is not None:
        _check_selections_in_draft_orders(context)


def _check_field(field: ContextField, value: Any, location: str) -> None:
    if field.kind == "id":
        if not isinstance(value, str) or not _ID_RE.match(value):
            raise ContextError(f"{location} must be a FHIR id", location=location)
    elif field.kind == "reference":
        _check_reference(value, field.types, location)
    elif field.kind == "reference-list":
        if not isinstance(value, list) or not value:
            raise ContextError(f"{location} must be a non-empty array", location=location)
        for index, item in enumerate(value):
            _check_reference(item, field.types, f"{location}[{index}]")
    elif field.kind == "bundle":
        _check_bundle(value, location)
    elif not isinstance(value, list | dict):
        raise ContextError(f"{location} must be an array or Bundle of resources", location=location)


def _check_reference(value: Any, types: tuple[str, ...], location: str) -> None:
    match = _REFERENCE_RE.match(value) if isinstance(value, str) else None
    if match is None:
        raise ContextError(f"{location} must be a reference like 'Type/id'", location=location)
    if types and match["type"] not in types:
        raise ContextError(
            f"{location} must reference one of {', '.join(types)}", location=location
        )


def _check_bundle(value: Any, location: str) -> None:
    if not isinstance(value, dict) or value.get("resourceType") != "Bundle":
        raise ContextError(f"{location} must be a FHIR Bundle", location=location)
    entries = value.get("entry", [])
    if not isinstance(entries, list):
        raise ContextError(f"{location}.entry must be an array", location=location)
    for index, entry in enumerate(entries):
        resource = entry.get("resource") if isinstance(entry, dict) else None
        if not isinstance(resource, dict) or not isinstance(resource.get("resourceType"), str):
            raise ContextError(
                f"{location}.entry[{index}].resource must be a FHIR resource", location=location
            )


def _check_selections_in_draft_orders(context: Mapping[str, Any]) -> None:
    draft_orders = context.get("draftOrders") or {}
    present = {
        f"{entry['resource']['resourceType']}/{entry['resource'].get('id')}"
        for entry in draft_orders.get("entry", [])
    }
    for index, selection in enumerate(context.get("selections") or []):
        if selection not in present:
            location = f"context.selections[{index}]"
            raise ContextError(
                f"{location} ({selection}) is not among context.draftOrders", location=location
            )
