"""The services the tests run against: PostgreSQL databases of the run's own, a private
redis-server, and what to do when one cannot be reached (skip, or fail in CI)."""

from __future__ import annotations

import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn
from urllib.parse import urlsplit, urlunsplit

import pytest
import sqlalchemy as sa
from redis import Redis

REQUIRE_SERVICES = os.environ.get("TEST_REQUIRE_SERVICES") == "1"
# Under pytest-xdist (`make test` runs `pytest -n auto`) each worker is a process of its own,
# named gw0, gw1, … and given the run's id, both set before this module is imported.
WORKER = os.environ.get("PYTEST_XDIST_WORKER", "")
# The number in the worker's name; 0 outside xdist.
WORKER_INDEX = int(WORKER[2:]) if WORKER[:2] == "gw" and WORKER[2:].isdigit() else 0


def worker_database_base(run_id: str) -> str:
    """What the databases of every worker of run `run_id` start with: one per worker,
    `<base>_gw0`, `<base>_gw1`, … (see `worker_leftovers`)."""
    return os.environ.get("TEST_POSTGRES_DB") or f"accounts_test_{run_id[:8]}"


PG_DATABASE = (
    f"{worker_database_base(os.environ.get('PYTEST_XDIST_TESTRUNUID', ''))}_{WORKER}"
    if WORKER
    else os.environ.get("TEST_POSTGRES_DB") or f"accounts_test_{secrets.token_hex(4)}"
)
# A generous bound for one process the tests start and stop (a `flask …` command takes about
# a second).
PROCESS_TIMEOUT = 60
PG_SERVER_URL = os.environ.get("TEST_POSTGRES_URL", "postgresql+psycopg2://postgres@127.0.0.1:5432")


