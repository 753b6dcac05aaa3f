"""A throwaway PostgreSQL server for tests and benchmarks: initdb into a temp dir, ``pg_ctl start`` on a free
loopback port, stop and delete at the end.

Import ``postgres_server()`` (a context manager yielding a ``postgresql://`` URL of the server's ``postgres``
database) and ``fresh_database(url)`` (creates an empty database on that server, returns its URL). initdb refuses
to run as root, so as root the server runs as the ``postgres`` system user. Binaries are found on PATH, in
``$PG_BIN`` or in Debian's ``/usr/lib/postgresql/<version>/bin``.
"""

from __future__ import annotations

import glob
import itertools
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import psycopg

_counter = itertools.count()


class PostgresNotFound(RuntimeError):  # noqa: N818 - reads as the condition it reports
    pass


def pg_bin_dir() -> Path:
    """The directory holding initdb and pg_ctl."""
    candidates = [os.environ.get("PG_BIN", "")]
    found = shutil.which("pg_ctl")
    if found:
        candidates.append(str(Path(found).parent))
    candidates += sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=lambda p: int(p.split("/")[-2]), reverse=True)
    for candidate in candidates:
        if candidate and (Path(candidate) / "initdb").exists() and (Path(candidate) / "pg_ctl").exists():
            return Path(candidate)
    raise PostgresNotFound("PostgreSQL binaries not found: run scripts/bootstrap --tools (Debian package postgresql)")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _as_server_user(cmd: list[str]) -> list[str]:
    if os.geteuid() == 0:
        return ["runuser", "-u", "postgres", "--", *cmd]
    return cmd


@dataclass
class PostgresServer:
    """A running throwaway server. ``stop()``/``start()`` let a test take the database away and bring it back."""

    url: str
    data: Path
    options: str
    log: Path
    bin_dir: Path

    def _pg_ctl(self, *args: str) -> None:
        subprocess.run(
            _as_server_user([str(self.bin_dir / "pg_ctl"), "-D", str(self.data), *args]),
            check=True,
            capture_output=True,
            env=_ENV,
        )

    def start(self) -> None:
        self._pg_ctl("-o", self.options, "-l", str(self.log), "-w", "-t", "60", "start")
        _wait_ready(self.url)

    def stop(self, mode: str = "fast") -> None:
        self._pg_ctl("-m", mode, "-w", "stop")


_ENV = {**os.environ, "LC_ALL": "C", "LANG": "C"}


@contextmanager
def running_postgres(*, settings: dict[str, str] | None = None) -> Iterator[PostgresServer]:
    """Start a private PostgreSQL server; stop and remove it afterwards.

    ``settings`` are extra ``-c name=value`` server options (e.g. ``max_connections``)."""
    bin_dir = pg_bin_dir()
    root = Path(tempfile.mkdtemp(prefix="gpuquota-pg-"))
    data = root / "data"
    if os.geteuid() == 0:
        shutil.chown(root, "postgres", "postgres")
    subprocess.run(
        _as_server_user(
            [str(bin_dir / "initdb"), "-D", str(data), "-U", "postgres", "--auth=trust", "-N", "-E", "UTF8"]
        ),
        check=True,
        capture_output=True,
        env=_ENV,
    )
    port = _free_port()
    options = {"listen_addresses": "127.0.0.1", "max_connections": "200", **(settings or {})}
    opts = f"-p {port} -k {root} " + " ".join(f"-c {k}={v}" for k, v in options.items())
    server = PostgresServer(
        f"postgresql://postgres@127.0.0.1:{port}/postgres", data, opts, root / "server.log", bin_dir
    )
    try:
        server.start()
        yield server
    finally:
        subprocess.run(
            _as_server_user([str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop"]),
            capture_output=True,
            env=_ENV,
            check=False,
        )
        shutil.rmtree(root, ignore_errors=True)


@contextmanager
def postgres_server(*, settings: dict[str, str] | None = None) -> Iterator[str]:
    """Start a private PostgreSQL server; yield the URL of its ``postgres`` database; stop and remove it after."""
    with running_postgres(settings=settings) as server:
        yield server.url


def _wait_ready(url: str, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            with psycopg.connect(url, connect_timeout=2):
                return
        except psycopg.OperationalError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def fresh_database(server_url: str, prefix: str = "t") -> str:
    """Create an empty database on the server at ``server_url``; return its URL."""
    name = f"{prefix}_{os.getpid()}_{next(_counter)}"
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return server_url.rsplit("/", 1)[0] + "/" + name


@contextmanager
def fresh_ledger_database(server_url: str) -> Iterator[str]:
    """A fresh database for one test, dropped afterwards (connections still open to it are terminated)."""
    url = fresh_database(server_url)
    try:
        yield url
    finally:
        name = url.rsplit("/", 1)[1]
        with psycopg.connect(server_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
