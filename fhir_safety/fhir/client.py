"""A small async FHIR R4 client over an injected ``httpx.AsyncClient``.

It reads and searches, follows ``next`` links only within the server's base
URL (a link elsewhere could leak the bearer token), caps the response size and
the number of pages, and turns every failure into a ``FhirError`` subclass so
callers never see a raw transport exception.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import anyio
import httpx

from fhir_safety.errors import (
    FhirError,
    FhirNotFoundError,
    FhirResponseError,
    FhirUnavailableError,
)

__all__ = ["FhirClient", "raise_for_status"]

_ACCEPT = "application/fhir+json, application/json;q=0.9"


class FhirClient:
    """One FHIR server, as seen with one access token."""

    def __init__(
        self,
        http: httpx.AsyncClient,
        base_url: str,
        *,
        access_token: str | None = None,
        max_response_bytes: int = 20_000_000,
        max_pages: int = 20,
    ) -> None:
        self._http = http
        self.base_url = base_url.rstrip("/")
        self._headers = {"Accept": _ACCEPT}
        if access_token:
            self._headers["Authorization"] = f"Bearer {access_token}"
        self._max_bytes = max_response_bytes
        self._max_pages = max_pages

    async def read(self, resource_type: str, resource_id: str) -> dict[str, Any]:
        resource = await self.get(f"{resource_type}/{resource_id}")
        if resource.get("resourceType") != resource_type:
            raise FhirResponseError(
                f"read {resource_type}/{resource_id} returned {resource.get('resourceType')!r}"
            )
        return resource

    async def search_all(self, query: str) -> list[dict[str, Any]]:
        """Every resource a search returns, across pages (``search`` mode only)."""
        bundle = await self.get(query)
        resources = _searchset_resources(bundle, query)
        for _ in range(self._max_pages - 1):
            next_url = _next_link(bundle)
            if next_url is None:
                return resources
            bundle = await self.get(self.within_base(next_url))
            resources.extend(_searchset_resources(bundle, query))
        if _next_link(bundle) is not None:
            raise FhirResponseError(f"{query}: more than {self._max_pages} pages")
        return resources

    async def follow_pages(self, bundle: dict[str, Any], query: str) -> list[dict[str, Any]]:
        """Resources from the pages after ``bundle`` (a prefetched first page)."""
        resources: list[dict[str, Any]] = []
        for _ in range(self._max_pages):
            next_url = _next_link(bundle)
            if next_url is None:
                return resources
            bundle = await self.get(self.within_base(next_url))
            resources.extend(_searchset_resources(bundle, query))
        raise FhirResponseError(f"{query}: more than {self._max_pages} pages")

    async def get(self, path_or_url: str) -> dict[str, Any]:
        absolute = path_or_url.startswith(("http://", "https://"))
        url = path_or_url if absolute else f"{self.base_url}/{path_or_url}"
        body = await self._fetch(url)
        return _decode(body, url)

    async def exchange(
        self, method: str, url: str, headers: Mapping[str, str] | None = None
    ) -> tuple[int, httpx.Headers, bytes]:
        """One request within the base URL: status, headers and the (capped) body, any status.

        For protocols that speak in status codes and headers (Bulk Data kick-off and polling).
        """
        url = self.within_base(url)
        with _transport_errors(method, url):
            async with self._http.stream(
                method, url, headers={**self._headers, **(headers or {})}
            ) as response:
                body = await self._read_capped(response, url)
                return response.status_code, response.headers, body

    async def download(
        self,
        url: str,
        destination: Path,
        *,
        max_bytes: int,
        with_token: bool,
        accept: str = "application/fhir+ndjson",
    ) -> int:
        """Stream ``url`` into ``destination``; the number of bytes written.

        ``with_token``: send the bearer token, which only a URL inside the base URL may see.
        """
        if with_token:
            url = self.within_base(url)
            headers = {**self._headers, "Accept": accept}
        else:
            headers = {"Accept": accept}
        written = 0
        with _transport_errors("GET", url):
            async with self._http.stream("GET", url, headers=headers) as response:
                raise_for_status(response.status_code, url)
                async with await anyio.open_file(destination, "wb") as out:
                    async for chunk in response.aiter_bytes():
                        written += len(chunk)
                        if written > max_bytes:
                            raise FhirResponseError(f"GET {url}: download over {max_bytes} bytes")
                        await out.write(chunk)
        return written

    async def post(self, path: str, resource: dict[str, Any]) -> dict[str, Any]:
        """POST a resource (``path`` "" posts to the base: a transaction or batch)."""
        return await self._send("POST", f"{self.base_url}/{path}".rstrip("/"), resource)

    async def put(self, resource: dict[str, Any]) -> dict[str, Any]:
        """Create or update a resource at its own id (idempotent)."""
        url = f"{self.base_url}/{resource['resourceType']}/{resource['id']}"
        return await self._send("PUT", url, resource)

    async def _send(self, method: str, url: str, resource: dict[str, Any]) -> dict[str, Any]:
        headers = {**self._headers, "Content-Type": "application/fhir+json"}
        with _transport_errors(method, url):
            response = await self._http.request(method, url, json=resource, headers=headers)
        raise_for_status(response.status_code, url, _diagnostics(response.content))
        return _decode(response.content, url)

    def within_base(self, url: str) -> str:
        """``url`` itself, or FhirResponseError when it leaves the server's base URL.

        Only such URLs may see the bearer token: a server-supplied link elsewhere could leak it.
        """
        if not url.startswith(f"{self.base_url}/") and not url.startswith(f"{self.base_url}?"):
            raise FhirResponseError(f"link leaves the FHIR server's base URL: {url}")
        return url

    async def _fetch(self, url: str) -> bytes:
        with _transport_errors("GET", url):
            async with self._http.stream("GET", url, headers=self._headers) as response:
                raise_for_status(response.status_code, url)
                return await self._read_capped(response, url)

    async def _read_capped(self, response: httpx.Response, url: str) -> bytes:
        declared = response.headers.get("content-length")
        if declared and declared.isdigit() and int(declared) > self._max_bytes:
            raise FhirResponseError(f"GET {url}: response over {self._max_bytes} bytes")
        chunks: list[bytes] = []
        size = 0
        async for chunk in response.aiter_bytes():
            size += len(chunk)
            if size > self._max_bytes:
                raise FhirResponseError(f"GET {url}: response over {self._max_bytes} bytes")
            chunks.append(chunk)
        return b"".join(chunks)


@contextmanager
def _transport_errors(method: str, url: str) -> Iterator[None]:
    """A transport failure (refused, reset, timed out) as FhirUnavailableError."""
    try:
        yield
    except httpx.TimeoutException as exc:
        raise FhirUnavailableError(f"{method} {url}: timed out") from exc
    except httpx.HTTPError as exc:
        raise FhirUnavailableError(f"{method} {url}: {type(exc).__name__}") from exc


def raise_for_status(status: int, url: str, diagnostics: str = "") -> None:
    """An error status as the FhirError subclass that says what callers can do about it."""
    detail = f": {diagnostics}" if diagnostics else ""
    if status == 404:
        raise FhirNotFoundError(f"{url}: 404 not found{detail}")
    if status >= 500 or status == 429:
        raise FhirUnavailableError(f"{url}: server answered {status}{detail}")
    if status >= 400:
        raise FhirError(f"{url}: server answered {status}{detail}")


def _diagnostics(body: bytes) -> str:
    """The error text of an OperationOutcome body, if that is what the server sent."""
    try:
        data = json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError):
        return ""
    if not isinstance(data, dict) or data.get("resourceType") != "OperationOutcome":
        return ""
    issues = [i for i in data.get("issue") or [] if isinstance(i, dict)]
    return "; ".join(str(i.get("diagnostics") or i.get("code")) for i in issues)[:2000]


def _decode(body: bytes, url: str) -> dict[str, Any]:
    try:
        data = json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise FhirResponseError(f"{url}: response is not JSON") from exc
    if not isinstance(data, dict) or not isinstance(data.get("resourceType"), str):
        raise FhirResponseError(f"{url}: response is not a FHIR resource")
    return data


def _searchset_resources(bundle: dict[str, Any], query: str) -> list[dict[str, Any]]:
    if bundle.get("resourceType") != "Bundle":
        raise FhirResponseError(f"{query}: search returned {bundle.get('resourceType')!r}")
    entries = bundle.get("entry") or []
    if not isinstance(entries, list):
        raise FhirResponseError(f"{query}: Bundle.entry is not an array")
    resources = []
    for entry in entries:
        if not isinstance(entry, dict) or not isinstance(entry.get("resource"), dict):
            raise FhirResponseError(f"{query}: Bundle entry without a resource")
        # Included resources and OperationOutcome warnings are not search matches.
        if (entry.get("search") or {}).get("mode", "match") == "match":
            resources.append(entry["resource"])
    return resources


def _next_link(bundle: dict[str, Any]) -> str | None:
    for link in bundle.get("link") or []:
        if isinstance(link, dict) and link.get("relation") == "next":
            url = link.get("url")
            return url if isinstance(url, str) and url else None
    return None
