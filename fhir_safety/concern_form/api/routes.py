"""The concern form's pages (public, reached only by a ward link) and the staff link endpoint.

``GET /concern``                 a box to type the code from a card into
``GET /concern/{code}``          the questions, for the patient the link names (first name only)
``POST /concern/{code}``         the answers: checked, written, and a plain confirmation
``GET /concern-form/form.css``   the one stylesheet (no scripts anywhere)
``POST /concern-links``          staff (the EHR, with its JWT): a new ward link as JSON

Every page is sent with a strict Content-Security-Policy, ``Referrer-Policy: same-origin``
(the code is in the URL: never sent to another site) and ``Cache-Control: no-store``. Statuses come from
``concern_form.api.errors``; the rules on links and tokens are in ``concern_form.signing``.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote, urlsplit

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape
from pydantic import BaseModel, ConfigDict, Field

from fhir_safety.api.app_state import AppState
from fhir_safety.api.body import read_model
from fhir_safety.api.deps import Authenticated, StateDep
from fhir_safety.api.openapi import errors
from fhir_safety.concern_form.api.errors import PageKind, status_of
from fhir_safety.concern_form.limits import RateLimiter, SubmissionLedger
from fhir_safety.concern_form.links import issue_link, signer_for
from fhir_safety.concern_form.signing import (
    FormTokenError,
    LinkError,
    LinkSigner,
    WardLink,
    normalise_code,
)
from fhir_safety.config import Settings
from fhir_safety.errors import AuthenticationError, FhirError, InvalidRequestError
from fhir_safety.fhir.client import FhirClient
from fhir_safety.services.concern_submission import (
    ConcernAnswers,
    ConcernSubmitter,
    FormPatient,
    PatientNotReachableError,
    SubmissionReceipt,
)
from fhir_safety.services.escalation import ConcernEscalator

__all__ = ["CSS_PATH", "router"]

log = logging.getLogger(__name__)

router = APIRouter()

_HERE = Path(__file__).resolve().parent
_ENV = Environment(
    loader=FileSystemLoader(_HERE / "templates"),
    autoescape=select_autoescape(default=True, default_for_string=True),
    undefined=StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)
CSS_PATH = "/concern-form/form.css"
MAX_FORM_BYTES = 16_384
NOTE_MAX, NAME_MAX = 1000, 80
_PHONE = re.compile(r"\+?[0-9][0-9 ()-]{5,24}")
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; "
        "frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    # The code is in the URL: never sent to another site. Not "no-referrer": with that,
    # browsers send "Origin: null" on the form's own POST and the origin check could not work.
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}
_FIELDS = ("how_today", "worried", "who", "note", "name", "phone")
_HOW = {"better": "better", "same": "about the same", "worse": "worse"}
_WHO = {"patient": "the patient", "family": "a family member", "carer": "a carer"}


@dataclass
class _FormMemory:
    """Per app: the signer, the per-link rate limit, and the single-use form tokens."""

    signer: LinkSigner
    limiter: RateLimiter
    ledger: SubmissionLedger[SubmissionReceipt]


@dataclass(frozen=True, slots=True)
class _Opened:
    memory: _FormMemory
    link: WardLink
    patient: FormPatient
    submitter: ConcernSubmitter


class _RateLimitedError(Exception):
    """The link has had its answers for this hour."""


class _TooLargeError(Exception):
    """The form body is over ``MAX_FORM_BYTES``."""


# --- pages -----------------------------------------------------------------------------------


@router.get("/concern", include_in_schema=False)
async def enter_code(state: StateDep, code: str | None = None) -> Response:
    """The box to type a code into; with ``?code=`` it goes to that code's form."""
    if code is not None:
        typed = normalise_code(code)
        if typed and len(typed) <= 200 and typed.isalnum():
            return RedirectResponse(f"/concern/{quote(typed)}", status_code=303)
        return _page("code-entry", "code_entry.html", state, code_error=True, typed=code[:200])
    return _page("code-entry", "code_entry.html", state, code_error=False, typed="")


@router.get("/concern/{code}", include_in_schema=False)
async def show_form(code: str, request: Request, state: StateDep) -> Response:
    """The questions for the patient the link names."""
    opened = await _open(code, request, state)
    if isinstance(opened, Response):
        return opened
    return _form_page("form", state, code, opened)


