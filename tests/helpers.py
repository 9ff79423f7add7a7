"""What the tests share besides fixtures: request helpers, assertions, the test mail server.

Fixtures live in conftest.py (and the fixture modules it loads); test modules import from
here and never from each other or from conftest.
"""

from __future__ import annotations

import email
import email.policy
import io
import logging
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from email.message import EmailMessage
from pathlib import Path
from typing import Any, NoReturn

import jwt
import pytest
import sqlalchemy as sa
from aiosmtpd.controller import Controller
from flask import Flask
from flask.testing import FlaskClient
from PIL import Image
from redis import Redis

from app import create_app
from app.db import db

REQUIRE_SERVICES = os.environ.get("TEST_REQUIRE_SERVICES") == "1"
PG_DATABASE = os.environ.get("TEST_POSTGRES_DB") or f"accounts_test_{secrets.token_hex(4)}"
PG_SERVER_URL = os.environ.get("TEST_POSTGRES_URL", "postgresql+psycopg2://postgres@127.0.0.1:5432")

PASSWORD = "violet tangerine submarine orbit"
PROBLEM_KEYS = {"type", "title", "status", "detail"}


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


# --- responses ----------------------------------------------------------------------------


def assert_problem(response: Any, status: int) -> dict[str, Any]:
    """An RFC 9457 problem body with this status; returns the body."""
    assert response.status_code == status, response.get_data(as_text=True)
    assert response.mimetype == "application/problem+json"
    body: dict[str, Any] = response.json
    assert set(body) >= PROBLEM_KEYS
    assert body["status"] == status
    return body


def assert_401(response: Any) -> dict[str, Any]:
    body = assert_problem(response, 401)
    assert response.headers["WWW-Authenticate"] == "Bearer"
    return body


# --- requests -----------------------------------------------------------------------------


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def login(client: FlaskClient, email: str, password: str = PASSWORD) -> Any:
    return client.post("/auth/login", json={"email": email, "password": password})


def refresh(client: FlaskClient, token: str) -> Any:
    return client.post("/auth/refresh", json={"refresh_token": token})


def logout(client: FlaskClient, refresh_token: str, access_token: str | None = None) -> Any:
    headers = bearer(access_token) if access_token else {}
    return client.post("/auth/logout", json={"refresh_token": refresh_token}, headers=headers)


def me(client: FlaskClient, access_token: str) -> Any:
    return client.get("/auth/me", headers=bearer(access_token))


def claims(token: str) -> dict[str, Any]:
    """A JWT's claims, read without the key (the tests forge and inspect tokens)."""
    decoded: dict[str, Any] = jwt.decode(token, options={"verify_signature": False})
    return decoded


# --- what the service stored and logged ---------------------------------------------------


def stored_values(app: Flask) -> list[str]:
    """Every cell of every table, as text: what a database dump would show."""
    with app.app_context():
        metadata = sa.MetaData()
        metadata.reflect(bind=db.engine)
        with db.engine.connect() as conn:
            return [
                str(value)
                for table in metadata.sorted_tables
                for row in conn.execute(sa.select(table))
                for value in row
                if value is not None
            ]


def stored_password_hash(app: Flask, email: str) -> str:
    from app.models import User

    with app.app_context():
        value = db.session.scalar(sa.select(User.password_hash).where(User.email == email))
    assert value is not None
    return value


def service_log_records(records: Iterable[logging.LogRecord]) -> list[logging.LogRecord]:
    """The records of the service's process: aiosmtpd ("mail.log") is the test's own mail
    server, the receiving end, and logs the emails it is sent, links and all, by design."""
    return [record for record in records if not record.name.startswith("mail.log")]


# --- the mail server ----------------------------------------------------------------------


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


# --- jobs ---------------------------------------------------------------------------------


def run_worker(app: Flask) -> None:
    """The service's own RQ worker in burst mode, in this process (no fork), so a test sees
    what it did as soon as it returns. It runs RQ's scheduler first, as the `flask rq worker`
    process does, so retries that are due go back to the queue."""
    from app.jobs.worker import run_worker as work

    work(app, burst=True, fork=False)


# --- users --------------------------------------------------------------------------------


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
        response = login(self.client, email_address, password)
        assert response.status_code == 200, response.json
        return response.json  # type: ignore[return-value]

    def active_user(self, email_address: str, password: str = PASSWORD) -> dict[str, Any]:
        """Register, activate through the emailed link, log in; returns the token pair."""
        self.register(email_address, password)
        self.activate(email_address)
        return self.login(email_address, password)

    def set_group(self, app: Flask, email_address: str, group: str) -> None:
        from app.models import GroupName
        from app.users import find_user_by_email, get_group

        with app.app_context():
            user = find_user_by_email(email_address)
            assert user is not None
            user.group = get_group(GroupName(group))
            db.session.commit()


