"""Ward link codes and form tokens: round trip, expiry edges, tampering, other secrets."""

from __future__ import annotations

import base64
import contextlib
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fhir_safety.concern_form.signing import (
    FormTokenError,
    LinkError,
    LinkSigner,
    WardLink,
    group_code,
    normalise_code,
)

NOW = datetime(2026, 11, 26, 9, 0, tzinfo=UTC)
WEEK = timedelta(days=7)
SIGNER = LinkSigner("a" * 32 + "-secret-for-the-signing-tests")
OTHER = LinkSigner("b" * 32 + "-another-secret-rotated-in")
UUID_ID = "0b5e9f8e-1c2d-4e5f-8a9b-0c1d2e3f4a5b"
CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"


def code_for(patient: str = "p-1", ward: str = "7A", expires: datetime = NOW + WEEK) -> str:
    return SIGNER.issue(patient, ward, expires_at=expires)


def verify(code: str, now: datetime = NOW, lifetime: timedelta = WEEK) -> WardLink:
    return SIGNER.verify(code, now=now, max_lifetime=lifetime)


@pytest.mark.parametrize(
    ("patient", "ward"),
    [("p-1", "7A"), ("1234", "Ward 12"), (UUID_ID, "ICU"), ("a." * 32, "W" * 32), ("X", "1")],
)
def test_verify_issued_code_round_trips(patient: str, ward: str) -> None:
    link = verify(code_for(patient, ward))
    assert (link.patient_id, link.ward, link.expires_at) == (patient, ward, NOW + WEEK)
    assert len(link.fingerprint) == 32


def test_issue_code_is_crockford_base32_and_short() -> None:
    code = code_for()
    assert set(code) <= set(CROCKFORD)
    assert len(code) <= 45
    assert len(code_for(UUID_ID)) < len(code_for(UUID_ID.upper()))  # a UUID id is packed


@pytest.mark.parametrize("change", [str.lower, group_code, lambda c: " ".join(c)])
def test_verify_code_typed_differently_is_the_same_link(change: object) -> None:
    code = code_for()
    assert verify(change(code)) == verify(code)  # type: ignore[operator]


def test_normalise_code_reads_lookalike_letters_as_digits() -> None:
    assert normalise_code("o1-Il l") == "01111"


@pytest.mark.parametrize(
    ("now", "valid"),
    [
        (NOW + WEEK - timedelta(seconds=1), True),
        (NOW + WEEK, False),  # expired at the instant
        (NOW + WEEK + timedelta(days=30), False),
    ],
)
def test_verify_expiry_edge(now: datetime, valid: bool) -> None:
    code = code_for()
    if valid:
        assert verify(code, now=now).patient_id == "p-1"
    else:
        with pytest.raises(LinkError, match="expired"):
            verify(code, now=now)


@pytest.mark.parametrize(
    ("lifetime", "valid"),
    [(WEEK, True), (WEEK - timedelta(minutes=5), True), (timedelta(days=3), False)],
)
def test_verify_lowering_the_lifetime_shortens_links_handed_out(
    lifetime: timedelta, valid: bool
) -> None:
    code = code_for()  # issued for 7 days
    if valid:
        verify(code, lifetime=lifetime)
    else:
        with pytest.raises(LinkError, match="outlives"):
            verify(code, lifetime=lifetime)


def test_verify_rotated_secret_revokes_every_link() -> None:
    with pytest.raises(LinkError, match="MAC"):
        OTHER.verify(code_for(), now=NOW, max_lifetime=WEEK)


def _raw(code: str) -> bytearray:
    rfc = code.translate(str.maketrans(CROCKFORD, "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"))
    return bytearray(base64.b32decode(rfc + "=" * (-len(rfc) % 8)))


