"""What an operator trips over on a first run, one section per mistake. Each test does what
the operator does (`make run`, `make dashboard`, `gunicorn`, the `flask` commands) in a real
process, against real PostgreSQL and Redis, and checks what the operator then sees."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from app import create_app
from app.config import load_config
from app.db import db
from app.keys.service import ensure_key
from app.users import seed_groups
from tests.helpers import (
    BIN,
    PASSWORD,
    ROOT,
    Mailbox,
    SMTPServer,
    claims,
    free_port,
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
