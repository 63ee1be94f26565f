"""Prefetch templates: the restricted query subset and token rendering.

CDS Hooks 2.0 §"Prefetch template": templates SHOULD stay within a restricted
subset (instance read; type search with references, token equality
optionally ``:in``, dates with eq/lt/gt/ge/le, ``_count``, ``_sort``), and
tokens are root-level context fields the hook marks as tokens plus the
``user…Id`` tokens. We hold our own templates to that, checked at start-up
and by tests, so every EHR can satisfy them.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from fhir_safety.cds.hooks import HookSpec

__all__ = ["PrefetchTemplate", "check_template", "render_template"]

_TOKEN_RE = re.compile(r"\{\{\s*([A-Za-z.]+)\s*\}\}")
_READ_RE = re.compile(r"^(?P<type>[A-Z][A-Za-z]+)/(?P<id>\{\{[A-Za-z.]+\}\}|[A-Za-z0-9\-.]+)$")
_SEARCH_RE = re.compile(r"^(?P<type>[A-Z][A-Za-z]+)\?(?P<query>.+)$")
_PARAM_RE = re.compile(r"^(?P<name>[a-z_][a-z0-9\-_]*)(?P<modifier>:in)?$")
_DATE_PREFIX_RE = re.compile(r"^(eq|lt|gt|ge|le)?[0-9{]")
_USER_TOKENS = {
    "userPractitionerId": "Practitioner",
    "userPractitionerRoleId": "PractitionerRole",
    "userPatientId": "Patient",
    "userRelatedPersonId": "RelatedPerson",
}


@dataclass(frozen=True, slots=True)
class PrefetchTemplate:
    """One prefetch key. ``required``: without it the service answers 412."""

    key: str
    query: str
    required: bool = True

    @property
    def resource_type(self) -> str:
        match = _READ_RE.match(self.query) or _SEARCH_RE.match(self.query)
        if match is None:
            raise ValueError(f"not a FHIR read or search: {self.query!r}")
        return match["type"]

    @property
    def is_read(self) -> bool:
        return _READ_RE.match(self.query) is not None


def check_template(spec: HookSpec, template: PrefetchTemplate) -> list[str]:
    """Problems with a template for this hook (empty when it is within the subset)."""
    problems = [
        f"token {{{{{token}}}}} is not a root-level prefetch token of {spec.name}"
        for token in _TOKEN_RE.findall(template.query)
        if not _token_allowed(spec, token)
    ]
    if _READ_RE.match(template.query):
        return problems
    search = _SEARCH_RE.match(template.query)
    if search is None:
        return [*problems, f"{template.query!r} is neither a read nor a type search"]
    for pair in search["query"].split("&"):
        name, _, value = pair.partition("=")
        if not value or _PARAM_RE.match(name) is None:
            problems.append(f"parameter {pair!r} is outside the restricted query subset")
        elif name in {"_count", "_sort"}:
            continue
        elif name.startswith("_") and name not in {"_id", "_lastUpdated"}:
            problems.append(f"parameter {name!r} is outside the restricted query subset")
        elif name in {"date", "authoredon", "_lastUpdated"} and not _DATE_PREFIX_RE.match(value):
            problems.append(f"date parameter {pair!r} needs an eq/lt/gt/ge/le prefix or a date")
    return problems


def _token_allowed(spec: HookSpec, token: str) -> bool:
    if token in _USER_TOKENS:
        return spec.field("userId") is not None
    if not token.startswith("context."):
        return False
    field = spec.field(token.removeprefix("context."))
    return field is not None and field.token


def render_template(template: PrefetchTemplate, context: Mapping[str, Any]) -> str | None:
    """The query with its tokens filled in, or None when a token has no value.

    A template whose optional token is absent (e.g. no ``encounterId``) cannot be
    run; the caller treats it as "no data for this key", not as an error.
    """
    missing = False

    def substitute(match: re.Match[str]) -> str:
        nonlocal missing
        value = _token_value(match[1], context)
        if value is None:
            missing = True
            return ""
        return quote(value, safe=",/")

    rendered = _TOKEN_RE.sub(substitute, template.query)
    return None if missing else rendered


def _token_value(token: str, context: Mapping[str, Any]) -> str | None:
    if token in _USER_TOKENS:
        user = context.get("userId")
        prefix = f"{_USER_TOKENS[token]}/"
        return (
            user.removeprefix(prefix) if isinstance(user, str) and user.startswith(prefix) else None
        )
    value = context.get(token.removeprefix("context."))
    if isinstance(value, list):  # e.g. dispatchedOrders: a comma list of references
        return ",".join(str(item) for item in value) or None
    return value if isinstance(value, str) and value else None
