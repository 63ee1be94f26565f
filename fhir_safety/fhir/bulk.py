"""FHIR Bulk Data Access (v2) ``$export``, client side: kick-off, status polling, download.

https://hl7.org/fhir/uv/bulkdata/export.html. The flow:

1. kick-off ``GET [base]/$export`` (or ``[base]/Patient/$export``) with
   ``Prefer: respond-async``: the server answers 202 and a ``Content-Location`` status URL;
2. poll the status URL: 202 while it works (``Retry-After``, ``X-Progress``), 429 when polled
   too often, 200 with the manifest (``output`` files per type, ``error`` files of
   OperationOutcomes) when done, 4xx/5xx with an OperationOutcome when the export failed;
3. download every output file as NDJSON, then ``DELETE`` the status URL so the server can
   remove the files (best effort: some servers answer 404 once a job is complete).

Safety: the status URL must lie inside the base URL (it is polled with the bearer token); an
output file is fetched with the token only inside the base URL, and from elsewhere only when
the manifest says no token is needed (``requiresAccessToken: false``, e.g. a pre-signed URL)
and over https. Files in the manifest's ``error`` list fail the export: a registry built from
part of the data would look complete. A job that outlives ``max_wait_seconds`` is cancelled.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal
from urllib.parse import quote

from fhir_safety.config import BulkExportSettings
from fhir_safety.errors import FhirError, FhirResponseError, FhirUnavailableError
from fhir_safety.fhir.client import FhirClient, raise_for_status

__all__ = [
    "BULK_DATA_CAPABILITY",
    "ExportLevel",
    "ExportManifest",
    "export_level",
    "run_export",
]

BULK_DATA_CAPABILITY = "http://hl7.org/fhir/uv/bulkdata/CapabilityStatement/bulk-data"
ExportLevel = Literal["system", "patient"]
_KICK_OFF_PATHS: dict[ExportLevel, str] = {"system": "$export", "patient": "Patient/$export"}
_NDJSON = "application/fhir+ndjson"

Sleep = Callable[[float], Awaitable[None]]
Clock = Callable[[], float]
Status = Callable[[str], None]


@dataclass(frozen=True, slots=True)
class ExportManifest:
    transaction_time: str
    files: tuple[Path, ...]  # downloaded NDJSON, in manifest order
    bytes_downloaded: int


async def export_level(client: FhirClient) -> ExportLevel | None:
    """The broadest ``$export`` the server's CapabilityStatement offers, or None.

    System level needs a server-wide ``export`` operation; patient level an ``export``
    operation on Patient. A server that cannot say (metadata unreadable) offers nothing.
    """
    try:
        statement = await client.get("metadata")
    except FhirError:
        return None
    rests = [r for r in statement.get("rest") or [] if isinstance(r, dict)]
    if any(_names_export(rest.get("operation")) for rest in rests):
        return "system"
    for rest in rests:
        for resource in rest.get("resource") or []:
            if (
                isinstance(resource, dict)
                and resource.get("type") == "Patient"
                and _names_export(resource.get("operation"))
            ):
                return "patient"
    return None


def _names_export(operations: Any) -> bool:
    return isinstance(operations, list) and any(
        isinstance(op, dict) and op.get("name") == "export" for op in operations
    )


async def run_export(
    client: FhirClient,
    directory: Path,
    *,
    level: ExportLevel,
    types: Sequence[str],
    type_filters: Sequence[str] = (),
    policy: BulkExportSettings | None = None,
    sleep: Sleep = asyncio.sleep,
    clock: Clock = time.monotonic,
    on_status: Status | None = None,
) -> ExportManifest:
    """Run one export into ``directory`` (created if needed); the manifest of what was written.

    ``type_filters`` are FHIR search queries (``Observation?code=...``) sent as ``_typeFilter``
    with ``handling=lenient``: a server that cannot apply them may export more, never less,
    so the caller still filters what it reads.
    """
    policy = policy or BulkExportSettings()
    status_url = await _kick_off(client, level, types, type_filters)
    try:
        manifest = await _wait_for_manifest(client, status_url, policy, sleep, clock, on_status)
        await _fail_on_errors(client, manifest)
        return await _download_outputs(client, manifest, directory, policy, on_status)
    finally:
        await _delete_quietly(client, status_url)


async def _kick_off(
    client: FhirClient, level: ExportLevel, types: Sequence[str], type_filters: Sequence[str]
) -> str:
    query = f"_type={','.join(types)}"
    if type_filters:
        # Each query is encoded whole, so its own commas cannot split the parameter's list.
        query += "&_typeFilter=" + ",".join(quote(f, safe="") for f in type_filters)
    url = f"{client.base_url}/{_KICK_OFF_PATHS[level]}?{query}"
    status, headers, body = await client.exchange(
        "GET",
        url,
        {"Accept": "application/fhir+json", "Prefer": "respond-async, handling=lenient"},
    )
    if status != 202:
        raise_for_status(status, f"$export kick-off ({url})", _outcome_text(body))
        raise FhirResponseError(f"$export kick-off answered {status}, not 202 Accepted")
    location = headers.get("content-location")
    if not location:
        raise FhirResponseError("$export kick-off answered 202 without a Content-Location")
    return client.within_base(location)


async def _wait_for_manifest(
    client: FhirClient,
    status_url: str,
    policy: BulkExportSettings,
    sleep: Sleep,
    clock: Clock,
    on_status: Status | None,
) -> dict[str, Any]:
    deadline = clock() + policy.max_wait_seconds
    backoff = policy.first_poll_seconds
    while True:
        status, headers, body = await client.exchange(
            "GET", status_url, {"Accept": "application/json"}
        )
        if status == 200:
            return _manifest(body)
        if status not in (202, 429):
            raise_for_status(status, "$export", _outcome_text(body))
            raise FhirResponseError(f"$export status answered {status}")
        if on_status is not None:
            on_status(headers.get("x-progress") or "export in progress")
        # Exponential backoff as the spec advises. A 202's Retry-After is only a hint (HAPI says
        # 120 s for every job, even one done in 3 s); a 429 means "slower", so it is obeyed.
        asked = _retry_after(headers.get("retry-after")) if status == 429 else 0.0
        wait = min(max(backoff, asked), policy.max_poll_seconds)
        if clock() + wait > deadline:
            raise FhirUnavailableError(
                f"$export did not finish within {policy.max_wait_seconds:g} s (cancelled)"
            )
        await sleep(wait)
        backoff = min(backoff * 2, policy.max_poll_seconds)


def _retry_after(value: str | None) -> float:
    """Retry-After in seconds (its HTTP-date form is not used by Bulk Data servers we know)."""
    if value and value.strip().isdigit():
        return float(value.strip())
    return 0.0


def _manifest(body: bytes) -> dict[str, Any]:
    try:
        manifest = json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise FhirResponseError("$export manifest is not JSON") from exc
    if not isinstance(manifest, dict) or not isinstance(manifest.get("output"), list):
        raise FhirResponseError("$export manifest has no output list")
    return manifest


def _entries(manifest: Mapping[str, Any], key: str) -> list[tuple[str, str]]:
    found = []
    for entry in manifest.get(key) or []:
        if not isinstance(entry, dict) or not isinstance(entry.get("url"), str):
            raise FhirResponseError(f"$export manifest {key} entry without a url")
        found.append((str(entry.get("type") or "?"), entry["url"]))
    return found


async def _fail_on_errors(client: FhirClient, manifest: Mapping[str, Any]) -> None:
    errors = _entries(manifest, "error")
    if not errors:
        return
    messages: list[str] = []
    for _, url in errors[:5]:
        try:
            status, _, body = await client.exchange("GET", url, {"Accept": _NDJSON})
        except FhirError as exc:
            messages.append(exc.message)
            continue
        found = _outcome_text(body) or "no OperationOutcome diagnostics"
        messages.append(found if status == 200 else f"{url}: {status}")
    raise FhirResponseError(
        f"$export reported {len(errors)} error file(s): " + "; ".join(messages)[:2000]
    )


def _outcome_text(body: bytes) -> str:
    """The diagnostics of the OperationOutcome(s) in ``body`` (one JSON resource or NDJSON)."""
    text = body.decode("utf-8", "replace")
    try:
        outcomes = [json.loads(text)]
    except json.JSONDecodeError:
        outcomes = [_json_or_none(line) for line in text.splitlines()]
    return "; ".join(
        str(issue.get("diagnostics") or issue.get("code"))
        for outcome in outcomes
        if isinstance(outcome, dict) and isinstance(outcome.get("issue"), list)
        for issue in outcome["issue"]
        if isinstance(issue, dict)
    )


def _json_or_none(line: str) -> Any:
    try:
        return json.loads(line)
    except json.JSONDecodeError:
        return None


async def _download_outputs(
    client: FhirClient,
    manifest: Mapping[str, Any],
    directory: Path,
    policy: BulkExportSettings,
    on_status: Status | None,
) -> ExportManifest:
    outputs = _entries(manifest, "output")
    with_token = manifest.get("requiresAccessToken") is not False
    await asyncio.to_thread(directory.mkdir, parents=True, exist_ok=True)
    files: list[Path] = []
    total = 0
    for index, (resource_type, url) in enumerate(outputs, start=1):
        inside = url.startswith(f"{client.base_url}/")
        if not inside and (with_token or not url.startswith("https://")):
            # The token must not leave the server; a token-free file must come over https.
            raise FhirResponseError(f"$export output outside the FHIR server's base URL: {url}")
        if on_status is not None:
            on_status(f"downloading {resource_type} ({index} of {len(outputs)})")
        target = directory / f"{index:04d}-{_safe_name(resource_type)}.ndjson"
        total += await client.download(
            url, target, max_bytes=policy.max_bytes - total, with_token=inside
        )
        files.append(target)
    return ExportManifest(str(manifest.get("transactionTime") or ""), tuple(files), total)


def _safe_name(resource_type: str) -> str:
    return "".join(c for c in resource_type if c.isalnum()) or "Resource"


async def _delete_quietly(client: FhirClient, status_url: str) -> None:
    """Tell the server it may delete the job's files; a refusal changes nothing for us."""
    with contextlib.suppress(FhirError):
        await client.exchange("DELETE", status_url)
