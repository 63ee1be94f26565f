"""JwtVerifier and InMemoryReplayCache: every CDS Hooks 2.0 JWT check, accept and reject.

Keys are generated per module, JWKS are served by pytest-httpx (or a file), and
time comes from a fixed, hand-advanced clock, so every outcome is deterministic.
A rejection before the key lookup must not touch the network: pytest-httpx fails
the test at teardown on any request that no registered response expected.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm
from pytest_httpx import HTTPXMock, IteratorStream

from fhir_safety.config import TrustedIssuer
from fhir_safety.errors import AuthenticationError, ConfigurationError
from fhir_safety.services.auth import InMemoryReplayCache, JwtVerifier, VerifiedClient

ISS = "https://ehr.example.org"
JWKS_URL = "https://ehr.example.org/.well-known/jwks.json"
JKU_PREFIX = "https://keys.ehr.example.org/jwks/"
AUD = "https://cds.example.org/cds-services/news2"
START = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
NOW = int(START.timestamp())
EC_KID = "ec-1"
RSA_KID = "rsa-1"


class FakeClock:
    """A clock that only moves when the test says so."""

    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


# --- keys, JWKS and tokens -------------------------------------------------------------


@pytest.fixture(scope="module")
def ec_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP384R1())


@pytest.fixture(scope="module")
def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="module")
def jwks(ec_key: ec.EllipticCurvePrivateKey, rsa_key: rsa.RSAPrivateKey) -> dict[str, Any]:
    ec_jwk = ECAlgorithm.to_jwk(ec_key.public_key(), as_dict=True)
    rsa_jwk = RSAAlgorithm.to_jwk(rsa_key.public_key(), as_dict=True)
    ec_jwk.update(kid=EC_KID, alg="ES384", use="sig")
    rsa_jwk.update(kid=RSA_KID, alg="RS384", use="sig")
    return {"keys": [ec_jwk, rsa_jwk]}


def claims(**overrides: Any) -> dict[str, Any]:
    """A valid payload; pass ``name=None`` to drop a claim."""
    payload: dict[str, Any] = {
        "iss": ISS,
        "aud": AUD,
        "iat": NOW,
        "exp": NOW + 300,
        "jti": "jti-0001",
        "sub": "epic-client-1",
    }
    payload.update(overrides)
    return {name: value for name, value in payload.items() if value is not None}


def sign(
    key: Any, *, alg: str = "ES384", kid: str | None = EC_KID, **headers: Any
) -> Callable[[dict[str, Any]], str]:
    """A function payload -> compact JWT signed with ``key`` under these JOSE headers."""
    header = {"typ": "JWT", **headers}
    if kid is not None:
        header["kid"] = kid

    def encode(payload: dict[str, Any]) -> str:
        return jwt.encode(payload, key, algorithm=alg, headers=header)

    return encode


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def hand_made(header: dict[str, Any], payload: dict[str, Any], signature: bytes) -> str:
    """A compact JWS built without PyJWT, for tokens PyJWT refuses to make."""
    signing_input = f"{b64url(json.dumps(header).encode())}.{b64url(json.dumps(payload).encode())}"
    return f"{signing_input}.{b64url(signature)}"


def bearer(token: str) -> str:
    return f"Bearer {token}"


# --- verifier ---------------------------------------------------------------------------


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(START)


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=2.0) as client:
        yield client


@pytest.fixture
def make_verifier(clock: FakeClock, http: httpx.AsyncClient) -> Callable[..., JwtVerifier]:
    def make(*issuers: TrustedIssuer) -> JwtVerifier:
        return JwtVerifier(
            issuers or [TrustedIssuer(iss=ISS, jwks_url=JWKS_URL, jku_prefixes=[JKU_PREFIX])],
            http,
            InMemoryReplayCache(clock=clock),
            clock=clock,
            clock_skew_seconds=60,
            max_lifetime_seconds=3600,
            jwks_min_refresh_seconds=30.0,
        )

    return make


@pytest.fixture
def verifier(make_verifier: Callable[..., JwtVerifier]) -> JwtVerifier:
    return make_verifier()


@pytest.fixture
def serve_jwks(httpx_mock: HTTPXMock, jwks: dict[str, Any]) -> dict[str, Any]:
    httpx_mock.add_response(url=JWKS_URL, json=jwks, is_reusable=True)
    return jwks


async def rejected(verifier: JwtVerifier, header: str | None, audience: str = AUD) -> str:
    """Assert the verifier refuses, and that its log reason does not carry the token."""
    with pytest.raises(AuthenticationError) as caught:
        await verifier.verify(header, audience)
    reason = caught.value.message
    token = (header or "").removeprefix("Bearer ")
    assert len(token) < 20 or token not in reason
    return reason


# --- accepted tokens --------------------------------------------------------------------


@pytest.mark.usefixtures("serve_jwks")
async def test_verify_valid_es384_passes(
    verifier: JwtVerifier, ec_key: ec.EllipticCurvePrivateKey
) -> None:
    token = sign(ec_key)(claims(tenant="trust-a"))

    client = await verifier.verify(bearer(token), AUD)

    assert client == VerifiedClient(
        iss=ISS,
        sub="epic-client-1",
        tenant="trust-a",
        jti="jti-0001",
        expires_at=START + timedelta(seconds=300),
    )


@pytest.mark.usefixtures("serve_jwks")
async def test_verify_valid_rs384_passes(verifier: JwtVerifier, rsa_key: rsa.RSAPrivateKey) -> None:
    token = sign(rsa_key, alg="RS384", kid=RSA_KID)(claims())

    client = await verifier.verify(bearer(token), AUD)

    assert client.iss == ISS
    assert client.jti == "jti-0001"


@pytest.mark.usefixtures("serve_jwks")
async def test_verify_aud_list_containing_url_passes(
    verifier: JwtVerifier, ec_key: ec.EllipticCurvePrivateKey
) -> None:
    token = sign(ec_key)(claims(aud=["https://other.example.org/cds-services", AUD]))

    assert (await verifier.verify(bearer(token), AUD)).iss == ISS


@pytest.mark.usefixtures("serve_jwks")
async def test_verify_exp_passed_within_skew_passes(
    verifier: JwtVerifier, ec_key: ec.EllipticCurvePrivateKey
) -> None:
    token = sign(ec_key)(claims(iat=NOW - 300, exp=NOW - 30))

    client = await verifier.verify(bearer(token), AUD)

    assert client.expires_at == START - timedelta(seconds=30)


@pytest.mark.usefixtures("serve_jwks")
async def test_verify_no_typ_header_passes(
    verifier: JwtVerifier, ec_key: ec.EllipticCurvePrivateKey
) -> None:
    token = sign(ec_key, typ=None)(claims())  # PyJWT drops a falsy typ
    assert "typ" not in jwt.get_unverified_header(token)

    assert (await verifier.verify(bearer(token), AUD)).iss == ISS


@pytest.mark.usefixtures("serve_jwks")
async def test_verify_bearer_scheme_is_case_insensitive(
    verifier: JwtVerifier, ec_key: ec.EllipticCurvePrivateKey
) -> None:
    token = sign(ec_key)(claims())

    assert (await verifier.verify(f"bearer {token}", AUD)).iss == ISS


# --- Authorization header and JOSE header -----------------------------------------------


@pytest.mark.parametrize(
    "header",
    [
        None,
        "",
        "Basic dXNlcjpwYXNz",
        "Bearer",
        "Bearer a.b",
        "Bearer not a jwt",
        "Bearer !!!.???.***",
        "Bearer eyJub3QiOiJqc29uIn0.e30.c2ln",  # header decodes but has no alg
        "Bearer Zm9v.YmFy.YmF6",  # base64url of non-JSON
    ],
)
async def test_verify_missing_or_garbage_authorization_fails(
    verifier: JwtVerifier, header: str | None
) -> None:
    await rejected(verifier, header)


async def test_verify_alg_none_fails(verifier: JwtVerifier) -> None:
    token = hand_made({"alg": "none", "typ": "JWT", "kid": EC_KID}, claims(), b"")
    assert token.endswith(".")

    assert "alg" in await rejected(verifier, bearer(token))


async def test_verify_hs256_with_public_key_as_secret_fails(
    verifier: JwtVerifier, rsa_key: rsa.RSAPrivateKey
) -> None:
    # The classic confusion attack: HMAC keyed with the (public) PEM the server holds.
    secret = rsa_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    header = {"alg": "HS256", "typ": "JWT", "kid": RSA_KID}
    unsigned = hand_made(header, claims(), b"").rstrip(".")
    signature = hmac.new(secret, unsigned.encode(), hashlib.sha256).digest()

    assert "alg" in await rejected(verifier, bearer(f"{unsigned}.{b64url(signature)}"))


async def test_verify_rs256_fails(verifier: JwtVerifier, rsa_key: rsa.RSAPrivateKey) -> None:
    token = sign(rsa_key, alg="RS256", kid=RSA_KID)(claims())

    assert "alg" in await rejected(verifier, bearer(token))


async def test_verify_missing_kid_fails(
    verifier: JwtVerifier, ec_key: ec.EllipticCurvePrivateKey
) -> None:
    token = sign(ec_key, kid=None)(claims())

    assert "kid" in await rejected(verifier, bearer(token))


async def test_verify_typ_other_than_jwt_fails(
    verifier: JwtVerifier, ec_key: ec.EllipticCurvePrivateKey
) -> None:
    token = sign(ec_key, typ="at+jwt")(claims())

    assert "typ" in await rejected(verifier, bearer(token))


# --- claims (all refused before any key is fetched) -------------------------------------


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        pytest.param(claims(iss="https://evil.example.org"), "not trusted", id="unknown-iss"),
        pytest.param(claims(iss=None), "iss", id="missing-iss"),
        pytest.param(
            claims(aud="https://cds.example.org/cds-services/other"), "aud", id="wrong-aud"
        ),
        pytest.param(claims(aud=AUD + "/"), "aud", id="aud-not-exact"),
        pytest.param(claims(aud=["https://x.example.org"]), "aud", id="aud-list-without-url"),
        pytest.param(claims(aud=None), "aud", id="missing-aud"),
        pytest.param(claims(iat=NOW - 400, exp=NOW - 61), "expired", id="expired"),
        pytest.param(claims(exp=None), "exp", id="missing-exp"),
        pytest.param(claims(exp="soon"), "exp", id="exp-not-number"),
        pytest.param(claims(iat=NOW + 120, exp=NOW + 300), "future", id="iat-in-future"),
        pytest.param(claims(iat=None), "iat", id="missing-iat"),
        pytest.param(claims(iat=NOW - 10, exp=NOW + 3600), "lifetime", id="lifetime-over-max"),
        pytest.param(claims(iat=NOW + 30, exp=NOW + 20), "not after iat", id="exp-before-iat"),
        pytest.param(claims(nbf=NOW + 120), "nbf", id="nbf-in-future"),
        pytest.param(claims(jti=None), "jti", id="missing-jti"),
        pytest.param(claims(jti=""), "jti", id="empty-jti"),
    ],
)
async def test_verify_bad_claims_fail_without_fetching_keys(
    verifier: JwtVerifier,
    ec_key: ec.EllipticCurvePrivateKey,
    httpx_mock: HTTPXMock,
    payload: dict[str, Any],
    reason: str,
) -> None:
    token = sign(ec_key)(payload)

    assert reason in await rejected(verifier, bearer(token))
    assert httpx_mock.get_requests() == []


async def test_verify_wrong_audience_for_this_endpoint_fails(
    verifier: JwtVerifier, ec_key: ec.EllipticCurvePrivateKey
) -> None:
    # A token minted for the discovery endpoint must not open a service endpoint.
    token = sign(ec_key)(claims(aud="https://cds.example.org/cds-services"))

    assert "aud" in await rejected(verifier, bearer(token))


async def test_verify_tenant_not_allowed_fails(
    make_verifier: Callable[..., JwtVerifier], ec_key: ec.EllipticCurvePrivateKey
) -> None:
    verifier = make_verifier(TrustedIssuer(iss=ISS, jwks_url=JWKS_URL, tenants=["trust-a"]))

    assert "tenant" in await rejected(verifier, bearer(sign(ec_key)(claims(tenant="trust-b"))))
    assert "tenant" in await rejected(verifier, bearer(sign(ec_key)(claims())))


@pytest.mark.usefixtures("serve_jwks")
async def test_verify_tenant_allowed_passes(
    make_verifier: Callable[..., JwtVerifier], ec_key: ec.EllipticCurvePrivateKey
) -> None:
    verifier = make_verifier(TrustedIssuer(iss=ISS, jwks_url=JWKS_URL, tenants=["trust-a"]))

    client = await verifier.verify(bearer(sign(ec_key)(claims(tenant="trust-a"))), AUD)

    assert client.tenant == "trust-a"


# --- signature --------------------------------------------------------------------------


@pytest.mark.usefixtures("serve_jwks")
async def test_verify_signature_by_other_key_fails(verifier: JwtVerifier) -> None:
    stranger = ec.generate_private_key(ec.SECP384R1())
    token = sign(stranger)(claims())

    assert "signature" in await rejected(verifier, bearer(token))


@pytest.mark.usefixtures("serve_jwks")
async def test_verify_tampered_payload_fails(
    verifier: JwtVerifier, ec_key: ec.EllipticCurvePrivateKey
) -> None:
    header, _, signature = sign(ec_key)(claims()).split(".")
    payload = b64url(json.dumps(claims(sub="someone-else")).encode())

    assert "signature" in await rejected(verifier, bearer(f"{header}.{payload}.{signature}"))


async def test_verify_jwk_alg_mismatch_fails(
    verifier: JwtVerifier,
    ec_key: ec.EllipticCurvePrivateKey,
    httpx_mock: HTTPXMock,
    jwks: dict[str, Any],
) -> None:
    httpx_mock.add_response(url=JWKS_URL, json={"keys": [{**jwks["keys"][0], "alg": "ES256"}]})

    assert "alg" in await rejected(verifier, bearer(sign(ec_key)(claims())))


@pytest.mark.usefixtures("serve_jwks")
async def test_verify_rsa_kid_used_with_es384_fails(
    verifier: JwtVerifier,
    ec_key: ec.EllipticCurvePrivateKey,
) -> None:
    token = sign(ec_key, kid=RSA_KID)(claims())

    assert "does not fit" in await rejected(verifier, bearer(token))


async def test_verify_jwks_with_private_key_fails(
    verifier: JwtVerifier, ec_key: ec.EllipticCurvePrivateKey, httpx_mock: HTTPXMock
) -> None:
    private_jwk = ECAlgorithm.to_jwk(ec_key, as_dict=True)
    httpx_mock.add_response(url=JWKS_URL, json={"keys": [{**private_jwk, "kid": EC_KID}]})

    assert "private key" in await rejected(verifier, bearer(sign(ec_key)(claims())))


# --- replay -----------------------------------------------------------------------------


@pytest.mark.usefixtures("serve_jwks")
async def test_verify_replayed_jti_fails(
    verifier: JwtVerifier, ec_key: ec.EllipticCurvePrivateKey
) -> None:
    token = sign(ec_key)(claims())
    await verifier.verify(bearer(token), AUD)

    assert "replay" in await rejected(verifier, bearer(token))


@pytest.mark.usefixtures("serve_jwks")
async def test_verify_same_jti_from_other_issuer_passes(
    make_verifier: Callable[..., JwtVerifier], ec_key: ec.EllipticCurvePrivateKey
) -> None:
    other = "https://other-ehr.example.org"
    verifier = make_verifier(
        TrustedIssuer(iss=ISS, jwks_url=JWKS_URL), TrustedIssuer(iss=other, jwks_url=JWKS_URL)
    )

    await verifier.verify(bearer(sign(ec_key)(claims())), AUD)
    client = await verifier.verify(bearer(sign(ec_key)(claims(iss=other))), AUD)

    assert client.iss == other


async def test_replay_cache_remembers_until_expiry_then_purges(clock: FakeClock) -> None:
    cache = InMemoryReplayCache(clock=clock)
    expires = START + timedelta(seconds=10)

    assert await cache.check_and_remember(ISS, "a", expires) is True
    assert await cache.check_and_remember(ISS, "a", expires) is False
    assert await cache.check_and_remember(ISS, "b", START + timedelta(seconds=100)) is True
    clock.advance(10)

    assert await cache.check_and_remember(ISS, "c", START + timedelta(seconds=100)) is True
    assert len(cache) == 2  # "a" is gone, "b" and "c" are live
    assert await cache.check_and_remember(ISS, "a", START + timedelta(seconds=100)) is True


async def test_replay_cache_full_of_live_entries_refuses(clock: FakeClock) -> None:
    cache = InMemoryReplayCache(clock=clock, max_entries=2)
    later = START + timedelta(seconds=60)
    await cache.check_and_remember(ISS, "a", later)
    await cache.check_and_remember(ISS, "b", START + timedelta(seconds=5))

    with pytest.raises(AuthenticationError, match="full"):
        await cache.check_and_remember(ISS, "c", later)
    clock.advance(5)  # "b" expires, which makes room

    assert await cache.check_and_remember(ISS, "c", later) is True
    assert await cache.check_and_remember(ISS, "a", later) is False


@pytest.mark.usefixtures("serve_jwks")
async def test_verify_replay_kept_through_skew_after_exp(
    verifier: JwtVerifier, ec_key: ec.EllipticCurvePrivateKey, clock: FakeClock
) -> None:
    token = sign(ec_key)(claims(exp=NOW + 10))
    await verifier.verify(bearer(token), AUD)
    clock.advance(40)  # past exp, still inside the 60 s skew: the token would pass but for jti

    assert "replay" in await rejected(verifier, bearer(token))


# --- key sources: kid refresh and rate limit --------------------------------------------


@pytest.mark.usefixtures("serve_jwks")
async def test_verify_unknown_kid_refetches_once_then_rate_limits(
    verifier: JwtVerifier,
    ec_key: ec.EllipticCurvePrivateKey,
    httpx_mock: HTTPXMock,
    clock: FakeClock,
) -> None:
    await verifier.verify(bearer(sign(ec_key)(claims(jti="warm"))), AUD)
    assert len(httpx_mock.get_requests()) == 1
    clock.advance(31)

    reason = await rejected(verifier, bearer(sign(ec_key, kid="rotated-1")(claims(jti="x1"))))
    assert "not in JWKS" in reason
    assert len(httpx_mock.get_requests()) == 2  # the one refetch

    reason = await rejected(verifier, bearer(sign(ec_key, kid="rotated-2")(claims(jti="x2"))))
    assert "rate-limited" in reason
    assert len(httpx_mock.get_requests()) == 2  # inside the window: no refetch


@pytest.mark.usefixtures("serve_jwks")
async def test_verify_unknown_kid_on_cold_cache_fetches_once(
    verifier: JwtVerifier,
    ec_key: ec.EllipticCurvePrivateKey,
    httpx_mock: HTTPXMock,
) -> None:
    assert "not in JWKS" in await rejected(verifier, bearer(sign(ec_key, kid="nope")(claims())))
    assert len(httpx_mock.get_requests()) == 1  # the first load counts as the refresh


async def test_verify_rotated_key_found_after_refresh(
    verifier: JwtVerifier,
    ec_key: ec.EllipticCurvePrivateKey,
    jwks: dict[str, Any],
    httpx_mock: HTTPXMock,
    clock: FakeClock,
) -> None:
    new_key = ec.generate_private_key(ec.SECP384R1())
    new_jwk = {**ECAlgorithm.to_jwk(new_key.public_key(), as_dict=True), "kid": "ec-2"}
    httpx_mock.add_response(url=JWKS_URL, json=jwks)
    httpx_mock.add_response(url=JWKS_URL, json={"keys": [*jwks["keys"], new_jwk]})
    await verifier.verify(bearer(sign(ec_key)(claims(jti="old"))), AUD)
    clock.advance(30)

    client = await verifier.verify(bearer(sign(new_key, kid="ec-2")(claims(jti="new"))), AUD)

    assert client.jti == "new"


# --- key sources: jku -------------------------------------------------------------------


@pytest.mark.parametrize(
    "jku",
    [
        "https://attacker.example.net/jwks.json",
        "https://keys.ehr.example.org/other/jwks.json",  # right host, outside the prefix path
        "https://keys.ehr.example.org/jwks",  # the prefix without its final slash
        "https://keys.ehr.example.org/jwks/../evil.json",
        "https://keys.ehr.example.org/jwks/%2e%2e/evil.json",
        "https://keys.ehr.example.org/jwks/x.json#frag",
        "http://keys.ehr.example.org/jwks/x.json",
        "file:///etc/passwd",
    ],
)
async def test_verify_jku_not_allow_listed_fails_without_fetching(
    verifier: JwtVerifier, ec_key: ec.EllipticCurvePrivateKey, httpx_mock: HTTPXMock, jku: str
) -> None:
    token = sign(ec_key, jku=jku)(claims())

    assert "jku" in await rejected(verifier, bearer(token))
    assert httpx_mock.get_requests() == []


@pytest.mark.parametrize(
    "jku",
    [
        "https://ehr.example.org.evil.net/jwks.json",
        "https://ehr.example.org@evil.net/jwks.json",
        "https://ehr.example.org:8443/jwks.json",
    ],
)
async def test_verify_jku_prefix_without_slash_matches_only_at_boundary(
    make_verifier: Callable[..., JwtVerifier],
    ec_key: ec.EllipticCurvePrivateKey,
    httpx_mock: HTTPXMock,
    jku: str,
) -> None:
    verifier = make_verifier(TrustedIssuer(iss=ISS, jku_prefixes=["https://ehr.example.org"]))

    assert "jku" in await rejected(verifier, bearer(sign(ec_key, jku=jku)(claims())))
    assert httpx_mock.get_requests() == []


async def test_verify_jku_allow_listed_passes(
    make_verifier: Callable[..., JwtVerifier],
    ec_key: ec.EllipticCurvePrivateKey,
    jwks: dict[str, Any],
    httpx_mock: HTTPXMock,
) -> None:
    jku = JKU_PREFIX + "2025-03.json"
    httpx_mock.add_response(url=jku, json=jwks)
    verifier = make_verifier(TrustedIssuer(iss=ISS, jku_prefixes=[JKU_PREFIX]))

    client = await verifier.verify(bearer(sign(ec_key, jku=jku)(claims())), AUD)

    assert client.iss == ISS
    assert [str(request.url) for request in httpx_mock.get_requests()] == [jku]


async def test_verify_jku_only_issuer_without_jku_fails(
    make_verifier: Callable[..., JwtVerifier], ec_key: ec.EllipticCurvePrivateKey
) -> None:
    verifier = make_verifier(TrustedIssuer(iss=ISS, jku_prefixes=[JKU_PREFIX]))

    assert "jku" in await rejected(verifier, bearer(sign(ec_key)(claims())))


# --- key sources: failures of the JWKS URL ----------------------------------------------


@pytest.mark.parametrize(
    ("respond", "reason"),
    [
        pytest.param(lambda m: m.add_response(url=JWKS_URL, status_code=500), "HTTP 500", id="500"),
        pytest.param(
            lambda m: m.add_exception(httpx.ReadTimeout("slow"), url=JWKS_URL),
            "ReadTimeout",
            id="timeout",
        ),
        pytest.param(
            lambda m: m.add_exception(httpx.ConnectError("refused"), url=JWKS_URL),
            "ConnectError",
            id="refused",
        ),
        pytest.param(
            lambda m: m.add_response(url=JWKS_URL, html="<html><body>Login</body></html>"),
            "not JSON",
            id="html",
        ),
        pytest.param(
            lambda m: m.add_response(url=JWKS_URL, content=b'{"keys": [', status_code=200),
            "not JSON",
            id="invalid-json",
        ),
        pytest.param(lambda m: m.add_response(url=JWKS_URL, json=[1, 2]), "'keys'", id="not-jwks"),
        pytest.param(
            lambda m: m.add_response(url=JWKS_URL, content=b" " * 1_000_001),
            "over 1000000 bytes",
            id="oversize",
        ),
        pytest.param(
            lambda m: m.add_response(
                url=JWKS_URL, stream=IteratorStream([b" " * 600_000, b" " * 600_000])
            ),
            "over 1000000 bytes",
            id="oversize-no-content-length",
        ),
        pytest.param(
            lambda m: m.add_response(
                url=JWKS_URL, status_code=302, headers={"Location": "https://evil.example.net/"}
            ),
            "HTTP 302",
            id="redirect-not-followed",
        ),
    ],
)
async def test_verify_jwks_url_failure_is_authentication_error(
    verifier: JwtVerifier,
    ec_key: ec.EllipticCurvePrivateKey,
    httpx_mock: HTTPXMock,
    respond: Callable[[HTTPXMock], None],
    reason: str,
) -> None:
    respond(httpx_mock)

    message = await rejected(verifier, bearer(sign(ec_key)(claims())))

    assert "JWKS" in message
    assert reason in message


async def test_verify_jwks_failure_is_rate_limited_then_recovers(
    verifier: JwtVerifier,
    ec_key: ec.EllipticCurvePrivateKey,
    jwks: dict[str, Any],
    httpx_mock: HTTPXMock,
    clock: FakeClock,
) -> None:
    httpx_mock.add_response(url=JWKS_URL, status_code=503)
    httpx_mock.add_response(url=JWKS_URL, json=jwks)
    await rejected(verifier, bearer(sign(ec_key)(claims(jti="1"))))

    assert "rate-limited" in await rejected(verifier, bearer(sign(ec_key)(claims(jti="2"))))
    assert len(httpx_mock.get_requests()) == 1
    clock.advance(30)

    assert (await verifier.verify(bearer(sign(ec_key)(claims(jti="3"))), AUD)).jti == "3"


# --- key sources: file ------------------------------------------------------------------


async def test_verify_jwks_file_source_works(
    make_verifier: Callable[..., JwtVerifier],
    ec_key: ec.EllipticCurvePrivateKey,
    rsa_key: rsa.RSAPrivateKey,
    jwks: dict[str, Any],
    tmp_path: Path,
) -> None:
    jwks_file = tmp_path / "ehr-jwks.json"
    jwks_file.write_text(json.dumps(jwks), encoding="utf-8")
    verifier = make_verifier(TrustedIssuer(iss=ISS, jwks_file=jwks_file))

    await verifier.verify(bearer(sign(ec_key)(claims(jti="1"))), AUD)
    jwks_file.unlink()  # read once, then served from the cache
    client = await verifier.verify(bearer(sign(rsa_key, alg="RS384", kid=RSA_KID)(claims())), AUD)

    assert client.iss == ISS


async def test_verify_missing_jwks_file_fails(
    make_verifier: Callable[..., JwtVerifier], ec_key: ec.EllipticCurvePrivateKey, tmp_path: Path
) -> None:
    verifier = make_verifier(TrustedIssuer(iss=ISS, jwks_file=tmp_path / "absent.json"))

    assert "unreadable" in await rejected(verifier, bearer(sign(ec_key)(claims())))


# --- configuration ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "issuers",
    [
        [TrustedIssuer(iss=ISS)],
        [TrustedIssuer(iss=ISS, jwks_url=JWKS_URL, jwks_file=Path("k.json"))],
        [TrustedIssuer(iss=ISS, jwks_url=JWKS_URL), TrustedIssuer(iss=ISS, jwks_url=JWKS_URL)],
    ],
)
async def test_verifier_unusable_issuer_configuration_raises(
    issuers: list[TrustedIssuer], http: httpx.AsyncClient, clock: FakeClock
) -> None:
    with pytest.raises(ConfigurationError):
        JwtVerifier(issuers, http, InMemoryReplayCache(clock=clock), clock=clock)


async def test_verify_naive_clock_is_configuration_error(
    http: httpx.AsyncClient, ec_key: ec.EllipticCurvePrivateKey, clock: FakeClock
) -> None:
    verifier = JwtVerifier(
        [TrustedIssuer(iss=ISS, jwks_url=JWKS_URL)],
        http,
        InMemoryReplayCache(clock=clock),
        clock=lambda: START.replace(tzinfo=None),
    )

    with pytest.raises(ConfigurationError):
        await verifier.verify(bearer(sign(ec_key)(claims())), AUD)
