"""Validate resources with the FHIR server's ``$validate`` (HAPI's HL7 validation engine)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from fhir_safety.fhir.client import FhirClient

__all__ = ["ValidationIssue", "validate_resource"]


@dataclass(frozen=True, slots=True)
class ValidationIssue:
    severity: str
    location: str
    message: str

    @property
    def is_error(self) -> bool:
        return self.severity in {"error", "fatal"}


async def validate_resource(
    client: FhirClient, resource: dict[str, Any], profile: str | None = None
) -> list[ValidationIssue]:
    """Issues the server reports; ``profile`` overrides the resource's own ``meta.profile``."""
    path = f"{resource['resourceType']}/$validate"
    if profile:
        path += f"?profile={quote(profile, safe=':/')}"
    outcome = await client.post(path, resource)
    return [
        ValidationIssue(
            severity=str(issue.get("severity", "error")),
            location=", ".join(issue.get("expression") or issue.get("location") or []),
            message=str(issue.get("diagnostics") or issue.get("code") or ""),
        )
        for issue in outcome.get("issue") or []
        if isinstance(issue, dict)
    ]