@router.post("/concern/{code}", include_in_schema=False)
async def send_form(code: str, request: Request, state: StateDep) -> Response:
    """Check the answers, write them, and say plainly what happens next."""
    if not _same_origin(request, state.settings):
        return _problem("refused", state)
    try:
        fields = await _read_form(request)
    except _TooLargeError:
        return _problem("too-large", state)
    opened = await _open(code, request, state)
    if isinstance(opened, Response):
        return opened
    values = {k: fields.get(k, "") for k in _FIELDS}
    now = state.clock()
    form = state.settings.concern_form
    try:
        token = opened.memory.signer.check_form_token(
            fields.get("token"),
            opened.link,
            now=now,
            max_age=timedelta(minutes=form.form_token_minutes),
        )
    except FormTokenError as exc:
        # A page left open too long and a forged token get the same answer: the questions
        # again, answers kept, and a fresh token. A cross-site page cannot read it.
        log.info("concern form token refused", extra={"fields": {"reason": exc.reason}})
        return _form_page("form-expired", state, code, opened, values=values)
    answers, problems = _check_answers(values, opened.patient)
    if answers is None:
        return _form_page("answers-missing", state, code, opened, values=values, problems=problems)

    async def write() -> SubmissionReceipt:
        if not opened.memory.limiter.allow(opened.link.fingerprint, now):
            raise _RateLimitedError
        return await opened.submitter.submit(opened.patient, answers, token.submission_id)

    try:
        used = await opened.memory.ledger.once(token.submission_id, now, write)
    except _RateLimitedError:
        return _problem("too-many", state, per_hour=form.submissions_per_hour)
    except FhirError as exc:
        log.error("concern form answer not written", extra={"fields": {"error": exc.message}})
        return _problem("unavailable", state)
    return _page(
        "sent",
        "sent.html",
        state,
        name=_name(opened.patient),
        receipt=used.result,
        repeated=used.repeated,
        said=_summary(answers, opened.patient),
        again_url=f"/concern/{quote(code)}",
    )


@router.get(CSS_PATH, include_in_schema=False)
async def stylesheet() -> Response:
    """The form's only stylesheet."""
    css = (_HERE / "static" / "concern-form.css").read_bytes()
    headers = {"Cache-Control": "public, max-age=3600", "X-Content-Type-Options": "nosniff"}
    return Response(css, media_type="text/css; charset=utf-8", headers=headers)


# --- staff endpoint --------------------------------------------------------------------------


class LinkRequest(BaseModel):
    """A ward link for one patient: ``days`` defaults to the configured lifetime."""

    model_config = ConfigDict(extra="forbid")
    patient: str = Field(min_length=1, max_length=64)
    ward: str = Field(min_length=1, max_length=32)
    days: int | None = None


@router.post(
    "/concern-links",
    tags=["Concern form"],
    status_code=201,
    responses=errors(400, 401, 413),
)
async def create_concern_link(
    request: Request, state: StateDep, caller: Authenticated
) -> JSONResponse:
    """A signed, time-limited ward link for the patient and family concern form (staff only)."""
    if caller is None:
        # Minting links is never open: with no JWT issuer configured, use the CLI instead.
        raise AuthenticationError("concern links need JWT authentication to be configured")
    body = await read_model(request, LinkRequest, 10_000)
    issued = issue_link(state.settings, body.patient, body.ward, now=state.clock(), days=body.days)
    first_name = None
    submitter = _submitter(state)
    if submitter is not None:
        try:
            first_name = (await submitter.patient(body.patient)).first_name
        except PatientNotReachableError as exc:
            raise InvalidRequestError(f"the form cannot take concerns: {exc.message}") from exc
    payload: dict[str, Any] = {
        "patient": issued.patient_id,
        "ward": issued.ward,
        "url": issued.url,
        "code": issued.grouped_code,
        "expires": issued.expires_at.isoformat(),
        "firstName": first_name,
    }
    return JSONResponse(payload, status_code=201)


# --- helpers ---------------------------------------------------------------------------------


def _memory(request_app_state: Any, settings: Settings) -> _FormMemory:
    memory: _FormMemory | None = getattr(request_app_state, "concern_form", None)
    if memory is None:
        form = settings.concern_form
        memory = _FormMemory(
            signer_for(settings),
            RateLimiter(form.submissions_per_hour, timedelta(hours=1)),
            SubmissionLedger(timedelta(minutes=form.form_token_minutes)),
        )
        request_app_state.concern_form = memory
    return memory


def _submitter(state: AppState) -> ConcernSubmitter | None:
    settings = state.settings
    if not settings.fhir_server_url:
        return None
    client = FhirClient(
        state.http,
        settings.fhir_server_url,
        access_token=settings.fhir_server_token,
        max_response_bytes=settings.max_fhir_response_bytes,
        max_pages=settings.max_fhir_pages,
    )
    escalator = ConcernEscalator(client, settings, state.terminology, state.clock)
    return ConcernSubmitter(
        client, settings, state.terminology, state.clock, escalate=escalator.escalate
    )


async def _open(code: str, request: Request, state: AppState) -> _Opened | Response:
    """The link, the patient and the means to write; or the page saying why not."""
    submitter = _submitter(state)
    if state.settings.concern_form_secret is None or submitter is None:
        return _problem("not-set-up", state)
    memory = _memory(request.app.state, state.settings)
    try:
        link = memory.signer.verify(
            code,
            now=state.clock(),
            max_lifetime=timedelta(days=state.settings.concern_form.link_lifetime_days),
        )
        patient = await submitter.patient(link.patient_id)
    except (LinkError, PatientNotReachableError) as exc:
        log.info("concern form link refused", extra={"fields": {"reason": exc.message}})
        return _problem("link-not-working", state)
    except FhirError as exc:
        log.error("concern form cannot read the patient", extra={"fields": {"error": exc.message}})
        return _problem("unavailable", state)
    return _Opened(memory, link, patient, submitter)


