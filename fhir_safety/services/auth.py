"""Verification of the CDS client's (the EHR's) JWT, as CDS Hooks 2.0 asks.

CDS Hooks 2.0 §Trusting CDS Clients: the client sends ``Authorization: Bearer
<JWT>`` on every call; the service SHOULD allow-list ``iss`` and ``jku``, and must
check ``aud`` (the exact endpoint URL), ``exp``, ``iat``, ``jti`` and the signature
(``none`` and HMAC are forbidden; ES384 and RS384 are the recommended algorithms).

The checks run in the order the CDS Hooks best-practice notes give: the cheap,
key-free checks on the unverified token first (so that a token from a stranger
never makes us fetch anything), then the key and the signature, and the replay
cache last (so that only tokens with a good signature take a place in it).

Every failure raises ``AuthenticationError(reason)``. The reason is for the log
only (the HTTP answer is a bare 401) and never contains the token: values taken
from the token are shortened with ``_show`` so that a hostile claim cannot flood
or forge log lines.
"""

from __future__ import annotations

import asyncio
import heapq
import json
import logging
import math
import re
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import unquote, urlsplit

import httpx
import jwt

from fhir_safety.config import TrustedIssuer
from fhir_safety.errors import AuthenticationError, ConfigurationError, StoreError

__all__ = [
    "ALLOWED_ALGORITHMS",
    "InMemoryReplayCache",
    "JwtVerifier",
    "ReplayCache",
    "StoreReplayCache",
    "TokenStore",
    "VerifiedClient",
]

# CDS Hooks 2.0 recommends exactly these; `none`, HMAC and everything else is refused.
ALLOWED_ALGORITHMS = frozenset({"ES384", "RS384"})
# JWK key type (and curve) each algorithm needs, so a key cannot be used with a foreign algorithm.
_KEY_TYPES: dict[str, tuple[str, str | None]] = {"ES384": ("EC", "P-384"), "RS384": ("RSA", None)}
_REQUIRED_CLAIMS = ["exp", "iat", "jti", "iss", "aud"]
# A real CDS client JWT is well under 2 KB; anything this big is not worth parsing.
_MAX_TOKEN_CHARS = 16_384
_TOKEN_SHAPE = re.compile(r"[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*")
_MAX_JWKS_BYTES = 1_000_000
# Whole-fetch deadline: httpx timeouts are per read, so a slow drip could outlast them.
_JWKS_FETCH_TIMEOUT_SECONDS = 5.0
# jku URLs come from tokens; bound how many we keep so a stream of new URLs cannot grow memory.
_MAX_JKU_SOURCES = 64

_log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class VerifiedClient:
    """Who called us, once the JWT has passed every check."""

    iss: str
    sub: str | None
    tenant: str | None
    jti: str
    expires_at: datetime


class ReplayCache(Protocol):
    """Remembers each (iss, jti) until ``expires_at`` so that a token is accepted once.

    Implementations may raise ``AuthenticationError`` to refuse a token they cannot
    remember (a full cache, an unreachable store): failing closed is the point.
    """

    async def check_and_remember(self, iss: str, jti: str, expires_at: datetime) -> bool:
        """True if (iss, jti) is new (and is now remembered); False if it is a replay."""


