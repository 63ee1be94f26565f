"""Start and stop fhir-safety's HAPI FHIR JPA R4 server (docker/hapi) for tests.

The jar is built by ``scripts/hapi build`` (a no-op when it is up to date) and run as
``java -Xmx1g -XX:TieredStopAtLevel=1 -XX:+UseSerialGC -jar docker/hapi/target/fhir-safety-hapi.jar
--server.port=<port>`` (JVM options: ``$HAPI_JAVA_OPTS``, as for scripts/hapi), logging to
``.hapi/test-hapi-<port>.log``. ``start_hapi`` returns once ``GET /fhir/metadata`` answers.

    server = start_hapi(None)      # a free port
    try:
        ...  # use server.base_url, e.g. http://127.0.0.1:41234/fhir
    finally:
        server.stop()
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

import httpx

__all__ = ["REPO_ROOT", "HapiServer", "HapiStartError", "build_jar", "free_port", "start_hapi"]

REPO_ROOT = Path(__file__).resolve().parents[1]
HAPI_SCRIPT = REPO_ROOT / "scripts" / "hapi"
JAR_PATH = REPO_ROOT / "docker" / "hapi" / "target" / "fhir-safety-hapi.jar"
STATE_DIR = REPO_ROOT / ".hapi"

# Same defaults as scripts/hapi: C1 only and the serial GC start faster on 2 cores and use less memory.
DEFAULT_JAVA_OPTS = ("-Xmx1g", "-XX:TieredStopAtLevel=1", "-XX:+UseSerialGC")
STARTUP_TIMEOUT_S = 240.0
BUILD_TIMEOUT_S = 1800.0
STOP_TIMEOUT_S = 30.0
LOG_TAIL_LINES = 60
KEEP_LOGS = 10


class HapiStartError(RuntimeError):
    """The server could not be built or did not answer /fhir/metadata in time."""


@dataclass
class HapiServer:
    """A running HAPI server subprocess; ``stop()`` ends it (idempotent)."""

    port: int
    process: subprocess.Popen[bytes]
    log_path: Path
    base_url: str = field(init=False)

    def __post_init__(self) -> None:
        self.base_url = f"http://127.0.0.1:{self.port}/fhir"

    def is_running(self) -> bool:
        return self.process.poll() is None

    def log_tail(self, lines: int = LOG_TAIL_LINES) -> str:
        return _tail(self.log_path, lines)

    def stop(self) -> None:
        """Stop the server: SIGTERM (Spring shuts down cleanly), then SIGKILL after 30 s."""
        if self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=STOP_TIMEOUT_S)

    def __enter__(self) -> HapiServer:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def build_jar() -> Path:
    """Build the server jar with ``scripts/hapi build`` unless it is up to date; return its path."""
    result = subprocess.run(
        ["bash", str(HAPI_SCRIPT), "build"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=BUILD_TIMEOUT_S,
        check=False,
    )
    if result.returncode != 0 or not JAR_PATH.is_file():
        output = (result.stdout + result.stderr)[-4000:]
        raise HapiStartError(f"scripts/hapi build failed (exit {result.returncode}):\n{output}")
    return JAR_PATH


def _java() -> str:
    java_home = os.environ.get("JAVA_HOME")
    if java_home and (Path(java_home) / "bin" / "java").is_file():
        return str(Path(java_home) / "bin" / "java")
    java = shutil.which("java")
    if java is None:
        raise HapiStartError("java not found: install a JDK 17+ or set JAVA_HOME")
    return java


def _tail(path: Path, lines: int) -> str:
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return "<no log>"
    return "\n".join(text.splitlines()[-lines:])


def _prune_old_logs(keep: int = KEEP_LOGS) -> None:
    """Keep the newest ``keep`` test-hapi-*.log files (each run writes one)."""

    def mtime(path: Path) -> float:
        try:
            return path.stat().st_mtime
        except OSError:  # removed meanwhile by a parallel test session
            return 0.0

    logs = sorted(STATE_DIR.glob("test-hapi-*.log"), key=mtime, reverse=True)
    for old in logs[keep:]:
        old.unlink(missing_ok=True)


def _wait_for_metadata(server: HapiServer, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    with httpx.Client(timeout=5.0) as client:
        while time.monotonic() < deadline:
            if not server.is_running():
                raise HapiStartError(
                    f"HAPI exited with code {server.process.returncode} during startup; "
                    f"last lines of {server.log_path}:\n{server.log_tail()}"
                )
            try:
                response = client.get(f"{server.base_url}/metadata")
                if response.status_code == httpx.codes.OK:
                    return
            except httpx.TransportError:
                pass
            time.sleep(1.0)
    raise HapiStartError(
        f"HAPI did not answer {server.base_url}/metadata within {timeout_s:.0f} s; "
        f"last lines of {server.log_path}:\n{server.log_tail()}"
    )


def start_hapi(
    port: int | None = None,
    *,
    h2_file: Path | None = None,
    java_opts: tuple[str, ...] | None = None,
    timeout_s: float = STARTUP_TIMEOUT_S,
) -> HapiServer:
    """Build the jar if needed, start the server on ``port`` (a free one if None) and wait for it.

    ``java_opts`` defaults to ``$HAPI_JAVA_OPTS`` or DEFAULT_JAVA_OPTS. Raises HapiStartError,
    with the tail of the server log, if it does not come up within ``timeout_s``; the process is
    stopped in that case.
    """
    jar = build_jar()
    if java_opts is None:
        from_env = os.environ.get("HAPI_JAVA_OPTS", "").split()
        java_opts = tuple(from_env) or DEFAULT_JAVA_OPTS
    port = free_port() if port is None else port
    STATE_DIR.mkdir(exist_ok=True)
    _prune_old_logs()
    log_path = STATE_DIR / f"test-hapi-{port}.log"
    command = [_java(), *java_opts, "-jar", str(jar), f"--server.port={port}"]
    if h2_file is not None:
        command.append(f"--hapi.h2-file={h2_file}")
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            command,
            cwd=REPO_ROOT,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # Ctrl-C in pytest does not hit the JVM before stop() runs
        )
    server = HapiServer(port=port, process=process, log_path=log_path)
    try:
        _wait_for_metadata(server, timeout_s)
    except BaseException:
        server.stop()
        raise
    return server