def _same_origin(request: Request, settings: Settings) -> bool:
    """Refuse posts a browser says come from another site (the form token is the main check)."""
    site = request.headers.get("sec-fetch-site")
    if site is not None and site not in {"same-origin", "none"}:
        return False
    origin = request.headers.get("origin")
    if origin is None:
        return True
    allowed = {_origin(str(request.base_url))}
    allowed |= {
        _origin(u) for u in (settings.concern_form.public_url, settings.public_base_url) if u
    }
    return origin in allowed


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


async def _read_form(request: Request) -> dict[str, str]:
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > MAX_FORM_BYTES:
        raise _TooLargeError
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_FORM_BYTES:
            raise _TooLargeError
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        return {}
    parsed = parse_qs(text, keep_blank_values=True, max_num_fields=20)
    return {key: values[0] for key, values in parsed.items() if values}


def _check_answers(
    values: dict[str, str], patient: FormPatient
) -> tuple[ConcernAnswers | None, list[dict[str, str]]]:
    """The answers, or what to fix: one message per field, in the order of the page."""
    name = _name(patient)
    problems: list[dict[str, str]] = []
    how, worried, who = values["how_today"], values["worried"], values["who"]
    note = _clean(values["note"])
    person, phone = _clean(values["name"]), _clean(values["phone"])
    if how not in _HOW:
        problems.append(_problem_for("how_today", f"Choose how {name} is today"))
    if worried not in {"yes", "no"}:
        problems.append(_problem_for("worried", f"Choose yes or no: are you worried about {name}?"))
    if len(note) > NOTE_MAX:
        problems.append(
            _problem_for(
                "note", f"Write {NOTE_MAX:,} characters or fewer. You wrote {len(note):,}."
            )
        )
    if who not in _WHO:
        problems.append(_problem_for("who", "Choose who you are"))
    if who != "patient":
        if len(person) > NAME_MAX:
            problems.append(
                _problem_for("name", f"Write your name in {NAME_MAX} characters or fewer")
            )
        if phone and not _PHONE.fullmatch(phone):
            problems.append(_problem_for("phone", "Enter a phone number, like 07700 900 982"))
    if problems:
        return None, problems
    family = who != "patient"
    answers = ConcernAnswers(
        how_today=how,  # type: ignore[arg-type]  # checked against _HOW above
        worried=worried == "yes",
        who=who,  # type: ignore[arg-type]  # checked against _WHO above
        note=note or None,
        name=(person or None) if family else None,
        phone=(phone or None) if family else None,
    )
    return answers, []


def _problem_for(field: str, message: str) -> dict[str, str]:
    return {"field": field, "message": message}


def _clean(text: str) -> str:
    return _CONTROL.sub("", text.replace("\r\n", "\n")).strip()


def _name(patient: FormPatient) -> str:
    return patient.first_name or "the patient"


def _summary(answers: ConcernAnswers, patient: FormPatient) -> list[str]:
    name = _name(patient)
    said = [
        f"{name} is {_HOW[answers.how_today]} today",
        f"you are {'worried' if answers.worried else 'not worried'} about {name}",
        f"you are {_WHO[answers.who]}",
    ]
    if answers.note:
        said.append("you wrote a message")
    return said


def _form_page(
    kind: PageKind,
    state: AppState,
    code: str,
    opened: _Opened,
    *,
    values: dict[str, str] | None = None,
    problems: list[dict[str, str]] | None = None,
) -> Response:
    token = opened.memory.signer.form_token(opened.link, now=state.clock())
    blank = dict.fromkeys(_FIELDS, "")
    problems = problems or []
    return _page(
        kind,
        "form.html",
        state,
        name=_name(opened.patient),
        action=f"/concern/{quote(code)}",
        token=token,
        values=values or blank,
        errors=problems,
        error_for=dict.fromkeys(_FIELDS, "") | {p["field"]: p["message"] for p in problems},
        note_max=NOTE_MAX,
    )


def _problem(kind: PageKind, state: AppState, **context: Any) -> Response:
    return _page(kind, "problem.html", state, **context)


def _page(kind: PageKind, template: str, state: AppState, **context: Any) -> HTMLResponse:
    form = state.settings.concern_form
    phone = form.marthas_rule_phone
    call = {
        "phone": phone,
        "tel": re.sub(r"[^0-9+]", "", phone) if phone else None,
        "text": form.marthas_rule_text,
    }
    html = _ENV.get_template(template).render(
        kind=kind,
        css=CSS_PATH,
        call=call,
        lifetime_days=form.link_lifetime_days,
        **context,
    )
    return HTMLResponse(html, status_code=status_of(kind), headers=_HEADERS)
