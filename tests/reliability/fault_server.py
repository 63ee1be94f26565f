"""A loopback HTTP server that misbehaves on demand, for fault injection over real sockets.

The first path segment names the fault, the rest is what a FHIR server or a JWKS host
would serve: ``/<fault>/fhir/Patient/p1``, ``/<fault>/fhir/Encounter?patient=p1``,
``/<fault>/jwks.json``. Faults (``FAULTS``):

- ``ok``: a well-behaved answer (a bare resource for a read, an empty searchset Bundle
  for a search, the JWKS given at construction);
- ``timeout``: accept the connection, read the request, never answer;
- ``stall``: wait 10 s, then answer well (longer than any deadline of the service);
- ``drip``: send the head, then the body one byte every 0.5 s (no single read times out);
- ``500`` / ``404``: that status with an OperationOutcome;
- ``invalid-json``: 200, ``application/fhir+json``, a truncated JSON body;
- ``html``: 200 with an HTML error page (as captive portals and some proxies send);
- ``next-link``: a search Bundle whose ``next`` link points at ``decoy_url`` (another
  host); for a JWKS, a 302 redirect there;
- ``oversize``: 200, chunked with no Content-Length, more than ``oversize_bytes``.

Each request is recorded (fault, target, headers). Written with asyncio streams and run
in its own thread; ``close`` ends every connection it still holds.
"""

from __future__ import annotations

import asyncio
import json
import threading
from contextlib import suppress
from dataclasses import dataclass, field
from typing import Any

__all__ = ["FAULTS", "FaultServer", "Recorded"]

FAULTS = (
    "timeout",
    "stall",
    "drip",
    "500",
    "404",
    "invalid-json",
    "html",
    "next-link",
    "oversize",
)
STALL_SECONDS = 10.0
DRIP_INTERVAL = 0.5
_HTML = (
    b"<!DOCTYPE html><html><head><title>502 Bad Gateway</title></head><body>"
    b"<h1>Bad Gateway</h1><p>The upstream server is not responding.</p>"
    b"<hr><address>nginx</address></body></html>"
)


@dataclass(frozen=True)
class Recorded:
    fault: str
    method: str
    target: str
    headers: dict[str, str]


