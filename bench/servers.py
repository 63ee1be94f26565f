"""Start and stop the processes the HTTP benchmarks talk to (loopback only, bounded waits)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

__all__ = [
    "REPO_ROOT",
    "Server",
    "ServerStartError",
    "cpu_seconds",
    "free_port",
    "memory_kib",
    "start_floor",
    "start_service",
]

REPO_ROOT = Path(__file__).resolve().parents[1]
START_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 15.0


class ServerStartError(RuntimeError):
    """A benchmark server did not answer in time; the message carries its log tail."""


@dataclass
class Server:
    name: str
    port: int
    process: subprocess.Popen[bytes]
    log_path: Path

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        return self.process.pid

    def stop(self) -> None:
        if self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGINT)  # uvicorn shuts down cleanly on SIGINT
        try:
            self.process.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=STOP_TIMEOUT_S)

    def log_tail(self, lines: int = 30) -> str:
        try:
            text = self.log_path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return "<no log>"
        return "\n".join(text.splitlines()[-lines:])


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _start(name: str, command: list[str], port: int, log_path: Path, env: dict[str, str]) -> Server:
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            command,
            cwd=REPO_ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    server = Server(name, port, process, log_path)
    deadline = time.monotonic() + START_TIMEOUT_S
    with httpx.Client(timeout=2.0) as client:
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise ServerStartError(
                    f"{name} exited ({process.returncode}):\n{server.log_tail()}"
                )
            try:
                if client.get(f"{server.base_url}/cds-services").status_code == 200:
                    return server
            except httpx.TransportError:
                pass
            time.sleep(0.3)
    server.stop()
    raise ServerStartError(
        f"{name} did not answer in {START_TIMEOUT_S:.0f} s:\n{server.log_tail()}"
    )


def start_service(workdir: Path, *, fhir_server: str | None = None) -> Server:
    """``python -m fhir_safety.cli serve`` on a free loopback port, feedback store in ``workdir``."""
    port = free_port()
    env = dict(os.environ)
    env["FHIR_SAFETY_FEEDBACK_DATABASE_URL"] = f"sqlite:///{workdir / f'feedback-{port}.sqlite3'}"
    env.pop("FHIR_SAFETY_HOST", None)
    command = [sys.executable, "-m", "fhir_safety.cli", "serve", "--host", "127.0.0.1"]
    command += ["--port", str(port)]
    if fhir_server is not None:
        command += ["--fhir-server", fhir_server]
    return _start("fhir-safety", command, port, workdir / f"service-{port}.log", env)


def start_floor(workdir: Path, response_body: bytes) -> Server:
    port = free_port()
    body_path = workdir / "floor-response.json"
    body_path.write_bytes(response_body)
    command = [sys.executable, "-m", "bench.floor_app", "--port", str(port)]
    command += ["--response", str(body_path)]
    return _start("floor", command, port, workdir / f"floor-{port}.log", dict(os.environ))


def memory_kib(pid: int) -> dict[str, int]:
    """VmRSS and VmHWM (peak resident set) of a process, in KiB, from /proc/<pid>/status."""
    found: dict[str, int] = {}
    try:
        text = Path(f"/proc/{pid}/status").read_text(encoding="ascii")
    except OSError:
        return found
    for line in text.splitlines():
        name, _, value = line.partition(":")
        if name in {"VmRSS", "VmHWM"}:
            found[name] = int(value.split()[0])
    return found


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU time of a process (all its threads) so far, from /proc/<pid>/stat."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text(encoding="ascii")
    except OSError:
        return None
    fields = text.rsplit(")", 1)[1].split()  # after "pid (comm)"; utime, stime are 14 and 15
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks
