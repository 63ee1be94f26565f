"""HTTP for the concern form: ``router`` has the public pages and the staff link endpoint."""

from __future__ import annotations

from fhir_safety.concern_form.api.routes import router

__all__ = ["router"]