@dataclass
class FaultServer:
    """Serve faults on ``host``:<free port>; ``url`` is its base."""

    jwks: dict[str, Any] = field(default_factory=lambda: {"keys": []})
    decoy_url: str = "http://127.0.0.2:9/fhir"
    oversize_bytes: int = 21_000_000
    host: str = "127.0.0.1"
    requests: list[Recorded] = field(default_factory=list)
    connections: int = 0

    def __post_init__(self) -> None:
        self._loop = asyncio.new_event_loop()
        self._started = threading.Event()
        self._closing: asyncio.Event | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        if not self._started.wait(10):
            raise RuntimeError("fault server did not start")

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def fhir_base(self, fault: str) -> str:
        return f"{self.url}/{fault}/fhir"

    def jwks_url(self, fault: str) -> str:
        return f"{self.url}/{fault}/jwks.json"

    def close(self) -> None:
        def stop() -> None:
            assert self._closing is not None
            self._closing.set()
            for writer in list(self._writers):
                writer.close()
            self._server.close()

        self._loop.call_soon_threadsafe(stop)
        self._thread.join(timeout=10)

    # -- the loop -----------------------------------------------------------------------

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._loop.run_until_complete(self._serve())

    async def _serve(self) -> None:
        self._closing = asyncio.Event()
        self._server = await asyncio.start_server(self._handle, self.host, 0)
        self.port: int = self._server.sockets[0].getsockname()[1]
        self._started.set()
        await self._closing.wait()
        await asyncio.sleep(0.1)  # let the handlers see their closed writers

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self._writers.add(writer)
        try:
            while True:  # keep-alive: one request after another on this connection
                head = await reader.readuntil(b"\r\n\r\n")
                method, target, headers = _parse_head(head)
                length = int(headers.get("content-length", "0") or 0)
                if length:
                    await reader.readexactly(length)
                fault, _, rest = target.lstrip("/").partition("/")
                self.requests.append(Recorded(fault, method, target, headers))
                await self._answer(fault, rest, writer)
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.LimitOverrunError):
            pass
        finally:
            self._writers.discard(writer)
            with suppress(Exception):
                writer.close()

    async def _answer(self, fault: str, rest: str, writer: asyncio.StreamWriter) -> None:
        jwks = rest.endswith("jwks.json")
        ok = self._ok_body(rest)
        assert self._closing is not None
        if fault == "ok":
            await _send(writer, 200, ok, "application/json" if jwks else "application/fhir+json")
        elif fault == "timeout":
            await self._closing.wait()
            raise ConnectionError("closing")
        elif fault == "stall":
            with suppress(TimeoutError):
                await asyncio.wait_for(self._closing.wait(), STALL_SECONDS)
            await _send(writer, 200, ok, "application/fhir+json")
        elif fault == "drip":
            await _send_head(writer, 200, "application/fhir+json", len(ok))
            for byte in ok:
                writer.write(bytes([byte]))
                await writer.drain()
                await asyncio.sleep(DRIP_INTERVAL)
        elif fault in {"500", "404"}:
            outcome = {
                "resourceType": "OperationOutcome",
                "issue": [{"severity": "error", "code": "exception", "diagnostics": fault}],
            }
            await _send(writer, int(fault), json.dumps(outcome).encode(), "application/fhir+json")
        elif fault == "invalid-json":
            await _send(writer, 200, ok[: max(1, len(ok) // 2)], "application/fhir+json")
        elif fault == "html":
            await _send(writer, 200, _HTML, "text/html; charset=utf-8")
        elif fault == "next-link":
            await self._next_link(rest, writer, jwks, ok)
        elif fault == "oversize":
            await self._oversize(writer, 1_100_000 if jwks else self.oversize_bytes)
        else:
            await _send(writer, 400, b"unknown fault", "text/plain")

    def _ok_body(self, rest: str) -> bytes:
        if rest.endswith("jwks.json"):
            return json.dumps(self.jwks).encode()
        path = rest.removeprefix("fhir/")
        if "?" not in path and path.count("/") == 1:  # a read: Type/id
            kind, _, ident = path.partition("/")
            return json.dumps({"resourceType": kind, "id": ident}).encode()
        return json.dumps({"resourceType": "Bundle", "type": "searchset", "total": 0}).encode()

    async def _next_link(
        self, rest: str, writer: asyncio.StreamWriter, jwks: bool, ok: bytes
    ) -> None:
        if jwks:
            await _send(writer, 302, b"", "text/plain", {"Location": f"{self.decoy_url}/jwks"})
            return
        path = rest.removeprefix("fhir/")
        if "?" not in path:
            await _send(writer, 200, ok, "application/fhir+json")
            return
        kind = path.split("?", 1)[0]
        bundle = {
            "resourceType": "Bundle",
            "type": "searchset",
            "link": [{"relation": "next", "url": f"{self.decoy_url}/{path}&page=2"}],
            "entry": [{"resource": {"resourceType": kind, "id": "page-1"}}],
        }
        await _send(writer, 200, json.dumps(bundle).encode(), "application/fhir+json")

    async def _oversize(self, writer: asyncio.StreamWriter, total: int) -> None:
        writer.write(
            b"HTTP/1.1 200 OK\r\nContent-Type: application/fhir+json\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n"
        )
        chunk = b'{"resourceType": "Bundle", "type": "searchset", "entry": [' + b" " * 65_000
        sent = 0
        while sent <= total:
            writer.write(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
            await writer.drain()
            sent += len(chunk)
            chunk = b" " * 65_536
        writer.write(b"5\r\n]}   \r\n0\r\n\r\n")
        await writer.drain()


def _parse_head(head: bytes) -> tuple[str, str, dict[str, str]]:
    lines = head.decode("latin-1").split("\r\n")
    method, target, _ = lines[0].split(" ", 2)
    headers = {}
    for line in lines[1:]:
        if ":" in line:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
    return method, target, headers


async def _send_head(
    writer: asyncio.StreamWriter,
    status: int,
    content_type: str,
    length: int,
    extra: dict[str, str] | None = None,
) -> None:
    reason = {200: "OK", 302: "Found", 400: "Bad Request", 404: "Not Found"}.get(status, "Error")
    lines = [f"HTTP/1.1 {status} {reason}", f"Content-Type: {content_type}"]
    lines += [f"Content-Length: {length}", *(f"{k}: {v}" for k, v in (extra or {}).items())]
    writer.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
    await writer.drain()


async def _send(
    writer: asyncio.StreamWriter,
    status: int,
    body: bytes,
    content_type: str,
    extra: dict[str, str] | None = None,
) -> None:
    await _send_head(writer, status, content_type, len(body), extra)
    writer.write(body)
    await writer.drain()