class InMemoryReplayCache:
    """A per-process replay cache: a dict plus a min-heap of expiries for cheap purging.

    When the cache is full of live entries it refuses new tokens (raises
    ``AuthenticationError``) instead of forgetting live ones. Forgetting would
    silently reopen the replay window for exactly the tokens an attacker most wants
    to replay, and only a trusted issuer can mint signed tokens fast enough to fill
    the cache, so a flood is a misbehaving EHR and should fail loudly. Entries live
    at most the longest token life plus the clock skew, so ``max_entries`` is
    "requests per token lifetime" (100 000 is about 28 requests/s with 1 h tokens).
    """

    def __init__(
        self, *, clock: Callable[[], datetime] | None = None, max_entries: int = 100_000
    ) -> None:
        # Pass the verifier's clock: purging on another clock than the one that accepted
        # the token could drop a jti while its token is still acceptable.
        if max_entries < 1:
            raise ConfigurationError("replay cache max_entries must be at least 1")
        self._clock = clock or _utc_now
        self._max_entries = max_entries
        self._expiry: dict[tuple[str, str], datetime] = {}
        self._heap: list[tuple[datetime, str, str]] = []
        self._lock = asyncio.Lock()

    def __len__(self) -> int:
        return len(self._expiry)

    async def check_and_remember(self, iss: str, jti: str, expires_at: datetime) -> bool:
        """True the first time (iss, jti) is seen while live; False for a replay."""
        async with self._lock:
            self._purge(self._clock())
            key = (iss, jti)
            if key in self._expiry:
                return False
            if len(self._expiry) >= self._max_entries:
                _log.warning("JWT replay cache full (%d live entries): refusing", self._max_entries)
                raise AuthenticationError(f"replay cache full ({self._max_entries} live entries)")
            self._expiry[key] = expires_at
            heapq.heappush(self._heap, (expires_at, iss, jti))
            return True

    def _purge(self, now: datetime) -> None:
        """Drop every entry whose expiry has passed (a key is only added while absent)."""
        while self._heap and self._heap[0][0] <= now:
            _, iss, jti = heapq.heappop(self._heap)
            self._expiry.pop((iss, jti), None)


class StoreReplayCache:
    """A replay cache in the service database, shared by every worker and host using it.

    A token accepted by one worker is then refused by all the others (CDS Hooks 2.0
    "Trusting CDS Clients": reject a reused ``jti``). A database failure refuses the
    token (fail closed) rather than letting a possible replay through.
    """

    def __init__(self, store: TokenStore, *, clock: Callable[[], datetime] | None = None) -> None:
        self._store = store
        self._clock = clock or _utc_now

    async def check_and_remember(self, iss: str, jti: str, expires_at: datetime) -> bool:
        try:
            return await asyncio.to_thread(
                self._store.remember_token, iss, jti, expires_at, self._clock()
            )
        except StoreError as exc:
            raise AuthenticationError(f"replay cache unavailable: {exc.message}") from exc


class TokenStore(Protocol):
    def remember_token(self, iss: str, jti: str, expires_at: datetime, now: datetime) -> bool: ...


@dataclass(frozen=True, slots=True)
class _JwksSource:
    """Where a JWKS comes from: a configured file, a configured URL, or a token's jku."""

    url: str | None = None
    path: Path | None = None

    def __str__(self) -> str:
        return f"file {self.path}" if self.path is not None else f"URL {_show(self.url)}"


@dataclass(slots=True)
class _JwksEntry:
    """A cached JWKS (kid -> JWK) and when we last tried to load it (for the rate limit)."""

    keys: dict[str, dict[str, Any]] | None = None
    last_attempt: datetime | None = None
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)


