"""A throwaway PostgreSQL cluster for tests, built from Debian's ``postgresql`` package.

No Docker and no shared server: ``initdb`` a cluster in a temporary directory,
start it on a free port on 127.0.0.1 with trust authentication, hand out a
URL, then stop it and delete the directory. ``initdb`` refuses to run as
root, so as root the server runs as the ``postgres`` OS user (``runuser``)
in a directory that user owns.

If the binaries are missing this raises ``PostgresUnavailableError``, and the
tests must fail on it, not skip: a skipped database test reads as a pass.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import psycopg

__all__ = [
    "INSTALL_HINT",
    "PostgresUnavailableError",
    "find_postgres_bin",
    "postgres_cluster",
    "temporary_database",
]

POSTGRES_ROOT = Path("/usr/lib/postgresql")
INSTALL_HINT = (
    f"PostgreSQL server binaries not found under {POSTGRES_ROOT}/*/bin. "
    "Install them with `apt-get update && apt-get install -y postgresql` "
    "(the CI script does this); the postgres tests cannot run without them."
)
_START_ATTEMPTS = 3  # another process may take the free port before the server binds it


class PostgresUnavailableError(RuntimeError):
    """The PostgreSQL binaries are missing or the cluster would not start."""


def find_postgres_bin() -> Path:
    """The ``bin`` directory of the newest installed major version."""
    found = [path for path in POSTGRES_ROOT.glob("*/bin") if (path / "initdb").exists()]
    if not found:
        raise PostgresUnavailableError(INSTALL_HINT)
    return max(found, key=lambda bindir: _version_key(bindir.parent.name))


@contextmanager
def postgres_cluster() -> Iterator[str]:
    """Start a private cluster; yield ``postgresql://postgres@127.0.0.1:<port>/postgres``."""
    bindir = find_postgres_bin()
    workdir = Path(tempfile.mkdtemp(prefix="fhir-safety-pg-"))
    try:
        as_owner = _run_as_owner_prefix(workdir)
        data = workdir / "data"
        initdb = [*as_owner, str(bindir / "initdb"), "-D", str(data), "--auth=trust"]
        initdb += ["--username=postgres", "--encoding=UTF8", "--locale=C", "--no-sync"]
        _run(initdb, cwd=workdir)
        port = _start(bindir, as_owner, workdir)
        try:
            yield f"postgresql://postgres@127.0.0.1:{port}/postgres"
        finally:
            pg_ctl = [*as_owner, str(bindir / "pg_ctl"), "-D", str(data)]
            _run([*pg_ctl, "-m", "immediate", "-w", "stop"], cwd=workdir, check=False)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


@contextmanager
def temporary_database(server_url: str) -> Iterator[str]:
    """Create an empty database on the cluster, yield its URL, then drop it."""
    name = f"test_{uuid.uuid4().hex}"
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield server_url.rsplit("/", 1)[0] + f"/{name}"
    finally:
        with psycopg.connect(server_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _start(bindir: Path, as_owner: Sequence[str], workdir: Path) -> int:
    """Start the server on a free port, retrying if the port was taken meanwhile."""
    log = workdir / "server.log"
    for _ in range(_START_ATTEMPTS):
        port = _free_port()
        options = (
            f"-c listen_addresses=127.0.0.1 -p {port} -c unix_socket_directories={workdir} "
            "-c fsync=off -c synchronous_commit=off -c full_page_writes=off"
        )
        command = [*as_owner, str(bindir / "pg_ctl"), "-D", str(workdir / "data")]
        command += ["-l", str(log), "-o", options, "-w", "-t", "60", "start"]
        if _run(command, cwd=workdir, check=False).returncode == 0:
            return port
    tail = log.read_text(errors="replace")[-2000:] if log.exists() else "(no log)"
    raise PostgresUnavailableError(f"PostgreSQL would not start; server log:\n{tail}")


def _run_as_owner_prefix(workdir: Path) -> list[str]:
    """As root, give the directory to ``postgres`` and run the server as that user."""
    if os.geteuid() != 0:
        return []
    try:
        shutil.chown(workdir, user="postgres", group="postgres")
    except LookupError as exc:  # binaries present but the package's OS user is not
        raise PostgresUnavailableError(f"no `postgres` OS user. {INSTALL_HINT}") from exc
    return ["runuser", "-u", "postgres", "--"]


def _run(
    command: Sequence[str], *, cwd: Path, check: bool = True
) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(command, cwd=cwd, capture_output=True, text=True, check=False)
    if check and result.returncode != 0:
        raise PostgresUnavailableError(
            f"{' '.join(command)} failed ({result.returncode}):\n{result.stdout}{result.stderr}"
        )
    return result


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _version_key(name: str) -> tuple[int, ...]:
    return tuple(int(part) for part in name.split(".") if part.isdigit())
