"""Helpers for running fhir-safety against the real HAPI server in integration tests.

- ``serve_in_thread``: the real app under uvicorn on a free port (HAPI must reach it for
  Subscription notifications).
- ``scenario_from_example``: turn an example hook request with prefetch into FHIR data for the
  server, with every id prefixed so scenarios sharing a patient id do not collide.
- ``TcpProxy``: a loopback proxy in front of HAPI that a test can cut or stall, to make the
  server "stop" mid-test without stopping the shared HAPI process.
"""

from __future__ import annotations

import copy
import re
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from typing import Any

import uvicorn
from fastapi import FastAPI

__all__ = ["TcpProxy", "scenario_from_example", "serve_in_thread"]

_REFERENCE = re.compile(r"^(?P<type>[A-Z][A-Za-z]+)/(?P<id>[A-Za-z0-9\-.]+)$")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextmanager
def serve_in_thread(app: FastAPI) -> Iterator[str]:
    """Run ``app`` with uvicorn on a free loopback port; yields its base URL."""
    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("fhir-safety did not start under uvicorn")
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def _resources_of(prefetch: dict[str, Any]) -> list[dict[str, Any]]:
    resources = []
    for value in prefetch.values():
        if not isinstance(value, dict):
            continue
        if value.get("resourceType") == "Bundle":
            resources += [e["resource"] for e in value.get("entry", []) if "resource" in e]
        elif value.get("resourceType") != "OperationOutcome":
            resources.append(value)
    return resources


def _rename(value: Any, ids: dict[str, str]) -> Any:
    if isinstance(value, dict):
        renamed = {k: _rename(v, ids) for k, v in value.items()}
        if "resourceType" in renamed and renamed.get("id") in ids:
            renamed["id"] = ids[renamed["id"]]
        return renamed
    if isinstance(value, list):
        return [_rename(v, ids) for v in value]
    if isinstance(value, str):
        match = _REFERENCE.match(value)
        if match and match["id"] in ids:
            return f"{match['type']}/{ids[match['id']]}"
    return value


def scenario_from_example(
    request: dict[str, Any], prefix: str
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """(the request without prefetch, the resources to load), ids prefixed with ``prefix``."""
    resources = _resources_of(request.get("prefetch") or {})
    context = request["context"]
    ids = {r["id"]: f"{prefix}-{r['id']}" for r in resources if r.get("id")}
    for key in ("patientId", "encounterId"):
        if isinstance(context.get(key), str):
            ids.setdefault(context[key], f"{prefix}-{context[key]}")
    bare = copy.deepcopy(request)
    bare.pop("prefetch", None)
    renamed_context = _rename(bare["context"], ids)
    for key in ("patientId", "encounterId"):
        if isinstance(context.get(key), str):
            renamed_context[key] = ids[context[key]]
    bare["context"] = renamed_context
    # One resource may answer several prefetch keys (e.g. an ACVPU Observation is both a
    # vital sign and an ACVPU reading): load each once.
    unique = {(r["resourceType"], r.get("id")): r for r in resources}
    loaded = [_rename(r, ids) for r in unique.values()]
    if not any(r["resourceType"] == "Patient" for r in loaded):
        loaded.append({"resourceType": "Patient", "id": renamed_context["patientId"]})
    return bare, loaded


class TcpProxy:
    """Forwards 127.0.0.1:<port> to a target; ``mode`` "forward", "refuse" or "stall"."""

    def __init__(self, target_host: str, target_port: int) -> None:
        self._target = (target_host, target_port)
        self.mode = "forward"
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._listener.getsockname()[1]
        self._closed = False
        self._held: list[socket.socket] = []
        self._live: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            if self.mode == "refuse":
                client.close()
            elif self.mode == "stall":
                self._held.append(client)  # accept, then never answer
            else:
                threading.Thread(target=self._pipe_pair, args=(client,), daemon=True).start()

    def _pipe_pair(self, client: socket.socket) -> None:
        try:
            upstream = socket.create_connection(self._target, timeout=30)
        except OSError:
            client.close()
            return
        self._live += [client, upstream]
        for a, b in ((client, upstream), (upstream, client)):
            threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (source, sink):
                with suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)

    def cut(self, mode: str) -> None:
        """Switch to "refuse" or "stall" and drop open connections, as a dying server would."""
        self.mode = mode
        for sock in self._live:
            with suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()
        self._live.clear()

    def close(self) -> None:
        self._closed = True
        self._listener.close()
        for sock in self._held:
            sock.close()