class JwtVerifier:
    """Checks the EHR's bearer JWT against the trusted issuers (see the module docstring)."""

    def __init__(
        self,
        issuers: Sequence[TrustedIssuer],
        http: httpx.AsyncClient,
        replay_cache: ReplayCache,
        *,
        clock: Callable[[], datetime],
        clock_skew_seconds: int = 60,
        max_lifetime_seconds: int = 3600,
        jwks_min_refresh_seconds: float = 30.0,
    ) -> None:
        if clock_skew_seconds < 0 or max_lifetime_seconds <= 0 or jwks_min_refresh_seconds < 0:
            raise ConfigurationError("JWT skew and JWKS refresh must be >= 0, lifetime > 0")
        self._issuers = _index_issuers(issuers)
        self._http = http
        self._replay_cache = replay_cache
        self._clock = clock
        self._skew = clock_skew_seconds
        self._max_lifetime = max_lifetime_seconds
        self._min_refresh = jwks_min_refresh_seconds
        self._static_jwks: dict[_JwksSource, _JwksEntry] = {}
        self._jku_jwks: OrderedDict[_JwksSource, _JwksEntry] = OrderedDict()

    async def verify(self, authorization_header: str | None, audience: str) -> VerifiedClient:
        """Accept the caller or raise ``AuthenticationError``; ``audience`` is this endpoint's URL."""
        token = _bearer_token(authorization_header)
        alg, kid, jku = _check_header(_unverified_header(token))
        claims = _unverified_claims(token)
        issuer = self._issuer_for(claims)
        _check_audience(claims, audience)
        exp = _check_times(claims, self._now(), self._skew, self._max_lifetime)
        jti = _check_jti(claims)
        tenant = _check_tenant(claims, issuer)
        jwk = await self._find_jwk(self._key_source(issuer, jku), kid)
        verified = _verify_signature(
            token, _public_key(jwk, alg), alg, audience, issuer.iss, self._skew
        )
        expires_at = datetime.fromtimestamp(exp, tz=UTC)
        # Keep the jti for the skew too: a token stays acceptable that long after exp.
        keep_until = expires_at + timedelta(seconds=self._skew)
        if not await self._replay_cache.check_and_remember(issuer.iss, jti, keep_until):
            raise AuthenticationError(f"jti {_show(jti)} already used (replay)")
        sub = verified.get("sub")
        return VerifiedClient(
            iss=issuer.iss,
            sub=sub if isinstance(sub, str) else None,
            tenant=tenant,
            jti=jti,
            expires_at=expires_at,
        )

    def _now(self) -> datetime:
        """The injected clock's time; naive times would make every comparison wrong."""
        now = self._clock()
        if now.utcoffset() is None:
            raise ConfigurationError("JwtVerifier clock must return an aware datetime")
        return now

    def _issuer_for(self, claims: Mapping[str, Any]) -> TrustedIssuer:
        iss = claims.get("iss")
        if not isinstance(iss, str):
            raise AuthenticationError("claim iss missing or not a string")
        issuer = self._issuers.get(iss)
        if issuer is None:
            raise AuthenticationError(f"issuer {_show(iss)} is not trusted")
        return issuer

    def _key_source(self, issuer: TrustedIssuer, jku: str | None) -> _JwksSource:
        """jku only when allow-listed for this issuer; otherwise the configured JWKS."""
        if jku is not None:
            if not _jku_allowed(jku, issuer.jku_prefixes):
                raise AuthenticationError(f"jku {_show(jku)} is not allow-listed for {issuer.iss}")
            return _JwksSource(url=jku)
        if issuer.jwks_file is not None:
            return _JwksSource(path=issuer.jwks_file)
        if issuer.jwks_url is not None:
            return _JwksSource(url=issuer.jwks_url)
        raise AuthenticationError(f"issuer {issuer.iss} publishes keys only by jku; token has none")

    async def _find_jwk(self, source: _JwksSource, kid: str) -> dict[str, Any]:
        """The JWK for ``kid``, loading or refreshing the JWKS within the rate limit."""
        entry = self._entry_for(source)
        async with entry.lock:  # one load per source at a time; waiters then see its result
            refreshed = False
            if kid not in (entry.keys or {}) and self._may_load(entry, source):
                await self._load(entry, source)
                refreshed = True
            jwk = (entry.keys or {}).get(kid)
        if jwk is not None:
            return jwk
        if entry.keys is None:
            raise AuthenticationError(
                f"no JWKS from {source}: last load failed, retry rate-limited"
            )
        detail = "" if refreshed else " (refresh rate-limited)"
        raise AuthenticationError(f"kid {_show(kid)} not in JWKS from {source}{detail}")

    def _entry_for(self, source: _JwksSource) -> _JwksEntry:
        """The cache entry for a source; jku entries are bounded, oldest dropped first."""
        if source.path is not None or self._is_configured_url(source):
            return self._static_jwks.setdefault(source, _JwksEntry())
        entry = self._jku_jwks.get(source)
        if entry is None:
            entry = self._jku_jwks[source] = _JwksEntry()
            while len(self._jku_jwks) > _MAX_JKU_SOURCES:
                self._jku_jwks.popitem(last=False)
        return entry

    def _is_configured_url(self, source: _JwksSource) -> bool:
        return any(issuer.jwks_url == source.url for issuer in self._issuers.values())

    def _may_load(self, entry: _JwksEntry, source: _JwksSource) -> bool:
        """A file is read once; any source is (re)loaded at most once per refresh interval."""
        if source.path is not None and entry.keys is not None:
            return False
        if entry.last_attempt is None:
            return True
        elapsed = (self._now() - entry.last_attempt).total_seconds()
        return not 0 <= elapsed < self._min_refresh  # a clock that went back allows a retry

    async def _load(self, entry: _JwksEntry, source: _JwksSource) -> None:
        """Load the JWKS; on failure keep the keys we had, and raise."""
        entry.last_attempt = self._now()
        if source.path is not None:
            body = await _read_jwks_file(source.path)
        else:
            assert source.url is not None
            body = await self._fetch_jwks(source.url)
        entry.keys = _parse_jwks(body, source)

    async def _fetch_jwks(self, url: str) -> bytes:
        """GET the JWKS: 200 only, no redirects (they could leave the jku allow-list), 1 MB cap."""
        headers = {"Accept": "application/json", "Accept-Encoding": "identity"}
        try:
            async with asyncio.timeout(_JWKS_FETCH_TIMEOUT_SECONDS):
                async with self._http.stream(
                    "GET", url, headers=headers, follow_redirects=False
                ) as response:
                    if response.status_code != httpx.codes.OK:
                        raise AuthenticationError(
                            f"JWKS fetch from {_show(url)} failed: HTTP {response.status_code}"
                        )
                    return await _read_capped(response, url)
        except (httpx.HTTPError, httpx.InvalidURL, TimeoutError) as exc:
            raise AuthenticationError(
                f"JWKS fetch from {_show(url)} failed: {type(exc).__name__}"
            ) from exc


