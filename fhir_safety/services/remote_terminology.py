"""Optional client for a remote FHIR terminology server (HAPI, Ontoserver, NHS England).

The shipped ValueSets in ``terminology/`` are the default and nothing in the
rules needs this client. It exists for what the shipped files cannot do: ask
whether a code the files do not know is in a national value set
(``ValueSet/$validate-code``) and expand SNOMED CT ECL against the server's
edition (``ValueSet/$expand?url=http://snomed.info/sct?fhir_vs=ecl/...``), e.g.
to check a code list before curating it into ``terminology/``.

Transport, status and size handling are ``FhirClient``'s, so failures arrive
as ``FhirUnavailableError`` (connection, timeout, 5xx) or ``FhirResponseError``
(not a usable FHIR answer). Answers are cached in memory for ``ttl_seconds``;
failures are not cached.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any
from urllib.parse import urlencode

import httpx

from fhir_safety.errors import (
    FhirError,
    FhirNotFoundError,
    FhirResponseError,
    FhirUnavailableError,
)
from fhir_safety.fhir.client import FhirClient
from fhir_safety.fhir.resources import Coding

__all__ = ["SNOMED_ECL_VS_PREFIX", "RemoteTerminology"]

SNOMED_ECL_VS_PREFIX = "http://snomed.info/sct?fhir_vs=ecl/"

_CacheKey = tuple[str, ...]


class RemoteTerminology:
    """``$validate-code`` and ECL ``$expand`` against one terminology server, with a TTL cache."""

    def __init__(
        self,
        base_url: str,
        http: httpx.AsyncClient,
        *,
        ttl_seconds: float = 3600.0,
        max_entries: int = 10_000,
        max_expansion: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._client = FhirClient(http, base_url)
        self._ttl = ttl_seconds
        self._max_entries = max_entries
        self._max_expansion = max_expansion
        self._clock = clock
        self._cache: dict[_CacheKey, tuple[float, Any]] = {}

    @property
    def base_url(self) -> str:
        return self._client.base_url

    async def validate_code(self, value_set_url: str, system: str, code: str) -> bool | None:
        """True/False from the server; None when it does not know the value set or code system."""
        key = ("validate-code", value_set_url, system, code)
        if (cached := self._cached(key)) is not None:
            return bool(cached[0])
        query = urlencode({"url": value_set_url, "system": system, "code": code})
        try:
            parameters = await self._client.get(f"ValueSet/$validate-code?{query}")
        except (FhirUnavailableError, FhirResponseError):
            raise
        except FhirError:
            return None  # 404 / other 4xx: the server cannot say, which is not "no"
        result = _validate_code_result(parameters)
        self._store(key, (result,))
        return result

    async def expand_ecl(self, ecl: str) -> list[Coding]:
        """Every concept the ECL expression selects, as Codings (SNOMED CT implicit value set)."""
        key = ("expand-ecl", ecl)
        if (cached := self._cached(key)) is not None:
            return list(cached)
        query = urlencode({"url": f"{SNOMED_ECL_VS_PREFIX}{ecl}", "count": self._max_expansion})
        try:
            value_set = await self._client.get(f"ValueSet/$expand?{query}")
        except FhirNotFoundError as exc:
            raise FhirResponseError(f"ECL expansion not supported: {exc.message}") from exc
        codings = _expansion_codings(value_set)
        self._store(key, tuple(codings))
        return codings

    def _cached(self, key: _CacheKey) -> tuple[Any, ...] | None:
        entry = self._cache.get(key)
        if entry is None:
            return None
        expires, value = entry
        if self._clock() >= expires:
            del self._cache[key]
            return None
        return tuple(value)

    def _store(self, key: _CacheKey, value: tuple[Any, ...]) -> None:
        if len(self._cache) >= self._max_entries:
            self._cache.pop(next(iter(self._cache)))  # oldest insertion first
        self._cache[key] = (self._clock() + self._ttl, value)


def _validate_code_result(parameters: dict[str, Any]) -> bool:
    if parameters.get("resourceType") != "Parameters":
        raise FhirResponseError(
            f"$validate-code returned {parameters.get('resourceType')!r}, not Parameters"
        )
    for parameter in parameters.get("parameter", []):
        if isinstance(parameter, dict) and parameter.get("name") == "result":
            value = parameter.get("valueBoolean")
            if isinstance(value, bool):
                return value
    raise FhirResponseError("$validate-code answer has no boolean 'result' parameter")


def _expansion_codings(value_set: dict[str, Any]) -> list[Coding]:
    if value_set.get("resourceType") != "ValueSet":
        raise FhirResponseError(f"$expand returned {value_set.get('resourceType')!r}, not ValueSet")
    expansion = value_set.get("expansion")
    if not isinstance(expansion, dict):
        raise FhirResponseError("$expand answer has no expansion")
    codings: list[Coding] = []
    _collect(expansion.get("contains", []), codings)
    return codings


def _collect(contains: Any, into: list[Coding]) -> None:
    """Flatten ``contains`` (it may nest) into Codings, skipping abstract grouping entries."""
    if not isinstance(contains, list):
        raise FhirResponseError("expansion.contains is not an array")
    for entry in contains:
        if not isinstance(entry, dict):
            raise FhirResponseError("expansion.contains entry is not an object")
        if entry.get("code") and not entry.get("abstract"):
            into.append(
                Coding(system=entry.get("system"), code=entry["code"], display=entry.get("display"))
            )
        if "contains" in entry:
            _collect(entry["contains"], into)
