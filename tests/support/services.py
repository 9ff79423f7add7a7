"""The services the tests run against: PostgreSQL databases of the run's own, a private
redis-server, and what to do when one cannot be reached (skip, or fail in CI)."""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import NoReturn

import pytest
import sqlalchemy as sa
from redis import Redis

REQUIRE_SERVICES = os.environ.get("TEST_REQUIRE_SERVICES") == "1"
PG_DATABASE = os.environ.get("TEST_POSTGRES_DB") or f"accounts_test_{secrets.token_hex(4)}"
# A generous bound for one process the tests start and stop (a `flask …` command takes about
# a second).
PROCESS_TIMEOUT = 60
PG_SERVER_URL = os.environ.get("TEST_POSTGRES_URL", "postgresql+psycopg2://postgres@127.0.0.1:5432")


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
        """Drop and create an empty database; return its URL. Dropped again by `drop_all`."""
        name = f"{PG_DATABASE}_{suffix}" if suffix else PG_DATABASE
        server = _postgres_server()
        try:
            with server.connect() as conn:
                conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
                conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
        except sa.exc.OperationalError as exc:
            unavailable("PostgreSQL", exc)
        finally:
            server.dispose()
        self.created.append(name)
        return f"{PG_SERVER_URL}/{name}"

    def drop_all(self) -> None:
        if not self.created:
            return
        server = _postgres_server()
        try:
            with server.connect() as conn:
                # FORCE: a worker subprocess or a pool a failed test left open must not keep
                # the database alive.
                for name in self.created:
                    conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        finally:
            server.dispose()
        self.created.clear()


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