def _code(raw: bytes) -> str:
    text = base64.b32encode(bytes(raw)).decode().rstrip("=")
    return text.translate(str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ234567", CROCKFORD))


def test_verify_any_flipped_bit_is_refused() -> None:
    raw = _raw(code_for())
    for index in range(len(raw)):
        for bit in range(8):
            tampered = bytearray(raw)
            tampered[index] ^= 1 << bit
            with pytest.raises(LinkError):
                verify(_code(tampered))


def test_verify_patient_swapped_in_keeps_no_valid_mac() -> None:
    """Editing the readable patient id (p-1 -> p-2) breaks the MAC: no link for another patient."""
    raw = _raw(code_for("p-1"))
    at = bytes(raw).index(b"p-1")
    raw[at : at + 3] = b"p-2"
    with pytest.raises(LinkError, match="MAC"):
        verify(_code(raw))


@pytest.mark.parametrize(
    "code", ["", "-", "ABC", "not a code!", "U" * 40, "0" * 201, "Ü" * 10, code_for()[:-1]]
)
def test_verify_garbage_is_a_link_error(code: str) -> None:
    with pytest.raises(LinkError):
        verify(code)


@given(st.text(max_size=120))
def test_verify_never_raises_anything_but_link_error(text: str) -> None:
    with contextlib.suppress(LinkError):
        verify(text)


@given(st.binary(min_size=13, max_size=80))
def test_verify_random_bytes_never_verify(raw: bytes) -> None:
    with pytest.raises(LinkError):
        verify(_code(raw))


@pytest.mark.parametrize(
    ("patient", "ward"),
    [("p 1", "7A"), ("", "7A"), ("p" * 65, "7A"), ("p-1", ""), ("p-1", "-7A"), ("p-1", "W" * 33)],
)
def test_issue_refuses_what_is_not_an_id_or_a_ward(patient: str, ward: str) -> None:
    with pytest.raises(ValueError):  # noqa: PT011 - the message names the field
        SIGNER.issue(patient, ward, expires_at=NOW + WEEK)


def test_signer_refuses_a_short_secret() -> None:
    with pytest.raises(ValueError, match="32"):
        LinkSigner("too-short")


# --- form tokens -------------------------------------------------------------------------------

LINK = verify(code_for())
AGE = timedelta(hours=2)


def test_form_token_round_trips_with_a_fresh_submission_id() -> None:
    first = SIGNER.check_form_token(SIGNER.form_token(LINK, now=NOW), LINK, now=NOW, max_age=AGE)
    second = SIGNER.check_form_token(SIGNER.form_token(LINK, now=NOW), LINK, now=NOW, max_age=AGE)
    assert first.issued_at == NOW
    assert len(first.submission_id) == 32
    assert first.submission_id != second.submission_id


@pytest.mark.parametrize(
    ("age", "reason"),
    [(AGE, None), (AGE + timedelta(seconds=1), "expired"), (-timedelta(minutes=2), "invalid")],
)
def test_form_token_age_edges(age: timedelta, reason: str | None) -> None:
    token = SIGNER.form_token(LINK, now=NOW)
    if reason is None:
        SIGNER.check_form_token(token, LINK, now=NOW + age, max_age=AGE)
        return
    with pytest.raises(FormTokenError) as caught:
        SIGNER.check_form_token(token, LINK, now=NOW + age, max_age=AGE)
    assert caught.value.reason == reason


def test_form_token_for_another_link_is_invalid() -> None:
    other = verify(code_for("p-2"))
    token = SIGNER.form_token(other, now=NOW)
    with pytest.raises(FormTokenError) as caught:
        SIGNER.check_form_token(token, LINK, now=NOW, max_age=AGE)
    assert caught.value.reason == "invalid"


def test_form_token_from_another_secret_is_invalid() -> None:
    with pytest.raises(FormTokenError, match="MAC"):
        SIGNER.check_form_token(OTHER.form_token(LINK, now=NOW), LINK, now=NOW, max_age=AGE)


def test_form_token_is_not_a_link_mac() -> None:
    """Keys differ per purpose: a link code can never pass as a form token or the reverse."""
    with pytest.raises(FormTokenError):
        SIGNER.check_form_token(code_for(), LINK, now=NOW, max_age=AGE)
    with pytest.raises(LinkError):
        verify(SIGNER.form_token(LINK, now=NOW))


@pytest.mark.parametrize("token", [None, "", "x", "!!!!", "A" * 101, "A" * 50])
def test_form_token_garbage_is_invalid(token: str | None) -> None:
    with pytest.raises(FormTokenError) as caught:
        SIGNER.check_form_token(token, LINK, now=NOW, max_age=AGE)
    assert caught.value.reason == "invalid"


def test_form_token_any_flipped_bit_is_refused() -> None:
    token = SIGNER.form_token(LINK, now=NOW)
    raw = bytearray(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
    for index in range(len(raw)):
        tampered = bytearray(raw)
        tampered[index] ^= 0x01
        text = base64.urlsafe_b64encode(bytes(tampered)).decode().rstrip("=")
        with pytest.raises(FormTokenError):
            SIGNER.check_form_token(text, LINK, now=NOW, max_age=AGE)
