"""Fixtures: an app per test on SQLite and on PostgreSQL, a real SMTP server, Redis + RQ.

PostgreSQL and Redis are skipped when unreachable, unless TEST_REQUIRE_SERVICES=1 (set by
`make test` in CI), which turns "unreachable" into a failure.
"""

from __future__ import annotations

import email
import email.policy
import os
import re
import socket
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from aiosmtpd.controller import Controller
from flask import Flask
from flask.testing import FlaskClient
from flask_migrate import upgrade
from redis import Redis

from app import create_app
from app.users import seed_groups
from app.db import db

REQUIRE_SERVICES = os.environ.get("TEST_REQUIRE_SERVICES") == "1"
PG_SERVER_URL = os.environ.get("TEST_POSTGRES_URL", "postgresql+psycopg2://postgres@127.0.0.1:5432")
PG_DATABASE = os.environ.get("TEST_POSTGRES_DB", "accounts_test")
REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/15")

PASSWORD = "violet tangerine submarine orbit"
TABLES_CHILD_FIRST = [
    "email_outbox",
    "refresh_tokens",
    "password_reset_tokens",
    "activation_tokens",
    "user_profiles",
    "users",
]


def unavailable(what: str, error: Exception) -> None:
    message = f"{what} is not reachable: {error}"
    if REQUIRE_SERVICES:
        pytest.fail(message + " (TEST_REQUIRE_SERVICES=1 makes this a failure)", pytrace=False)
    pytest.skip(message)


# --- database -----------------------------------------------------------------------------


def create_postgres_database(name: str) -> str:
    """Drop and create an empty database; return its URL."""
    server = sa.create_engine(
        f"{PG_SERVER_URL}/postgres",
        isolation_level="AUTOCOMMIT",
        connect_args={"connect_timeout": 3},
    )
    try:
        with server.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    except sa.exc.OperationalError as exc:
        unavailable("PostgreSQL", exc)
    finally:
        server.dispose()
    return f"{PG_SERVER_URL}/{name}"


