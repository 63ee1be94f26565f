"""The one place the concern form's pages get their HTTP status.

The form answers people, not programs, so its problems are HTML pages in plain English (the
API's OperationOutcome answers are in ``fhir_safety.api.errors``). A page kind names what
happened; this table says which status it is sent with.
"""

from __future__ import annotations

from typing import Literal

__all__ = ["PageKind", "status_of"]

PageKind = Literal[
    "code-entry",  # the box to type a code into
    "form",  # the questions
    "sent",  # the confirmation
    "answers-missing",  # the questions again, with what to fix
    "form-expired",  # the questions again: the page was open too long, press Send again
    "link-not-working",  # unknown, tampered or expired link, or a patient the form cannot take
    "refused",  # a cross-site post
    "too-large",  # a body over the cap
    "too-many",  # the per-link rate limit
    "not-set-up",  # no secret or no FHIR server configured
    "unavailable",  # the FHIR server failed: nothing was sent
]

_STATUS: dict[PageKind, int] = {
    "code-entry": 200,
    "form": 200,
    "sent": 200,
    "answers-missing": 400,
    "form-expired": 400,
    # One status for every unusable link, whatever the reason: a page never tells a caller
    # more about a code than "it does not work here".
    "link-not-working": 404,
    "refused": 403,
    "too-large": 413,
    "too-many": 429,
    "not-set-up": 503,
    "unavailable": 503,
}


def status_of(kind: PageKind) -> int:
    return _STATUS[kind]
