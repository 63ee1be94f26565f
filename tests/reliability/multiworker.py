"""fhir-safety as several uvicorn worker processes, and which worker holds a connection.

``start_workers`` runs ``uvicorn fhir_safety.api.asgi:app_factory --factory --workers N``
as a child process on a free loopback port (settings from ``FHIR_SAFETY_*`` variables).
The workers share one listening socket, so the kernel decides which worker accepts a
connection; ``owner_of`` finds out afterwards from ``/proc`` (the worker whose file
descriptors hold the server end of that TCP connection). Linux only.
"""

from __future__ import annotations

import http.client
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "Workers",
    "connection_to_each_worker",
    "free_port",
    "owner_of",
    "rss_bytes",
    "start_workers",
]

_STARTUP_SECONDS = 90


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class Workers:
    process: subprocess.Popen[bytes]
    port: int
    pids: tuple[int, ...]
    log_file: Path

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


@contextmanager
def start_workers(env: Mapping[str, str], count: int, log_file: Path) -> Iterator[Workers]:
    """Start uvicorn with ``count`` workers; stop the process (and only it) afterwards."""
    port = free_port()
    command = [
        sys.executable,
        "-m",
        "uvicorn",
        "fhir_safety.api.asgi:app_factory",
        "--factory",
        "--workers",
        str(count),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--no-access-log",
        "--timeout-graceful-shutdown",
        "5",
    ]
    full_env = {**os.environ, **env, "FHIR_SAFETY_HOST": "127.0.0.1"}
    with log_file.open("wb") as log:
        process = subprocess.Popen(command, env=full_env, stdout=log, stderr=subprocess.STDOUT)
    try:
        pids = _wait_until_ready(process, port, count, log_file)
        yield Workers(process, port, pids, log_file)
    finally:
        _stop(process)


def _wait_until_ready(
    process: subprocess.Popen[bytes], port: int, count: int, log_file: Path
) -> tuple[int, ...]:
    deadline = time.monotonic() + _STARTUP_SECONDS
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"uvicorn exited ({process.returncode}):\n{_tail(log_file)}")
        pids = _worker_pids(process.pid)
        if len(pids) == count and all(_answers(port) for _ in range(2)):
            return pids
        time.sleep(0.2)
    raise RuntimeError(f"uvicorn did not start {count} workers:\n{_tail(log_file)}")


def _answers(port: int) -> bool:
    try:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
        conn.request("GET", "/healthz")
        ok = conn.getresponse().status == 200
        conn.close()
        return ok
    except OSError:
        return False


def _worker_pids(parent: int) -> tuple[int, ...]:
    """uvicorn's workers: the parent's children started by multiprocessing's spawn."""
    children = Path(f"/proc/{parent}/task/{parent}/children")
    try:
        pids = [int(p) for p in children.read_text().split()]
    except (OSError, ValueError):
        return ()
    workers = []
    for pid in pids:
        with suppress(OSError):
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
            if b"spawn_main" in cmdline:
                workers.append(pid)
    return tuple(sorted(workers))


def _stop(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM the uvicorn parent (it stops its workers); SIGKILL it and them if it hangs."""
    workers = _worker_pids(process.pid)
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)
    for pid in workers:  # the workers we started, by id, if any outlived the parent
        with suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)


def _tail(path: Path) -> str:
    return path.read_text(errors="replace")[-3000:] if path.exists() else "(no log)"


def rss_bytes(pid: int) -> int:
    """Resident set size of a process, from /proc/<pid>/status (VmRSS, kB)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmRSS for {pid}")


def owner_of(conn: http.client.HTTPConnection, server_port: int, pids: tuple[int, ...]) -> int:
    """The worker pid holding the server end of ``conn`` (after one request on it)."""
    assert conn.sock is not None
    client_port = conn.sock.getsockname()[1]
    inode = _server_socket_inode(server_port, client_port)
    target = f"socket:[{inode}]"
    for pid in pids:
        fd_dir = Path(f"/proc/{pid}/fd")
        for fd in fd_dir.iterdir():
            with suppress(OSError):
                if os.readlink(fd) == target:
                    return pid
    raise RuntimeError(f"no worker holds the connection from port {client_port}")


def _server_socket_inode(server_port: int, client_port: int) -> str:
    """/proc/net/tcp: the socket whose local port is the server's and remote the client's."""
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        local_port = int(fields[1].split(":")[1], 16)
        remote_port = int(fields[2].split(":")[1], 16)
        if local_port == server_port and remote_port == client_port:
            return fields[9]
    raise RuntimeError(f"no server socket for client port {client_port}")


def connection_to_each_worker(
    workers: Workers, attempts: int = 200
) -> dict[int, http.client.HTTPConnection]:
    """A keep-alive connection accepted by each worker (new connections until all are seen)."""
    found: dict[int, http.client.HTTPConnection] = {}
    spare: list[http.client.HTTPConnection] = []
    for _ in range(attempts):
        conn = http.client.HTTPConnection("127.0.0.1", workers.port, timeout=10)
        conn.request("GET", "/healthz")
        response = conn.getresponse()
        response.read()
        pid = owner_of(conn, workers.port, workers.pids)
        if pid in found:
            spare.append(conn)
        else:
            found[pid] = conn
        if len(found) == len(workers.pids):
            break
    for conn in spare:
        conn.close()
    if len(found) != len(workers.pids):
        raise RuntimeError(f"connections reached only workers {sorted(found)}")
    return found