def wait_for(condition: Callable[[], Any], what: str, timeout: float = PROCESS_TIMEOUT) -> Any:
    """Poll `condition` until it is truthy and return its value; fail, naming `what`, after
    `timeout` seconds (a real process the test started has that long to get there)."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.05)


def skip_or_fail(message: str) -> NoReturn:
    """Skip a test whose service or tool is missing; under TEST_REQUIRE_SERVICES=1 (CI) fail
    it, so a missing service never passes as a green run."""
    if REQUIRE_SERVICES:
        pytest.fail(message + " (TEST_REQUIRE_SERVICES=1 makes this a failure)", pytrace=False)
    pytest.skip(message)


def unavailable(what: str, error: Exception) -> NoReturn:
    skip_or_fail(f"{what} is not reachable: {error}")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# --- databases ---------------------------------------------------------------------------


def _postgres_server() -> sa.Engine:
    return sa.create_engine(
        f"{PG_SERVER_URL}/postgres",
        isolation_level="AUTOCOMMIT",
        connect_args={"connect_timeout": 3},
    )


@dataclass
class PostgresDatabases:
    """The databases this run creates, all named after PG_DATABASE, so they are its own."""

    created: list[str] = field(default_factory=list)

    def create(self, suffix: str = "") -> str:
        """Drop and create an empty database; return its URL. Dropped again by `drop_all`.

        Its commits do not wait for the disk (synchronous_commit off, for this database
        only): what a transaction sees and locks is unchanged, only a crash of the server
        could lose the last commits, of a database the run drops anyway."""
        name = f"{PG_DATABASE}_{suffix}" if suffix else PG_DATABASE
        server = _postgres_server()
        try:
            with server.connect() as conn:
                conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
                conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
                conn.execute(sa.text(f'ALTER DATABASE "{name}" SET synchronous_commit = off'))
        except sa.exc.OperationalError as exc:
            unavailable("PostgreSQL", exc)
        finally:
            server.dispose()
        self.created.append(name)
        return f"{PG_SERVER_URL}/{name}"

    def drop_all(self) -> None:
        if not self.created:
            return
        _drop(self.created)
        self.created.clear()


def _drop(names: list[str]) -> None:
    server = _postgres_server()
    try:
        with server.connect() as conn:
            # FORCE: a worker subprocess or a pool a failed test left open must not keep
            # the database alive.
            for name in names:
                conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    finally:
        server.dispose()


def worker_leftovers(run_id: str) -> list[str]:
    """The databases of run `run_id`'s workers still on the server: those of a worker that
    crashed (xdist replaces it with a new one) before its session finalizer dropped them."""
    base = worker_database_base(run_id)
    pattern = re.compile(rf"{re.escape(base)}_gw\d+(_.*)?")
    server = _postgres_server()
    try:
        with server.connect() as conn:
            names = conn.execute(sa.text("SELECT datname FROM pg_database")).scalars().all()
    finally:
        server.dispose()
    return [name for name in names if pattern.fullmatch(name)]


def drop_worker_leftovers(run_id: str) -> list[str]:
    """Drop what `worker_leftovers` finds; the names dropped."""
    names = worker_leftovers(run_id)
    if names:
        _drop(names)
    return names


# --- SQLite in memory -----------------------------------------------------------------------

# A tmpfs: a SQLite commit there does not wait for the disk (0.1 ms instead of ~6 ms on a
# machine whose disk other jobs keep busy, and a test commits a few times).
SHARED_MEMORY = Path("/dev/shm")  # noqa: S108 - each folder in it is mkdtemp's, private


def memory_folder() -> Path | None:
    """A new folder of the run's own (named after PG_DATABASE) in SHARED_MEMORY, or None
    where there is none to write to; the caller removes it."""
    if not (SHARED_MEMORY.is_dir() and os.access(SHARED_MEMORY, os.W_OK)):
        return None
    return Path(tempfile.mkdtemp(prefix=f"{PG_DATABASE}_", dir=SHARED_MEMORY))


def remove_worker_memory_folders(run_id: str) -> list[Path]:
    """The memory folders a crashed worker of run `run_id` left behind, removed."""
    base = worker_database_base(run_id)
    pattern = re.compile(rf"{re.escape(base)}_gw\d+_.*")
    if not SHARED_MEMORY.is_dir():
        return []
    left = [path for path in SHARED_MEMORY.iterdir() if pattern.fullmatch(path.name)]
    for path in left:
        shutil.rmtree(path, ignore_errors=True)
    return left


# --- a private Redis ----------------------------------------------------------------------


class RedisNotStarted(RuntimeError):
    pass


@dataclass
class RedisServer:
    """A redis-server of the test run's own, on a free port, saving nothing to disk. A test
    may kill it (what it held is lost, as after a crash), start it again on the same port,
    empty, and pause it with SIGSTOP (a hung Redis still accepts connections)."""

    directory: Path
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def log(self) -> Path:
        return self.directory / f"redis-{self.port}.log"

    @property
    def pidfile(self) -> Path:
        """Where the pid of a running server is kept until it is stopped: what the run's
        controller finds of a worker that crashed (see `kill_leftover_redis_servers`)."""
        return self.directory / f"redis-{self.port}.pid"

    def start(self, timeout: float = 20.0) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            unavailable("Redis", FileNotFoundError("redis-server is not installed"))
        self.process = subprocess.Popen(
            [
                binary,
                *("--bind", "127.0.0.1", "--port", str(self.port)),
                *("--save", "", "--appendonly", "no"),
                *("--dir", str(self.directory), "--logfile", str(self.log)),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        self.pidfile.write_text(str(self.process.pid))
        deadline = time.monotonic() + timeout
        while self.process.poll() is None and time.monotonic() < deadline:
            try:
                with Redis.from_url(self.url, socket_connect_timeout=1, socket_timeout=1) as conn:
                    conn.ping()
                return
            except Exception:
                time.sleep(0.05)
        self.kill()
        tail = self.log.read_text(errors="replace")[-2000:] if self.log.exists() else "no log"
        raise RedisNotStarted(f"redis-server did not start on port {self.port}: {tail}")

    def pause(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGCONT)

    def kill(self) -> None:
        """Gone at once, as after a crash."""
        if self.process is not None:
            self.process.send_signal(signal.SIGCONT)  # a paused server dies too
            self.process.kill()
            self.process.wait(timeout=PROCESS_TIMEOUT)
            self.process = None
            self.pidfile.unlink(missing_ok=True)

    def stop(self) -> None:
        if self.process is not None:
            self.process.send_signal(signal.SIGCONT)
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
            self.process = None
            self.pidfile.unlink(missing_ok=True)


def start_redis_server(directory: Path) -> RedisServer:
    """A started RedisServer; another process may take the free port before redis-server
    binds it, so a few ports are tried."""
    error: Exception | None = None
    for _ in range(5):
        server = RedisServer(directory)
        try:
            server.start()
            return server
        except RedisNotStarted as exc:
            error = exc
    unavailable("Redis", error or RuntimeError("redis-server did not start"))


def kill_leftover_redis_servers(directory: Path) -> int:
    """Kill the redis-servers whose pidfile is still under `directory` (the run's temporary
    folder): those a crashed worker started and never stopped. The pid is checked to be a
    redis-server's, on the port of its file, before the kill; how many were killed."""
    killed = 0
    for pidfile in directory.rglob("redis-*.pid"):
        port = pidfile.stem.removeprefix("redis-")
        try:
            pid = int(pidfile.read_text())
            name = Path(f"/proc/{pid}/comm").read_text().strip()
            # redis-server shows "redis-server 127.0.0.1:<port>" as its command line.
            command = Path(f"/proc/{pid}/cmdline").read_bytes()
        except (OSError, ValueError):
            pidfile.unlink(missing_ok=True)
            continue  # gone already
        if name == "redis-server" and f":{port}".encode() in command:
            os.kill(pid, signal.SIGCONT)
            os.kill(pid, signal.SIGKILL)
            killed += 1
        pidfile.unlink(missing_ok=True)
    return killed


def worker_redis_url(url: str) -> str:
    """A Redis URL given to the whole run (TEST_REDIS_URL, or the shared fallback), made the
    worker's own under xdist: worker gwN uses the database number N below the one given,
    counting down and wrapping at 0 (`/15` gives gw0 15, gw1 14, …), as each flushes its own."""
    if not WORKER:
        return url
    parts = urlsplit(url)
    given = int(parts.path.strip("/") or 0)
    return urlunsplit(parts._replace(path=f"/{(given - WORKER_INDEX) % 16}"))
