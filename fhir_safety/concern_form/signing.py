"""Ward links and form tokens: HMAC-SHA256 over a compact payload. Pure (the clock is passed in).

**Ward link code.** Staff hand a family a link ``{base}/concern/{code}`` for one patient on one
ward. The code is Crockford base32 (digits and capitals, no I, L, O or U: easy to type from a
card, compact in a QR code's alphanumeric mode, read case-insensitively, hyphens and spaces
ignored) of::

    header (1 byte: version 1 << 4 | flags)  expires (4 bytes, Unix seconds, big-endian)
    ward length (1 byte)  ward (ASCII)  patient id (ASCII, or 16 bytes when a UUID: flag 1)
    MAC (12 bytes: HMAC-SHA256 of all the above, truncated to 96 bits)

The patient id and ward are readable by whoever holds the code, but not changeable: any change
breaks the MAC, so a code can never be turned into one for another patient, and there is
nothing to guess (96 bits). A code is refused when the MAC is wrong, the version unknown, it
has expired, or it would outlive the lifetime configured *now* (lowering the lifetime shortens
links already handed out). Rotating the secret revokes every code at once.

**Form token.** Each rendering of the form carries a fresh token (CSRF): 16 random bytes and
the time of rendering, MACed together with the link's fingerprint, so a token works only for
the link it was rendered for and only for ``form_token_minutes``. The random part identifies
the submission: it is single use (``limits.SubmissionLedger``) and names the Observation.

Keys are derived from the one configured secret, one per purpose, so a link MAC can never be
replayed as a token MAC.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
import secrets
import struct
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Literal

from fhir_safety.errors import FhirSafetyError

__all__ = [
    "FormToken",
    "FormTokenError",
    "LinkError",
    "LinkSigner",
    "WardLink",
    "group_code",
    "normalise_code",
]

LINK_VERSION = 1
TOKEN_VERSION = 1
MAC_BYTES = 12  # 96 bits: HMAC truncation as in RFC 2104 section 5 (at least 80 bits)
TOKEN_MAC_BYTES = 16
_FLAG_UUID = 0x01
_LINK_HEADER = struct.Struct(">BIB")  # header, expires, ward length
_TOKEN = struct.Struct(">B16sI")  # version, nonce, issued
_FHIR_ID = re.compile(r"[A-Za-z0-9\-.]{1,64}")
WARD_PATTERN = r"[A-Za-z0-9][A-Za-z0-9 ._-]{0,31}"
_WARD = re.compile(WARD_PATTERN)
# RFC 4648 base32 alphabet -> Crockford's (no I, L, O, U).
_RFC4648 = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"
_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
_CROCKFORD_SET = frozenset(_CROCKFORD)
_TO_CROCKFORD = str.maketrans(_RFC4648, _CROCKFORD)
_FROM_CROCKFORD = str.maketrans(_CROCKFORD, _RFC4648)
_READ_AS = str.maketrans({"O": "0", "I": "1", "L": "1"})  # Crockford: read lookalikes as digits
_MAX_CODE_CHARS = 200
# A link may not outlive the configured lifetime by more than this (clock differences).
_LIFETIME_SLACK = timedelta(minutes=5)


class LinkError(FhirSafetyError):
    """Not a usable ward link. Why (tampered, expired, wrong secret) is for logs, never shown."""


class FormTokenError(FhirSafetyError):
    """A form token that is missing or forged ("invalid"), or too old ("expired")."""

    def __init__(self, message: str, *, reason: Literal["invalid", "expired"]) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class WardLink:
    """What a verified code says: the patient, the ward, until when; and its fingerprint."""

    patient_id: str
    ward: str
    expires_at: datetime
    fingerprint: str  # 32 hex digits, unique per code; a key for limits, never the code itself


@dataclass(frozen=True, slots=True)
class FormToken:
    """A verified form token: ``submission_id`` (32 hex digits) names this one submission."""

    submission_id: str
    issued_at: datetime


def normalise_code(code: str) -> str:
    """Upper case, without hyphens or spaces, with O read as 0 and I, L as 1."""
    return re.sub(r"[\s-]", "", code).upper().translate(_READ_AS)


def group_code(code: str, size: int = 4) -> str:
    """``ABCD-EFGH-...``: easier to read out or copy from a card."""
    return "-".join(code[i : i + size] for i in range(0, len(code), size))


class LinkSigner:
    """Issues and checks ward link codes and form tokens with keys derived from one secret."""

    def __init__(self, secret: str) -> None:
        if len(secret) < 32:
            raise ValueError("the concern form secret must be at least 32 characters")
        master = secret.encode("utf-8")
        self._link_key = hmac.digest(master, b"fhir-safety concern-link v1", "sha256")
        self._token_key = hmac.digest(master, b"fhir-safety concern-form-token v1", "sha256")

    # --- ward links ----------------------------------------------------------------------

    def issue(self, patient_id: str, ward: str, *, expires_at: datetime) -> str:
        """The code for ``patient_id`` on ``ward``, valid until ``expires_at``."""
        if not _FHIR_ID.fullmatch(patient_id):
            raise ValueError(f"not a FHIR id: {patient_id!r}")
        if not _WARD.fullmatch(ward):
            raise ValueError(f"a ward must match {WARD_PATTERN} (got {ward!r})")
        flags, patient = 0, patient_id.encode("ascii")
        if _is_canonical_uuid(patient_id):
            flags, patient = _FLAG_UUID, uuid.UUID(patient_id).bytes
        ward_bytes = ward.encode("ascii")
        header = _LINK_HEADER.pack(
            LINK_VERSION << 4 | flags, int(expires_at.timestamp()), len(ward_bytes)
        )
        payload = header + ward_bytes + patient
        raw = payload + self._link_mac(payload)
        return base64.b32encode(raw).decode("ascii").rstrip("=").translate(_TO_CROCKFORD)

    def verify(self, code: str, *, now: datetime, max_lifetime: timedelta) -> WardLink:
        """The link a code stands for; ``LinkError`` for anything not issued by us and current."""
        raw = _decode(code)
        payload, mac = raw[:-MAC_BYTES], raw[-MAC_BYTES:]
        if len(payload) <= _LINK_HEADER.size or not hmac.compare_digest(
            mac, self._link_mac(payload)
        ):
            raise LinkError("ward link MAC does not match (tampered, or another secret)")
        header, expires, ward_length = _LINK_HEADER.unpack_from(payload)
        if header >> 4 != LINK_VERSION:
            raise LinkError(f"ward link version {header >> 4} is not supported")
        ward_bytes = payload[_LINK_HEADER.size : _LINK_HEADER.size + ward_length]
        patient_bytes = payload[_LINK_HEADER.size + ward_length :]
        try:
            ward = ward_bytes.decode("ascii")
            if header & _FLAG_UUID:
                patient_id = str(uuid.UUID(bytes=patient_bytes))
            else:
                patient_id = patient_bytes.decode("ascii")
        except (UnicodeDecodeError, ValueError) as exc:
            raise LinkError("ward link payload is not readable") from exc
        if not _WARD.fullmatch(ward) or not _FHIR_ID.fullmatch(patient_id):
            raise LinkError("ward link names no valid ward or patient")
        expires_at = datetime.fromtimestamp(expires, tz=UTC)
        if now >= expires_at:
            raise LinkError("ward link has expired")
        if expires_at - now > max_lifetime + _LIFETIME_SLACK:
            raise LinkError("ward link outlives the configured lifetime")
        fingerprint = hashlib.sha256(raw).hexdigest()[:32]
        return WardLink(patient_id, ward, expires_at, fingerprint)

    def _link_mac(self, payload: bytes) -> bytes:
        return hmac.digest(self._link_key, payload, "sha256")[:MAC_BYTES]

    # --- form tokens ---------------------------------------------------------------------

    def form_token(self, link: WardLink, *, now: datetime) -> str:
        """A fresh single-use token for one rendering of the form for ``link``."""
        body = _TOKEN.pack(TOKEN_VERSION, secrets.token_bytes(16), int(now.timestamp()))
        raw = body + self._token_mac(body, link)
        return base64.urlsafe_b64encode(raw).decode("ascii").rstrip("=")

    def check_form_token(
        self, token: str | None, link: WardLink, *, now: datetime, max_age: timedelta
    ) -> FormToken:
        """The token's submission id; ``FormTokenError`` if forged, for another link, or old."""
        if not token or len(token) > 100:
            raise FormTokenError("no form token", reason="invalid")
        try:
            raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        except (binascii.Error, ValueError) as exc:
            raise FormTokenError("form token is not base64url", reason="invalid") from exc
        if len(raw) != _TOKEN.size + TOKEN_MAC_BYTES:
            raise FormTokenError("form token has the wrong length", reason="invalid")
        body, mac = raw[: _TOKEN.size], raw[_TOKEN.size :]
        if not hmac.compare_digest(mac, self._token_mac(body, link)):
            raise FormTokenError("form token MAC does not match this link", reason="invalid")
        version, nonce, issued = _TOKEN.unpack(body)
        if version != TOKEN_VERSION:
            raise FormTokenError(f"form token version {version}", reason="invalid")
        issued_at = datetime.fromtimestamp(issued, tz=UTC)
        if issued_at - now > timedelta(minutes=1):
            raise FormTokenError("form token issued in the future", reason="invalid")
        if now - issued_at > max_age:
            raise FormTokenError("form token has expired", reason="expired")
        return FormToken(nonce.hex(), issued_at)

    def _token_mac(self, body: bytes, link: WardLink) -> bytes:
        message = body + bytes.fromhex(link.fingerprint)
        return hmac.digest(self._token_key, message, "sha256")[:TOKEN_MAC_BYTES]


def _decode(code: str) -> bytes:
    text = normalise_code(code)
    if not 0 < len(text) <= _MAX_CODE_CHARS or not set(text) <= _CROCKFORD_SET:
        raise LinkError("ward link code has characters outside Crockford base32")
    rfc = text.translate(_FROM_CROCKFORD)
    try:
        raw = base64.b32decode(rfc + "=" * (-len(rfc) % 8))
    except (binascii.Error, ValueError) as exc:
        raise LinkError("ward link code is not base32") from exc
    if len(raw) <= MAC_BYTES:
        raise LinkError("ward link code is too short")
    return raw


def _is_canonical_uuid(value: str) -> bool:
    try:
        return str(uuid.UUID(value)) == value
    except ValueError:
        return False