def _utc_now() -> datetime:
    return datetime.now(UTC)


def _index_issuers(issuers: Sequence[TrustedIssuer]) -> dict[str, TrustedIssuer]:
    """iss -> issuer, refusing configurations that cannot work or are ambiguous."""
    index: dict[str, TrustedIssuer] = {}
    for issuer in issuers:
        if issuer.iss in index:
            raise ConfigurationError(f"issuer {issuer.iss} is configured twice")
        if issuer.jwks_url is not None and issuer.jwks_file is not None:
            raise ConfigurationError(f"issuer {issuer.iss}: set jwks_url or jwks_file, not both")
        if issuer.jwks_url is None and issuer.jwks_file is None and not issuer.jku_prefixes:
            raise ConfigurationError(f"issuer {issuer.iss}: no jwks_url, jwks_file or jku_prefixes")
        index[issuer.iss] = issuer
    return index


def _show(value: object) -> str:
    """repr of an untrusted value, cut short: it goes into a log line."""
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _bearer_token(authorization_header: str | None) -> str:
    """The JWT from ``Bearer <jwt>`` (scheme case-insensitive, RFC 7235)."""
    if not authorization_header:
        raise AuthenticationError("no Authorization header")
    parts = authorization_header.split()
    if len(parts) != 2 or parts[0].lower() != "bearer":
        raise AuthenticationError("Authorization header is not 'Bearer <token>'")
    token = parts[1]
    if len(token) > _MAX_TOKEN_CHARS or not _TOKEN_SHAPE.fullmatch(token):
        raise AuthenticationError("bearer token is not a compact JWS")
    return token


def _unverified_header(token: str) -> dict[str, Any]:
    try:
        return jwt.get_unverified_header(token)
    except jwt.PyJWTError as exc:
        raise AuthenticationError(f"JWT header unreadable: {type(exc).__name__}") from exc


def _check_header(header: Mapping[str, Any]) -> tuple[str, str, str | None]:
    """alg (ES384/RS384 only), kid (required), typ (JWT if present), jku (a string if present)."""
    alg = header.get("alg")
    if alg not in ALLOWED_ALGORITHMS:
        raise AuthenticationError(f"JWT alg {_show(alg)} not allowed")
    kid = header.get("kid")
    if not isinstance(kid, str) or not kid:
        raise AuthenticationError("JWT header has no kid")
    if "typ" in header and header["typ"] != "JWT":
        raise AuthenticationError(f"JWT typ {_show(header['typ'])} is not 'JWT'")
    if "crit" in header:
        raise AuthenticationError("JWT header has crit extensions, which we do not support")
    jku = header.get("jku")
    if jku is not None and not isinstance(jku, str):
        raise AuthenticationError("JWT jku is not a string")
    return str(alg), kid, jku