@pytest.fixture(scope="session", params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> str:
    """A database migrated once per run with `flask db upgrade`'s code path and seeded."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path_factory.mktemp('sqlite') / 'accounts.sqlite3'}"
    else:
        url = create_postgres_database(PG_DATABASE)
    app = create_app({"SQLALCHEMY_DATABASE_URI": url, "REDIS_URL": None})
    with app.app_context():
        upgrade()
        seed_groups()
        db.engine.dispose()
    return url


@dataclass
class Mailbox:
    """What the SMTP server received."""

    messages: list[EmailMessage] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        message = email.message_from_bytes(envelope.content, policy=email.policy.default)
        with self.lock:
            self.messages.append(message)  # type: ignore[arg-type]
        return "250 OK"

    def clear(self) -> None:
        with self.lock:
            self.messages.clear()

    def to(self, address: str) -> list[EmailMessage]:
        with self.lock:
            return [m for m in self.messages if m["To"] == address]

    @staticmethod
    def text(message: EmailMessage) -> str:
        part = message.get_body(preferencelist=("plain",))
        assert part is not None
        return str(part.get_content())

    def last_link(self, address: str) -> str:
        messages = self.to(address)
        assert messages, f"no email reached {address}"
        links = re.findall(r"https?://\S+", self.text(messages[-1]))
        assert links, "the email has no link"
        return str(links[-1])

    def last_token(self, address: str) -> str:
        return self.last_link(address).split("token=", 1)[1]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class SMTPServer:
    mailbox: Mailbox
    port: int
    controller: Controller | None = None

    def start(self) -> None:
        self.controller = Controller(self.mailbox, hostname="127.0.0.1", port=self.port)
        self.controller.start()

    def stop(self) -> None:
        if self.controller is not None:
            self.controller.stop()
            self.controller = None


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


def _clean(app: Flask) -> None:
    with app.app_context():
        db.session.remove()
        with db.engine.begin() as conn:
            if db.engine.dialect.name == "postgresql":
                conn.execute(
                    sa.text(f"TRUNCATE {', '.join(TABLES_CHILD_FIRST)} RESTART IDENTITY CASCADE")
                )
            else:
                for table in TABLES_CHILD_FIRST:
                    conn.execute(sa.text(f"DELETE FROM {table}"))  # noqa: S608 - fixed names
        db.engine.dispose()


def make_app(database_url: str, tmp_path: Path, smtp_port: int, **overrides: Any) -> Flask:
    config: dict[str, Any] = {
        "TESTING": True,
        "SQLALCHEMY_DATABASE_URI": database_url,
        "REDIS_URL": None,
        "RATELIMIT_ENABLED": False,
        "MAIL_SERVER": "127.0.0.1",
        "MAIL_PORT": smtp_port,
        "MAIL_SUPPRESS_SEND": False,  # Flask-Mail suppresses sending under TESTING otherwise
        "MAIL_OUTBOX_DIR": str(tmp_path / "outbox"),
        "UPLOAD_DIR": str(tmp_path / "uploads"),
        "PUBLIC_BASE_URL": "http://cinema.test",
        "S3_ENDPOINT_URL": None,
        "S3_BUCKET": None,
    }
    config.update(overrides)
    return create_app(config)


@pytest.fixture
def app_factory(
    database_url: str, tmp_path: Path, smtp_server: SMTPServer, mailbox: Mailbox
) -> Iterator[Callable[..., Flask]]:
    """Build an app with config overrides; the database is emptied after the test."""
    apps: list[Flask] = []

    def build(**overrides: Any) -> Flask:
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


@pytest.fixture
def redis_url() -> Iterator[str]:
    conn = Redis.from_url(REDIS_URL, socket_connect_timeout=3)
    try:
        conn.flushdb()
    except Exception as exc:
        unavailable("Redis", exc)
    yield REDIS_URL
    conn.flushdb()
    conn.close()


@pytest.fixture
def redis_app(app_factory: Callable[..., Flask], redis_url: str) -> Flask:
    """An app whose jobs go to RQ; run them with `run_worker(app)`."""
    return app_factory(REDIS_URL=redis_url)


def run_worker(app: Flask) -> None:
    """The service's own RQ worker in burst mode, in this process (no fork), so a test sees
    what it did as soon as it returns."""
    from app.jobs.worker import run_worker as work

    work(app, burst=True, fork=False)


# --- users --------------------------------------------------------------------------------


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@dataclass
class Accounts:
    client: FlaskClient
    mailbox: Mailbox

    def register(self, email_address: str, password: str = PASSWORD) -> dict[str, Any]:
        response = self.client.post(
            "/auth/register", json={"email": email_address, "password": password}
        )
        assert response.status_code == 201, response.json
        return response.json  # type: ignore[return-value]

    def activate(self, email_address: str) -> None:
        response = self.client.post(
            "/auth/activate", json={"token": self.mailbox.last_token(email_address)}
        )
        assert response.status_code == 200, response.json

    def login(self, email_address: str, password: str = PASSWORD) -> dict[str, Any]:
        response = self.client.post(
            "/auth/login", json={"email": email_address, "password": password}
        )
        assert response.status_code == 200, response.json
        return response.json  # type: ignore[return-value]

    def active_user(self, email_address: str, password: str = PASSWORD) -> dict[str, Any]:
        """Register, activate through the emailed link, log in; returns the token pair."""
        self.register(email_address, password)
        self.activate(email_address)
        return self.login(email_address, password)

    def set_group(self, app: Flask, email_address: str, group: str) -> None:
        from app.models import GroupName, User, UserGroup

        with app.app_context():
            user = db.session.scalar(sa.select(User).where(User.email == email_address))
            assert user is not None
            user.group = db.session.scalar(
                sa.select(UserGroup).where(UserGroup.name == GroupName(group))
            )
            db.session.commit()


@pytest.fixture
def accounts(client: FlaskClient, mailbox: Mailbox) -> Accounts:
    return Accounts(client, mailbox)
