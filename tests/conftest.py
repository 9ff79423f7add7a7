"""Fixtures: an app per test on SQLite and on PostgreSQL, a real SMTP server, Redis + RQ.

PostgreSQL and Redis are skipped when unreachable, unless TEST_REQUIRE_SERVICES=1 (set by
`make test` in CI), which turns "unreachable" into a failure.

Every run is isolated from every other run on the machine (two worktrees, a second terminal,
CI jobs on one host): its PostgreSQL databases carry a name of their own and are dropped when
the run ends, and its Redis is a private `redis-server` on a free port. TEST_POSTGRES_URL,
TEST_POSTGRES_DB and TEST_REDIS_URL still point the run at given services instead.

Under pytest-xdist (`make test`), each worker is such a run of its own: session fixtures are
made once per worker, databases are named after the worker, each starts its own
redis-server (or takes its own database number of TEST_REDIS_URL); see
tests/support/parallel.py.
"""

from __future__ import annotations

import os
import shutil
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from argon2 import PasswordHasher
from flask import Flask
from flask.testing import FlaskClient
from flask_migrate import upgrade
from redis import Redis

from app import create_app
from app.core.db import db
from app.core.extensions import limiter
from app.identity.users import seed_groups
from app.keys.service import ensure_key
from app.passwords import hashing
from tests.support.apps import make_app
from tests.support.http import Accounts
from tests.support.mail import Mailbox, SMTPServer
from tests.support.services import (
    PostgresDatabases,
    free_port,
    memory_folder,
    start_redis_server,
    unavailable,
    worker_redis_url,
)

# The avatar-storage and browser fixtures keep modules of their own; loading them here offers
# them to every test module, which then never imports a fixture module.
# tests.support.parallel cleans up after crashed pytest-xdist workers.
pytest_plugins = ["tests.fixtures_storage", "tests.fixtures_browser", "tests.support.parallel"]

# Flask's switch, honoured by app.config.read_dotenv: a developer's .env never reaches a test.
os.environ["FLASK_SKIP_DOTENV"] = "1"
# A fixed name was dropped and truncated by whichever run came second on a shared server.
# Unset: the run starts a private redis-server (see `redis_server_url`).
TEST_REDIS_URL = os.environ.get("TEST_REDIS_URL")
# Only when no redis-server binary is installed: shared with any other run, and flushed.
SHARED_REDIS_URL = "redis://127.0.0.1:6379/15"

TABLES_CHILD_FIRST = [
    "oidc_sign_in_codes",
    "oidc_pending_sign_ins",
    "oidc_identities",
    "webauthn_challenges",
    "passkeys",
    "mfa_challenges",
    "mfa_recovery_codes",
    "mfa_totp_factors",
    "security_events",
    "email_outbox",
    "email_change_tokens",
    "sessions",
    "password_reset_tokens",
    "activation_tokens",
    "user_profiles",
    "users",
]


# --- password hashing ---------------------------------------------------------------------

# argon2id at its smallest (8 KiB, one pass) hashes in microseconds where the production
# parameters take ~25 ms, and the suite registers, logs in and changes passwords hundreds of
# times. Processes the tests start (`flask rq worker`, the dashboard) keep the real hasher.
CHEAP_HASHER = PasswordHasher(time_cost=1, memory_cost=8, parallelism=1)


@pytest.fixture(autouse=True)
def postgres_only(request: pytest.FixtureRequest) -> None:
    """`@pytest.mark.postgres("why")`: the test runs in the PostgreSQL run only."""
    marker = request.node.get_closest_marker("postgres")
    if marker is None or "database_url" not in request.fixturenames:
        return
    if not request.getfixturevalue("database_url").startswith("postgresql"):
        pytest.skip(marker.args[0] if marker.args else "PostgreSQL only")


