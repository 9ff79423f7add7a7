"""What an operator trips over on a first run, one section per mistake. Each test does what
the operator does (`make run`, `make dashboard`, `gunicorn`, the `flask` commands) in a real
process, against real PostgreSQL and Redis, and checks what the operator then sees."""

from __future__ import annotations

import json
import logging
import os
import runpy
import secrets
import shutil
import signal
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import sqlalchemy as sa
from flask import Flask
from redis import Redis
from rq import Queue

from app import create_app
from app.core.config import load_config
from app.core.db import db
from app.core.log import JSONFormatter
from app.courier.outbox import send_outbox_email
from app.courier.queue import QUEUE_NAME
from app.identity.users import seed_groups
from app.keys.service import ensure_key
from tests.support.apps import BIN, ROOT
from tests.support.http import PASSWORD, assert_problem, claims
from tests.support.mail import Mailbox, SMTPServer
from tests.support.services import (
    PG_DATABASE,
    PG_SERVER_URL,
    PostgresDatabases,
    free_port,
    unavailable,
)

TIMEOUT = 120  # a bound for a process that starts; they take a few seconds
# What the test runner's environment may carry that would decide instead of the operator's
# settings or `.env`.
DECIDING = ("DATABASE_URL", "REDIS_URL", "MAIL_", "APP_ENV", "PUBLIC_BASE_URL", "FLASK_APP")
DECIDING += ("GUNICORN_", "WEB_CONCURRENCY", "MAKE", "DASHBOARD_PORT")


def operator_environment(*, dotenv: bool = False, **settings: str) -> dict[str, str]:
    """The environment of an operator's shell: none of the app's settings but `settings`;
    `.env` read only when `dotenv` (the suite turns it off for every process it starts)."""
    environ = {k: v for k, v in os.environ.items() if not k.startswith(DECIDING)}
    if dotenv:
        environ.pop("FLASK_SKIP_DOTENV", None)
    else:
        environ["FLASK_SKIP_DOTENV"] = "1"
    environ.update(settings)
    return environ


def get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:  # noqa: S310 - local http
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


def post(url: str, body: dict[str, str]) -> tuple[int, Any]:
    request = urllib.request.Request(  # noqa: S310 - a local http:// URL
        url,
        method="POST",
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
            return response.status, json.loads(response.read() or b"{}")
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read() or b"{}")


def wait_until_it_answers(url: str, process: subprocess.Popen[Any], log: Path) -> None:
    deadline = time.monotonic() + TIMEOUT
    while True:
        try:
            if get(url)[0] == 200:
                return
        except OSError:
            pass  # not listening yet
        if process.poll() is not None or time.monotonic() > deadline:
            pytest.fail(f"{url} never answered 200:\n{log.read_text(errors='replace')}")
        time.sleep(0.2)