def _unverified_claims(token: str) -> dict[str, Any]:
    """The payload, unverified: only to decide whether the token is worth a key lookup."""
    try:
        return jwt.decode(token, options={"verify_signature": False})
    except jwt.PyJWTError as exc:
        raise AuthenticationError(f"JWT payload unreadable: {type(exc).__name__}") from exc


def _check_audience(claims: Mapping[str, Any], audience: str) -> None:
    """aud (string or list of strings) must contain this endpoint's exact URL."""
    aud = claims.get("aud")
    if isinstance(aud, str):
        aud = [aud]
    if not isinstance(aud, list) or not aud or not all(isinstance(a, str) for a in aud):
        raise AuthenticationError("claim aud missing or not a string or list of strings")
    if audience not in aud:
        raise AuthenticationError(f"aud {_show(aud)} does not include {audience}")


def _numeric_date(claims: Mapping[str, Any], name: str) -> float:
    """A required NumericDate claim as a finite float (JSON allows NaN and huge ints)."""
    value = claims.get(name)
    if value is None:
        raise AuthenticationError(f"claim {name} missing")
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise AuthenticationError(f"claim {name} is not a number")
    try:
        number = float(value)
    except OverflowError:
        number = math.inf
    if not math.isfinite(number):
        raise AuthenticationError(f"claim {name} is not a finite number")
    return number


def _check_times(claims: Mapping[str, Any], now: datetime, skew: int, max_lifetime: int) -> float:
    """exp not passed, iat not ahead, lifetime bounded (which bounds the replay cache); exp."""
    now_ts = now.timestamp()
    exp = _numeric_date(claims, "exp")
    if now_ts >= exp + skew:
        raise AuthenticationError(f"token expired {now_ts - exp:.0f} s ago")
    iat = _numeric_date(claims, "iat")
    if iat > now_ts + skew:
        raise AuthenticationError(f"iat {iat - now_ts:.0f} s in the future")
    if exp <= iat:
        raise AuthenticationError("exp is not after iat")
    if exp - iat > max_lifetime:
        raise AuthenticationError(f"token lifetime {exp - iat:.0f} s is over {max_lifetime} s")
    if "nbf" in claims and _numeric_date(claims, "nbf") > now_ts + skew:
        raise AuthenticationError("token not valid yet (nbf)")
    return exp


def _check_jti(claims: Mapping[str, Any]) -> str:
    jti = claims.get("jti")
    if not isinstance(jti, str) or not jti:
        raise AuthenticationError("claim jti missing or not a string")
    return jti


def _check_tenant(claims: Mapping[str, Any], issuer: TrustedIssuer) -> str | None:
    """tenant is optional, but must be allow-listed when the issuer lists tenants."""
    tenant = claims.get("tenant")
    if tenant is not None and not isinstance(tenant, str):
        raise AuthenticationError("claim tenant is not a string")
    if issuer.tenants and tenant not in issuer.tenants:
        raise AuthenticationError(f"tenant {_show(tenant)} not allowed for {issuer.iss}")
    return tenant


def _jku_allowed(jku: str, prefixes: Sequence[str]) -> bool:
    """True if jku is a plain http(s) URL under one of the prefixes.

    A bare ``startswith`` is not enough: ``https://ehr.example`` would admit
    ``https://ehr.example.evil.net/`` and ``https://ehr.example@evil.net/``, and
    ``/keys/../`` would climb out of the allowed path once normalised.
    """
    if any(ch <= " " or ch == "\\" for ch in jku):
        return False
    try:
        parts = urlsplit(jku)
    except ValueError:
        return False
    if parts.scheme not in {"https", "http"} or "@" in parts.netloc or parts.fragment:
        return False
    if {".", ".."} & set(unquote(parts.path).split("/")):
        return False
    return any(_under_prefix(jku, prefix) for prefix in prefixes)


def _under_prefix(url: str, prefix: str) -> bool:
    """startswith, but only at a URL boundary unless the prefix itself ends with '/'."""
    if not prefix or not url.startswith(prefix):
        return False
    return prefix.endswith("/") or len(url) == len(prefix) or url[len(prefix)] in "/?"


