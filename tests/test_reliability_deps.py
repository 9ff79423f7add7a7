"""Dependencies that hang, stop or restart, and what a client of the API sees meanwhile.

Everything runs as real processes: gunicorn with two sync workers serves the app; Redis is
a private `redis-server` that a test pauses with SIGSTOP (a hung Redis accepts connections
and answers nothing); PostgreSQL sits behind a TCP proxy written below, which can stall
(hold every byte, as a hung server does) or cut every connection (as `pg_ctl restart -m
immediate` does). A restart of the shared PostgreSQL server itself would break the other
suites running against it, so the proxy stands in for it.

Bounds are generous, not measurements: a request must *complete*, with the promised status,
while the dependency is still hung; an unbounded wait fails the join instead of the speed.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from flask import Flask
from flask_migrate import upgrade

from app import create_app
from app.core.db import db
from app.identity.models import GroupName, User, UserProfile
from app.identity.users import get_group, seed_groups
from app.keys.service import ensure_key
from app.passwords import hashing
from tests.support.apps import BIN, ROOT
from tests.support.http import PASSWORD, assert_problem, bearer
from tests.support.services import (
    PG_SERVER_URL,
    PostgresDatabases,
    RedisServer,
    free_port,
    start_redis_server,
)

EMAIL = "steady@example.com"
# A request answers in about a second per hung client (Redis) and within the database's
# deadlines (3 s to connect, 5 s + 1 s per statement); before the timeouts it took 10 to
# 60 s, or until gunicorn killed the worker at 30 s.
REDIS_BOUND = 10
DATABASE_BOUND = 20
START_BOUND = 120  # gunicorn importing the app on a loaded machine


# --- the proxy in front of PostgreSQL -------------------------------------------------------


class PostgresProxy:
    """Forwards TCP to PostgreSQL; `stall()` holds every byte until `resume()`, `restart()`
    closes every connection, as a server restart does, and lets new ones through; while
    `refusing` is set, a new connection is closed at once, as by a server that is down."""

    def __init__(self, upstream: tuple[str, int]) -> None:
        self.upstream = upstream
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self.listener.getsockname()[1]
        self.flowing = threading.Event()
        self.flowing.set()
        self.refusing = threading.Event()  # new connections are closed at once: server down
        self.held = threading.Event()  # some bytes are waiting for the stall to end
        self.lock = threading.Lock()
        self.links: list[tuple[socket.socket, socket.socket]] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return  # closed
            if self.refusing.is_set():
                client.close()
                continue
            try:
                server = socket.create_connection(self.upstream, timeout=5)
                server.settimeout(None)
            except OSError:
                client.close()
                continue
            with self.lock:
                self.links.append((client, server))
            for source, target in ((client, server), (server, client)):
                threading.Thread(target=self._pump, args=(source, target), daemon=True).start()

    def _pump(self, source: socket.socket, target: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                if not self.flowing.is_set():
                    self.held.set()
                    self.flowing.wait()
                target.sendall(data)
        except OSError:
            pass
        finally:
            self._close((source, target))

    def _close(self, link: tuple[socket.socket, socket.socket]) -> None:
        for sock in link:
            # shutdown, not just close: it wakes the pump blocked in recv() on it, and the
            # peer sees the end of the stream at once.
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()
        with self.lock:
            self.links = [pair for pair in self.links if set(pair) != set(link)]

    def open_links(self) -> int:
        with self.lock:
            return len(self.links)

    def stall(self) -> None:
        self.held.clear()
        self.flowing.clear()

    def resume(self) -> None:
        self.flowing.set()

    def restart(self) -> None:
        with self.lock:
            links = list(self.links)
        for link in links:
            self._close(link)
        self.flowing.set()

    def close(self) -> None:
        self.listener.close()
        self.restart()


# --- the processes --------------------------------------------------------------------------


@dataclass
class Reply:
    status: int
    headers: http.client.HTTPMessage
    body: Any


@dataclass
class Server:
    port: int
    process: subprocess.Popen[bytes]
    log_path: Path
    home: Path

    def call(
        self, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None
    ) -> Reply:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
        try:
            conn.request(
                method,
                path,
                body=None if body is None else json.dumps(body),
                headers={"Content-Type": "application/json", **(headers or {})},
            )
            response = conn.getresponse()
            raw = response.read()
            return Reply(response.status, response.headers, json.loads(raw) if raw else None)
        finally:
            conn.close()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-4000:]


def answered_within(seconds: float, request: Callable[[], Reply]) -> Reply:
    """The reply to `request`, which must come while the fault lasts."""
    pool = ThreadPoolExecutor(max_workers=1)
    future: Future[Reply] = pool.submit(request)
    try:
        return future.result(timeout=seconds)
    except TimeoutError:
        pytest.fail(f"no answer within {seconds} s while the dependency hangs")
    finally:
        pool.shutdown(wait=False)  # a request still hanging is not waited for


@pytest.fixture(scope="module")
def private_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    redis = start_redis_server(tmp_path_factory.mktemp("redis"))
    yield redis
    redis.stop()


@pytest.fixture(scope="module")
def pg_proxy() -> Iterator[PostgresProxy]:
    url = sa.make_url(PG_SERVER_URL)
    proxy = PostgresProxy((url.host or "127.0.0.1", url.port or 5432))
    yield proxy
    proxy.close()


@pytest.fixture(scope="module")
def proxied_database(
    pg_proxy: PostgresProxy, postgres_databases: PostgresDatabases
) -> Iterator[str]:
    """A migrated database with one active user; its URL goes through the proxy."""
    direct = postgres_databases.create("faults")
    app = create_app({"SQLALCHEMY_DATABASE_URI": direct, "REDIS_URL": None})
    with app.app_context():
        upgrade()
        seed_groups()
        ensure_key()
        user = User(
            email=EMAIL, password_hash=hashing.hash_password(PASSWORD), profile=UserProfile()
        )
        user.group = get_group(GroupName.USER)
        user.activate()
        db.session.add(user)
        db.session.commit()
        db.engine.dispose()
    url = sa.make_url(direct).set(host="127.0.0.1", port=pg_proxy.port)
    yield url.render_as_string(hide_password=False)  # dropped with the run's databases


@pytest.fixture(scope="module")
def server(
    proxied_database: str, private_redis: RedisServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    """gunicorn as deployed (gunicorn.conf.py), with two sync workers and a HOME of its own."""
    home = tmp_path_factory.mktemp("home")
    port = free_port()
    log_path = home / "gunicorn.log"
    environ = {key: value for key, value in os.environ.items() if not key.startswith("GUNICORN")}
    environ.pop("XDG_RUNTIME_DIR", None)  # gunicorn's control socket would default there
    environ.update(
        HOME=str(home),
        APP_ENV="development",
        DATABASE_URL=proxied_database,
        REDIS_URL=private_redis.url,
        RATELIMIT_ENABLED="true",
        WEB_CONCURRENCY="2",
        GUNICORN_BIND=f"127.0.0.1:{port}",
    )
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [str(BIN / "gunicorn"), "wsgi:app"],
            cwd=ROOT,
            env=environ,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    running = Server(port, process, log_path, home)
    deadline = time.monotonic() + START_BOUND
    while True:
        try:
            if running.call("GET", "/health").status == 200:
                break
        except OSError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            pytest.fail(f"gunicorn did not start:\n{running.log()}")
        time.sleep(0.2)
    yield running
    process.terminate()
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def login(server: Server) -> str:
    reply = server.call("POST", "/auth/login", {"email": EMAIL, "password": PASSWORD})
    assert reply.status == 200, (reply.body, server.log())
    return str(reply.body["access_token"])


def register(server: Server, email: str) -> Reply:
    return server.call("POST", "/auth/register", {"email": email, "password": PASSWORD})


def assert_database_unavailable(reply: Reply) -> None:
    assert reply.status == 503, reply.body
    assert int(reply.headers["Retry-After"]) > 0
    assert reply.headers["Content-Type"] == "application/problem+json"
    assert reply.body["status"] == 503
    assert reply.body["title"] == "Service Unavailable"
    assert "Traceback" not in json.dumps(reply.body)


# --- Redis ----------------------------------------------------------------------------------


def test_a_paused_redis_costs_each_request_a_bounded_wait(
    server: Server, private_redis: RedisServer
) -> None:
    # With Redis up, both the limiter and the queue hold pooled connections to it.
    assert register(server, "early@example.com").status == 201
    private_redis.pause()
    try:
        # Rate-limited (per address and per email, counted in Redis), and its email is
        # enqueued in Redis after the commit.
        registered = answered_within(REDIS_BOUND, lambda: register(server, "paused@example.com"))
        assert registered.status == 201, registered.body
        refused = answered_within(
            REDIS_BOUND,
            lambda: server.call("POST", "/auth/login", {"email": EMAIL, "password": "wrong" * 4}),
        )
        assert refused.status == 401, refused.body
        ready = answered_within(REDIS_BOUND, lambda: server.call("GET", "/health/ready"))
        assert ready.status == 503
        assert ready.body["checks"] == {"database": "ok", "redis": "down"}
    finally:
        private_redis.resume()
    assert register(server, "after@example.com").status == 201


# --- PostgreSQL -----------------------------------------------------------------------------


def test_a_hung_database_answers_503_and_health_keeps_answering(
    server: Server, pg_proxy: PostgresProxy
) -> None:
    token = login(server)
    pg_proxy.stall()
    try:
        with ThreadPoolExecutor(max_workers=1) as pool:
            waiting = pool.submit(server.call, "GET", "/auth/me", None, bearer(token))
            assert pg_proxy.held.wait(DATABASE_BOUND), "the request never reached the database"
            # One worker waits on the database; the other answers what needs none.
            health = answered_within(DATABASE_BOUND, lambda: server.call("GET", "/health"))
            assert health.status == 200
            assert_database_unavailable(waiting.result(timeout=DATABASE_BOUND))
        # A write fails the same way, whether its worker connects afresh or reuses a link.
        assert_database_unavailable(
            answered_within(
                DATABASE_BOUND,
                lambda: server.call("POST", "/auth/login", {"email": EMAIL, "password": PASSWORD}),
            )
        )
    finally:
        pg_proxy.resume()
    assert server.call("GET", "/auth/me", headers=bearer(token)).status == 200


def during_a_restart(proxy: PostgresProxy, request: Callable[[], Reply]) -> Reply:
    """The reply to `request` when the database restarts while the request waits on it."""
    proxy.stall()
    try:
        with ThreadPoolExecutor(max_workers=1) as pool:
            waiting = pool.submit(request)
            assert proxy.held.wait(DATABASE_BOUND), "the request never reached the database"
            proxy.restart()
            return waiting.result(timeout=DATABASE_BOUND)
    finally:
        proxy.resume()


def test_a_restart_fails_only_the_writes_in_flight(server: Server, pg_proxy: PostgresProxy) -> None:
    token = login(server)
    # A read runs again on a new connection; a write is not run twice.
    read = during_a_restart(pg_proxy, lambda: server.call("GET", "/auth/me", headers=bearer(token)))
    assert read.status == 200, read.body
    assert_database_unavailable(
        during_a_restart(
            pg_proxy,
            lambda: server.call("POST", "/auth/login", {"email": EMAIL, "password": PASSWORD}),
        )
    )


def test_a_database_that_is_down_answers_503_to_the_guard_and_to_a_refresh(
    server: Server, pg_proxy: PostgresProxy
) -> None:
    """The guard's read and a refresh's rotation skip SQLAlchemy's execution
    (app/core/prepared.py); a database that takes no connection is still the 503 it is for
    every other request, not a 500."""
    token = login(server)
    refresh_token = server.call("POST", "/auth/login", {"email": EMAIL, "password": PASSWORD}).body[
        "refresh_token"
    ]
    pg_proxy.refusing.set()
    try:
        pg_proxy.restart()  # the pooled connections end too
        assert_database_unavailable(server.call("GET", "/auth/me", headers=bearer(token)))
        assert_database_unavailable(
            server.call("POST", "/auth/refresh", {"refresh_token": refresh_token})
        )
    finally:
        pg_proxy.refusing.clear()
    assert server.call("GET", "/auth/me", headers=bearer(token)).status == 200
    assert server.call("POST", "/auth/refresh", {"refresh_token": refresh_token}).status == 200


def test_a_database_restart_costs_no_request_that_came_after_it(
    server: Server, pg_proxy: PostgresProxy
) -> None:
    token = login(server)
    # Both workers hold a pooled connection: requests two at a time until the proxy
    # carries two links.
    with ThreadPoolExecutor(max_workers=2) as pool:
        for _ in range(50):
            if pg_proxy.open_links() >= 2:
                break
            list(pool.map(lambda _: server.call("GET", "/auth/me", headers=bearer(token)), "ab"))
    assert pg_proxy.open_links() >= 2
    pg_proxy.restart()
    statuses = [server.call("GET", "/auth/me", headers=bearer(token)).status for _ in range(6)]
    statuses += [
        server.call("POST", "/auth/login", {"email": EMAIL, "password": PASSWORD}).status
        for _ in range(4)
    ]
    assert statuses == [200] * 10, server.log()


@pytest.mark.postgres("statement_timeout is PostgreSQL's")
def test_a_statement_past_the_limit_is_cancelled_by_the_server_and_answers_503(
    app_factory: Callable[..., Flask], database_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    client = app_factory(DATABASE_STATEMENT_TIMEOUT=1).test_client()
    blocker = sa.create_engine(database_url)
    with blocker.connect() as conn, ThreadPoolExecutor(max_workers=1) as pool:
        # Another transaction holds the table: the login's read waits until the server
        # cancels it.
        conn.execute(sa.text("LOCK TABLE users IN ACCESS EXCLUSIVE MODE"))
        waiting = pool.submit(
            client.post, "/auth/login", json={"email": EMAIL, "password": PASSWORD}
        )
        try:
            response = waiting.result(timeout=DATABASE_BOUND)
        finally:
            conn.rollback()  # frees a login still waiting, so that a failure ends
    blocker.dispose()
    body = assert_problem(response, 503)
    assert body["title"] == "Service Unavailable"
    assert int(response.headers["Retry-After"]) > 0
    # The server cancelled it (and so gave up its place in the lock queue), before the
    # app's own deadline would have closed the connection.
    (logged,) = [r for r in caplog.records if r.getMessage() == "database_unavailable"]
    assert "statement timeout" in logged.reason


# --- gunicorn -------------------------------------------------------------------------------


def test_gunicorn_opens_no_control_socket_in_the_shared_home_directory(server: Server) -> None:
    assert not (server.home / ".gunicorn").exists()