@pytest.fixture
def processes() -> Iterator[Callable[..., subprocess.Popen[bytes]]]:
    """Start long-running commands (each in a process group of its own, so `make` and what it
    started stop together), their output in a log file; all are stopped after the test."""
    started: list[subprocess.Popen[bytes]] = []

    def start(command: list[str], *, cwd: Path, env: dict[str, str], log: Path) -> Any:
        with log.open("wb") as out:
            process = subprocess.Popen(
                command,
                cwd=cwd,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        started.append(process)
        return process

    yield start
    for process in started:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()


# --- 8: the links name the server gunicorn serves -----------------------------------------


def migrated_sqlite(tmp_path: Path) -> str:
    """A SQLite database as `make run` leaves it: migrated, seeded, with a signing key."""
    from flask_migrate import upgrade

    url = f"sqlite:///{tmp_path / 'accounts.sqlite3'}"
    app = create_app({"SQLALCHEMY_DATABASE_URI": url, "REDIS_URL": None})
    with app.app_context():
        upgrade()
        seed_groups()
        ensure_key()
        db.engine.dispose()
    return url


def test_the_emailed_link_and_the_tokens_issuer_follow_gunicorn_bind(
    tmp_path: Path, mailbox: Mailbox, smtp_server: SMTPServer, processes: Callable[..., Any]
) -> None:
    """The README offers GUNICORN_BIND to move the port; with PUBLIC_BASE_URL left unset (as
    `.env.example` leaves it), the link in the email opens this server, not port 8000."""
    port = free_port()
    project = tmp_path / "project"
    project.mkdir()
    (project / ".env").write_text(
        (ROOT / ".env.example").read_text()
        + f"DATABASE_URL={migrated_sqlite(tmp_path)}\n"
        + f"MAIL_SERVER=127.0.0.1\nMAIL_PORT={smtp_server.port}\n"
        + f"GUNICORN_BIND=127.0.0.1:{port}\n"
    )
    log = tmp_path / "gunicorn.log"
    gunicorn = processes(
        [str(BIN / "gunicorn"), "-c", str(ROOT / "gunicorn.conf.py"), "wsgi:app"],
        cwd=project,
        env=operator_environment(dotenv=True, PYTHONPATH=str(ROOT)),
        log=log,
    )
    server = f"http://127.0.0.1:{port}"
    wait_until_it_answers(f"{server}/health", gunicorn, log)

    email = "moved@example.com"
    assert post(f"{server}/auth/register", {"email": email, "password": PASSWORD})[0] == 201
    link = mailbox.last_link(email)
    assert link.startswith(f"http://localhost:{port}/auth/activate?token="), link
    status, page = get(link)  # the link reaches this very server
    assert status == 200 and "Activate your account" in page
    token = mailbox.last_token(email)
    assert post(f"{server}/auth/activate", {"token": token})[0] == 200

    status, tokens = post(f"{server}/auth/login", {"email": email, "password": PASSWORD})
    assert status == 200, tokens
    assert claims(tokens["access_token"])["iss"] == f"http://localhost:{port}"
    status, _ = post(f"{server}/auth/logout", {"refresh_token": tokens["refresh_token"]})
    assert status == 204  # and the server accepts the tokens it issued


@pytest.mark.parametrize(
    ("settings", "base_url"),
    [
        ({}, "http://localhost:8000"),  # gunicorn's own default bind, 127.0.0.1:8000
        ({"GUNICORN_BIND": "127.0.0.1:8001"}, "http://localhost:8001"),
        ({"GUNICORN_BIND": "0.0.0.0:8001"}, "http://localhost:8001"),
        ({"GUNICORN_BIND": "[::]:8001"}, "http://localhost:8001"),
        ({"GUNICORN_BIND": "[::1]:8001"}, "http://localhost:8001"),
        ({"GUNICORN_BIND": "localhost:8001"}, "http://localhost:8001"),
        # An address of the network: the links are for the other machines that reach it.
        ({"GUNICORN_BIND": "192.0.2.10:8001"}, "http://192.0.2.10:8001"),
        ({"GUNICORN_BIND": "127.0.0.1"}, "http://localhost:8000"),  # gunicorn's default port
        ({"GUNICORN_BIND": "unix:/run/accounts.sock"}, "http://localhost:8000"),
        # Said outright, it is kept.
        (
            {"GUNICORN_BIND": "0.0.0.0:8001", "PUBLIC_BASE_URL": "https://accounts.example/"},
            "https://accounts.example",
        ),
        # Production keeps the contract's value: behind a proxy the bind says nothing of it.
        ({"APP_ENV": "production", "GUNICORN_BIND": "0.0.0.0:9000"}, "http://localhost:8000"),
    ],
)
def test_public_base_url_in_development_is_derived_from_the_bind(
    tmp_path: Path, settings: dict[str, str], base_url: str
) -> None:
    assert load_config(str(tmp_path), env=settings)["PUBLIC_BASE_URL"] == base_url


# --- 9: a database that does not exist ----------------------------------------------------


def make(target: str, *variables: str) -> list[str]:
    """`make <target>`. The virtual environment is the one running these tests: make must not
    install it again, whatever the files' dates say (-o: take the stamp as up to date)."""
    return ["make", "--no-print-directory", "-o", ".venv/.installed", target, *variables]


@pytest.fixture
def missing_database(postgres_databases: PostgresDatabases) -> tuple[str, str]:
    """The name and URL (as the README writes it) of a database of this run's own that does
    not exist; dropped at the end of the run if something created it."""
    name = f"{PG_DATABASE}_missing_{secrets.token_hex(3)}"
    server = sa.create_engine(f"{PG_SERVER_URL}/postgres", connect_args={"connect_timeout": 3})
    try:
        with server.connect() as conn:
            exists = conn.scalar(
                sa.text("SELECT count(*) FROM pg_database WHERE datname = :name"), {"name": name}
            )
    except sa.exc.OperationalError as exc:
        unavailable("PostgreSQL", exc)
    finally:
        server.dispose()
    assert exists == 0
    postgres_databases.created.append(name)
    url = f"{PG_SERVER_URL}/{name}".replace("postgresql+psycopg2://", "postgresql://", 1)
    return name, url


def assert_one_line_naming(result_stderr: str, name: str) -> None:
    """One line: the database, and the command that creates it on that server."""
    assert "Traceback" not in result_stderr, result_stderr[-3000:]
    lines = [line for line in result_stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result_stderr[-3000:]
    assert f'database "{name}" does not exist' in lines[0]
    server = urlsplit(PG_SERVER_URL)  # by default postgres@127.0.0.1:5432
    createdb = f"createdb -h {server.hostname} -p {server.port} -U {server.username} {name}"
    assert f"create it with `{createdb}`" in lines[0]


@pytest.mark.parametrize(
    "command",
    [
        ("db", "upgrade"),
        ("seed-groups",),
        ("keys", "ensure"),
        ("create-admin", "--email", "boss@example.com", "--password", PASSWORD),
        ("cleanup-tokens",),
    ],
)
def test_every_flask_command_on_a_database_not_created_says_so_in_one_line(
    missing_database: tuple[str, str], command: tuple[str, ...]
) -> None:
    name, url = missing_database
    result = subprocess.run(
        [str(BIN / "flask"), "--app", "wsgi", *command],
        cwd=ROOT,
        env=operator_environment(DATABASE_URL=url),
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
    )
    assert result.returncode == 1, result.stdout + result.stderr
    assert_one_line_naming(result.stderr, name)


def test_gunicorn_on_a_database_not_created_stops_with_one_line(
    missing_database: tuple[str, str], tmp_path: Path
) -> None:
    name, url = missing_database
    gunicorn = subprocess.Popen(
        [str(BIN / "gunicorn"), "-c", str(ROOT / "gunicorn.conf.py"), "wsgi:app"],
        cwd=tmp_path,
        env=operator_environment(
            DATABASE_URL=url, GUNICORN_BIND=f"127.0.0.1:{free_port()}", PYTHONPATH=str(ROOT)
        ),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        _, stderr = gunicorn.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        gunicorn.kill()
        gunicorn.communicate()
        pytest.fail("gunicorn started serving a database that does not exist")
    assert gunicorn.returncode == 1
    assert_one_line_naming(stderr, name)


def test_make_run_creates_the_database_in_development(
    missing_database: tuple[str, str], tmp_path: Path, processes: Callable[..., Any]
) -> None:
    """`DATABASE_URL=…/accounts make run`, as the README suggests, before any `createdb`."""
    name, url = missing_database
    port = free_port()
    log = tmp_path / "make-run.log"
    run = processes(
        make("run"),
        cwd=ROOT,
        env=operator_environment(DATABASE_URL=url, GUNICORN_BIND=f"127.0.0.1:{port}"),
        log=log,
    )
    # Ready: the database exists, is migrated to the head, and answers.
    wait_until_it_answers(f"http://127.0.0.1:{port}/health/ready", run, log)
    assert f'created the database "{name}"' in log.read_text()


# --- 10: a database that answers but was never migrated -----------------------------------


@pytest.fixture
def unmigrated_app(
    app_factory: Callable[..., Flask],
    database_url: str,
    tmp_path: Path,
    make_postgres_database: Callable[[str], str],
) -> Flask:
    """An app on an empty database of the run's kind: it exists and answers, no table."""
    app_factory()  # the first app built is the one whose database is emptied after the test
    if database_url.startswith("sqlite"):
        empty = f"sqlite:///{tmp_path / 'empty.sqlite3'}"
    else:
        empty = make_postgres_database("unmigrated")
    return app_factory(SQLALCHEMY_DATABASE_URI=empty)


NOT_MIGRATED = (
    "The service's database is not ready (its schema is not migrated); "
    "retry after the time given in Retry-After."
)


def test_an_unmigrated_database_is_not_ready_rather_than_not_answering(
    unmigrated_app: Flask, caplog: pytest.LogCaptureFixture
) -> None:
    client = unmigrated_app.test_client()
    caplog.set_level(logging.WARNING, logger="app")
    credentials = {"email": "early@example.com", "password": PASSWORD}
    for path in ("/auth/register", "/auth/login"):
        response = client.post(path, json=credentials)
        body = assert_problem(response, 503)
        assert body["detail"] == NOT_MIGRATED, path
        assert response.headers["Retry-After"] == "5"
    logged = [
        JSONFormatter().format(record)
        for record in caplog.records
        if record.getMessage().startswith("database_")
    ]
    assert len(logged) == 2, logged
    for line in logged:
        entry = json.loads(line)
        assert entry["event"] == "database_not_migrated"
        assert entry["action"] == "run `flask --app wsgi db upgrade`"
        assert entry["reason"]  # the database's own words: the table it lacks


# --- 11: every process reads .env the same way -------------------------------------------


def checkout_with_dotenv(tmp_path: Path, dotenv: str) -> Path:
    """A checkout of the project of the operator's own, with their `.env`: `make` reads the
    `.env` of the directory it runs in, and the tests must never write the repository's."""
    checkout = tmp_path / "checkout"
    checkout.mkdir()
    ignore = shutil.ignore_patterns("__pycache__", "instance")
    for name in ("app", "migrations"):
        shutil.copytree(ROOT / name, checkout / name, ignore=ignore)
    for name in ("Makefile", "wsgi.py", "gunicorn.conf.py", "pyproject.toml", "requirements.lock"):
        shutil.copy2(ROOT / name, checkout / name)
    (checkout / ".venv").symlink_to(BIN.parent)
    (checkout / ".env").write_text(dotenv)
    return checkout


def test_make_dashboard_watches_the_redis_named_in_dotenv(
    tmp_path: Path, redis_url: str, processes: Callable[..., Any]
) -> None:
    Queue(QUEUE_NAME, connection=Redis.from_url(redis_url)).enqueue(send_outbox_email, 1)
    checkout = checkout_with_dotenv(tmp_path, f"REDIS_URL={redis_url}\n")
    port = free_port()
    log = tmp_path / "dashboard.log"
    dashboard = processes(
        make("dashboard", f"DASHBOARD_PORT={port}"),
        cwd=checkout,
        env=operator_environment(dotenv=True),
        log=log,
    )
    wait_until_it_answers(f"http://127.0.0.1:{port}/", dashboard, log)
    status, page = get(f"http://127.0.0.1:{port}/0/data/queues.json")
    assert status == 200, page
    queues = {queue["name"]: queue["count"] for queue in json.loads(page)["queues"]}
    assert queues.get(QUEUE_NAME) == 1, queues


def test_make_run_starts_the_workers_web_concurrency_asks_for_in_dotenv(
    tmp_path: Path, processes: Callable[..., Any]
) -> None:
    port = free_port()
    checkout = checkout_with_dotenv(
        tmp_path, f"GUNICORN_BIND=127.0.0.1:{port}\nWEB_CONCURRENCY=3\n"
    )
    log = tmp_path / "make-run.log"
    run = processes(make("run"), cwd=checkout, env=operator_environment(dotenv=True), log=log)
    wait_until_it_answers(f"http://127.0.0.1:{port}/health", run, log)
    deadline = time.monotonic() + TIMEOUT
    while log.read_text().count("Booting worker with pid") < 3:
        assert time.monotonic() < deadline, log.read_text()
        time.sleep(0.2)


@pytest.mark.parametrize(
    ("settings", "workers", "threads"),
    [
        # Without Redis the rate limits are counted in each process's memory: one process,
        # with threads, keeps a single count (what `make run` always did).
        ({}, 1, 4),
        ({"WEB_CONCURRENCY": "3"}, 3, 4),
        ({"GUNICORN_THREADS": "2"}, 1, 2),
        ({"REDIS_URL": "redis://127.0.0.1:6379/0"}, None, 1),
        ({"REDIS_URL": "redis://127.0.0.1:6379/0", "WEB_CONCURRENCY": "2"}, 2, 1),
    ],
)
def test_gunicorns_workers_and_threads_by_default_and_when_asked(
    monkeypatch: pytest.MonkeyPatch, settings: dict[str, str], workers: int | None, threads: int
) -> None:
    for name in ("REDIS_URL", "WEB_CONCURRENCY", "GUNICORN_THREADS", "APP_ENV", "DATABASE_URL"):
        monkeypatch.delenv(name, raising=False)
    for name, value in settings.items():
        monkeypatch.setenv(name, value)
    conf = runpy.run_path(str(ROOT / "gunicorn.conf.py"))
    cores = len(os.sched_getaffinity(0))
    assert conf["workers"] == (workers if workers is not None else min(2 * cores + 1, 8))
    assert conf["threads"] == threads