# --- avatar storage -----------------------------------------------------------------------


@dataclass
class Fetched:
    status: int
    body: bytes
    headers: dict[str, str]  # names in lower case


def lower_case_headers(headers: Iterable[tuple[str, str]]) -> dict[str, str]:
    return {name.lower(): value for name, value in headers}


def fetch_url(url: str) -> Fetched:
    """GET a URL over the network (the presigned URLs point at moto's server)."""
    try:
        with urllib.request.urlopen(url, timeout=10) as response:  # noqa: S310 - test URL
            return Fetched(
                response.status, response.read(), lower_case_headers(response.headers.items())
            )
    except urllib.error.HTTPError as error:
        return Fetched(error.code, error.read(), lower_case_headers(error.headers.items()))


@dataclass
class AvatarBackend:
    """The app under test and a look at what its storage holds."""

    name: str
    app: Flask
    keys: Callable[[], set[str]]
    read: Callable[[str], bytes]
    fetch: Callable[[str], Fetched]


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


USER_KEYS = {"id", "email", "is_active", "group", "created_at", "updated_at", "profile"}


def at_once(app: Flask, requests: list[Callable[[Any], Any]]) -> list[int]:
    """Start every request at the same moment, each from its own client; return the statuses."""
    barrier = threading.Barrier(len(requests))
    statuses: list[int] = []
    lock = threading.Lock()

    def run(request: Callable[[Any], Any]) -> None:
        client = app.test_client()
        barrier.wait()
        status = request(client).status_code
        with lock:
            statuses.append(status)

    threads = [threading.Thread(target=run, args=(r,)) for r in requests]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    return sorted(statuses)


# --- avatars ---

KEY = re.compile(r"avatars/1/[0-9a-f]{32}\.webp")
EXIF_MAKE, EXIF_ORIENTATION, EXIF_DESCRIPTION = 0x010F, 0x0112, 0x010E


def image_bytes(
    fmt: str,
    size: tuple[int, int] = (64, 48),
    mode: str = "RGB",
    color: Any = None,
    **options: Any,
) -> bytes:
    if color is None:
        color = "red" if mode in ("RGB", "RGBA") else 1
    image = Image.new(mode, size, color)
    out = io.BytesIO()
    image.save(out, fmt, **options)
    return out.getvalue()


def exif_with_secrets(orientation: int = 1) -> bytes:
    exif = Image.Exif()
    exif[EXIF_MAKE] = "SpyCam"
    exif[EXIF_DESCRIPTION] = "taken at home, 12 Secret Street"
    exif[EXIF_ORIENTATION] = orientation
    return exif.tobytes()


@dataclass
class Uploader:
    backend: AvatarBackend
    client: FlaskClient
    headers: dict[str, str]

    def put(self, data: bytes, filename: str = "me.png", content_type: str = "image/png") -> Any:
        return self.client.put(
            "/auth/me/avatar",
            data={"avatar": (io.BytesIO(data), filename, content_type)},
            headers=self.headers,
        )

    def profile(self) -> dict[str, Any]:
        response = self.client.get("/auth/me", headers=self.headers)
        assert response.status_code == 200
        return response.json["profile"]  # type: ignore[no-any-return]

    def stored_image(self, key: str) -> Image.Image:
        image = Image.open(io.BytesIO(self.backend.read(key)))
        image.load()
        return image


def only_key(uploader: Uploader) -> str:
    keys = uploader.backend.keys()
    assert len(keys) == 1, keys
    (key,) = keys
    assert KEY.fullmatch(key), key
    return key


# --- processes ----------------------------------------------------------------------------

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
PROCESS_TIMEOUT = 60  # a generous bound for one `flask …` process; they take about a second


def flask_command(
    *args: str, database_url: str, redis_url: str, smtp_port: int, **env: str
) -> subprocess.CompletedProcess[str]:
    environ = {
        **os.environ,
        "DATABASE_URL": database_url,
        "REDIS_URL": redis_url,
        "MAIL_SERVER": "127.0.0.1",
        "MAIL_PORT": str(smtp_port),
        "FLASK_SKIP_DOTENV": "1",  # a developer's .env must not redirect the test
        **env,
    }
    result = subprocess.run(
        [str(BIN / "flask"), "--app", "wsgi", *args],
        cwd=ROOT,
        env=environ,
        capture_output=True,
        text=True,
        timeout=PROCESS_TIMEOUT,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result


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