async def _read_jwks_file(path: Path) -> bytes:
    """Read a configured JWKS file off the event loop."""

    def read() -> bytes:
        if path.stat().st_size > _MAX_JWKS_BYTES:
            raise AuthenticationError(f"JWKS file {path} is over {_MAX_JWKS_BYTES} bytes")
        return path.read_bytes()

    try:
        return await asyncio.to_thread(read)
    except OSError as exc:
        raise AuthenticationError(f"JWKS file {path} unreadable: {type(exc).__name__}") from exc


async def _read_capped(response: httpx.Response, url: str) -> bytes:
    """The body, refusing more than _MAX_JWKS_BYTES whatever Content-Length claims."""
    declared = response.headers.get("Content-Length", "")
    if declared.isdigit() and int(declared) > _MAX_JWKS_BYTES:
        raise AuthenticationError(f"JWKS from {_show(url)} is over {_MAX_JWKS_BYTES} bytes")
    body = bytearray()
    async for chunk in response.aiter_bytes():
        body += chunk
        if len(body) > _MAX_JWKS_BYTES:
            raise AuthenticationError(f"JWKS from {_show(url)} is over {_MAX_JWKS_BYTES} bytes")
    return bytes(body)


def _parse_jwks(body: bytes, source: _JwksSource) -> dict[str, dict[str, Any]]:
    """kid -> JWK. Keys without a kid are skipped; a kid used twice makes the set unusable."""
    try:
        document = json.loads(body)
    except (ValueError, RecursionError) as exc:
        raise AuthenticationError(f"JWKS from {source} is not JSON") from exc
    keys = document.get("keys") if isinstance(document, dict) else None
    if not isinstance(keys, list):
        raise AuthenticationError(f"JWKS from {source} has no 'keys' array")
    by_kid: dict[str, dict[str, Any]] = {}
    for jwk in keys:
        kid = jwk.get("kid") if isinstance(jwk, dict) else None
        if not isinstance(kid, str):
            continue
        if kid in by_kid:
            raise AuthenticationError(f"JWKS from {source} has kid {_show(kid)} twice")
        by_kid[kid] = jwk
    return by_kid


def _public_key(jwk: Mapping[str, Any], alg: str) -> jwt.PyJWK:
    """The JWK as a verification key for ``alg``; its kty, crv, alg and use must agree."""
    kty, crv = _KEY_TYPES[alg]
    if jwk.get("kty") != kty or (crv is not None and jwk.get("crv") != crv):
        raise AuthenticationError(f"JWK kty/crv {_show(jwk.get('kty'))} does not fit {alg}")
    if "alg" in jwk and jwk["alg"] != alg:
        raise AuthenticationError(f"JWK alg {_show(jwk['alg'])} does not match token alg {alg}")
    if jwk.get("use", "sig") != "sig":
        raise AuthenticationError("JWK use is not 'sig'")
    if "d" in jwk:  # a published private key: the EHR's key is compromised
        raise AuthenticationError("JWKS publishes a private key; refusing it")
    try:
        return jwt.PyJWK(dict(jwk), algorithm=alg)
    except (jwt.PyJWTError, ValueError, TypeError, KeyError, AttributeError) as exc:
        raise AuthenticationError(f"JWK unusable: {type(exc).__name__}") from exc


def _verify_signature(
    token: str, key: jwt.PyJWK, alg: str, audience: str, iss: str, skew: int
) -> dict[str, Any]:
    """Signature (and, again, aud/iss/required claims) with PyJWT.

    PyJWT's own time checks are off: they read the system clock, and ours come from
    the injected clock and were done above on the same bytes.
    """
    try:
        return jwt.decode(
            token,
            key=key,
            algorithms=[alg],
            audience=audience,
            issuer=iss,
            leeway=skew,
            options={
                "require": _REQUIRED_CLAIMS,
                "verify_exp": False,
                "verify_iat": False,
                "verify_nbf": False,
                "enforce_minimum_key_length": True,
            },
        )
    except (jwt.PyJWTError, ValueError, TypeError) as exc:
        raise AuthenticationError(
            f"JWT signature or claims rejected: {type(exc).__name__}"
        ) from exc