@pytest.fixture(autouse=True)
def cheap_password_hasher(
    request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> Iterator[None]:
    """The cheap hasher for every test not marked `real_hasher` (the tests of the argon2
    parameters, the upgrade of old hashes at login, and the login timing)."""
    if not request.node.get_closest_marker("real_hasher"):
        monkeypatch.setattr(hashing, "hasher", CHEAP_HASHER)
    # dummy_hash() is cached: a dummy made by the other hasher would make an unknown email
    # cost what the other hasher costs, which the timing test would see.
    hashing.dummy_hash.cache_clear()
    yield
    hashing.dummy_hash.cache_clear()


# --- database -----------------------------------------------------------------------------


@pytest.fixture(scope="session")
def postgres_databases() -> Iterator[PostgresDatabases]:
    """Creates the run's databases; a session finalizer, so they go after failures too."""
    databases = PostgresDatabases()
    yield databases
    databases.drop_all()


@pytest.fixture
def make_postgres_database(postgres_databases: PostgresDatabases) -> Callable[[str], str]:
    """`make_postgres_database("migrations")`: the URL of an empty database of this run's own."""
    return postgres_databases.create


@pytest.fixture(scope="session")
def sqlite_folder(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Where the run's SQLite database lives: in memory (/dev/shm) where the machine has it,
    so that its commits do not wait for the disk; else in the run's temporary folder."""
    folder = memory_folder()
    if folder is None:
        yield tmp_path_factory.mktemp("sqlite")
        return
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="session")
def migrated_databases() -> dict[str, str]:
    """The URL of each database `database_url` migrated, by backend: pytest tears a
    parametrized session fixture down whenever the next test wants the other parameter,
    which an xdist worker's share of the tests does back and forth; the migration is not
    run again for that."""
    return {}


@pytest.fixture(scope="session", params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, migrated_databases: dict[str, str]) -> str:
    """A database migrated once per run (per worker under xdist) with `flask db upgrade`'s
    code path and seeded."""
    if request.param in migrated_databases:
        return migrated_databases[request.param]
    if request.param == "sqlite":
        url = f"sqlite:///{request.getfixturevalue('sqlite_folder') / 'accounts.sqlite3'}"
    else:
        url = request.getfixturevalue("postgres_databases").create()
    app = create_app({"SQLALCHEMY_DATABASE_URI": url, "REDIS_URL": None})
    with app.app_context():
        upgrade()
        seed_groups()
        ensure_key()
        db.engine.dispose()
    migrated_databases[request.param] = url
    return url


@pytest.fixture(scope="session")
def smtp_server() -> Iterator[SMTPServer]:
    server = SMTPServer(Mailbox(), free_port())
    server.start()
    yield server
    server.stop()


@pytest.fixture
def mailbox(smtp_server: SMTPServer) -> Iterator[Mailbox]:
    if smtp_server.controller is None:  # a test that stopped it must not break the next one
        smtp_server.start()
    smtp_server.mailbox.clear()
    yield smtp_server.mailbox


# The sequences of the emptied tables start again from their first value, as after
# `TRUNCATE … RESTART IDENTITY`: user ids restart at 1 in every test.
RESTART_SEQUENCES = sa.text(
    "SELECT setval(seq.oid::regclass, spec.seqstart, false)"
    " FROM pg_class seq"
    " JOIN pg_sequence spec ON spec.seqrelid = seq.oid"
    " JOIN pg_depend dep ON dep.objid = seq.oid AND dep.deptype IN ('a', 'i')"
    " JOIN pg_class tab ON tab.oid = dep.refobjid"
    " WHERE tab.relname = ANY(:tables) AND tab.relnamespace = seq.relnamespace"
    " AND seq.relnamespace = current_schema()::regnamespace"
)


def _clean(app: Flask) -> None:
    """Empty the tables a test fills. DELETE, child tables first, on PostgreSQL too: a
    TRUNCATE of these few rows cost ~0.4 s a test (new files for every table), a DELETE
    ~10 ms."""
    with app.app_context():
        db.session.remove()
        with db.engine.begin() as conn:
            for table in TABLES_CHILD_FIRST:
                conn.execute(sa.text(f"DELETE FROM {table}"))  # noqa: S608 - fixed names
            if db.engine.dialect.name == "postgresql":
                conn.execute(RESTART_SEQUENCES, {"tables": TABLES_CHILD_FIRST})
        db.engine.dispose()


@pytest.fixture
def app_factory(
    database_url: str, tmp_path: Path, smtp_server: SMTPServer, mailbox: Mailbox
) -> Iterator[Callable[..., Flask]]:
    """Build an app with config overrides; the database is emptied after the test."""
    apps: list[Flask] = []

    def build(**overrides: Any) -> Flask:
        # The limiter is one object for every app of this process, and keeps flask-limiter's
        # "storage down, count in memory" state through init_app: an app built after one that
        # met a dead Redis would count in memory, then switch to Redis mid-test. Each app
        # starts as a new process does.
        limiter._storage_dead = False
        app = make_app(database_url, tmp_path, smtp_server.port, **overrides)
        apps.append(app)
        return app

    yield build
    for app in apps:
        with app.app_context():
            db.session.remove()
            db.engine.dispose()
    if apps:
        _clean(apps[0])


@pytest.fixture
def app(app_factory: Callable[..., Flask]) -> Flask:
    return app_factory()


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


# --- Redis and RQ -------------------------------------------------------------------------


@pytest.fixture(scope="session")
def redis_server_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The run's Redis: TEST_REDIS_URL when set, else a private redis-server started on first
    use and stopped when the run ends. Redis has only 16 databases and every run would share
    them, so a database number of its own cannot isolate concurrent runs; a server can. The
    workers of one run, though, share a given URL by taking a database number each."""
    if TEST_REDIS_URL:
        yield worker_redis_url(TEST_REDIS_URL)
        return
    if shutil.which("redis-server") is None:
        shared = worker_redis_url(SHARED_REDIS_URL)
        warnings.warn(
            f"redis-server is not installed: the Redis tests use and flush {shared},"
            " which another test run on this machine may be using at the same time",
            stacklevel=1,
        )
        yield shared
        return
    server = start_redis_server(tmp_path_factory.mktemp("redis"))
    yield server.url
    server.stop()


@pytest.fixture
def redis_url(redis_server_url: str) -> Iterator[str]:
    """An empty Redis database for the test."""
    conn = Redis.from_url(redis_server_url, socket_connect_timeout=3)
    try:
        conn.flushdb()
    except Exception as exc:
        unavailable("Redis", exc)
    yield redis_server_url
    conn.flushdb()
    conn.close()


@pytest.fixture
def redis_app(app_factory: Callable[..., Flask], redis_url: str) -> Flask:
    """An app whose jobs go to RQ; run them with `run_worker(app)`."""
    return app_factory(REDIS_URL=redis_url)


# --- users --------------------------------------------------------------------------------


@pytest.fixture
def accounts(client: FlaskClient, mailbox: Mailbox) -> Accounts:
    return Accounts(client, mailbox)
