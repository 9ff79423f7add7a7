"""The app under test, its jobs and its `flask` commands, and what it stored and logged."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import threading
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, TypeVar

import sqlalchemy as sa
from flask import Flask

from app import create_app
from app.core.db import db
from tests.support.services import PROCESS_TIMEOUT

R = TypeVar("R")


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


# --- jobs ---------------------------------------------------------------------------------


def run_worker(app: Flask) -> None:
    """The service's own RQ worker in burst mode, in this process (as `flask rq worker` runs
    its jobs: no fork), so a test sees what it did as soon as it returns, and a travelled
    clock reaches RQ's scheduler. It runs the scheduler first, as the `flask rq worker`
    process does, so retries that are due go back to the queue; it holds one SMTP
    connection for its jobs and QUITs it when it returns."""
    from app.courier.worker import run_worker as work

    work(app, burst=True)


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
    from app.identity.models import User

    with app.app_context():
        value = db.session.scalar(sa.select(User.password_hash).where(User.email == email))
    assert value is not None
    return value


def service_log_records(records: Iterable[logging.LogRecord]) -> list[logging.LogRecord]:
    """The records of the service's process: aiosmtpd ("mail.log") is the test's own mail
    server, the receiving end, and logs the emails it is sent, links and all, by design."""
    return [record for record in records if not record.name.startswith("mail.log")]


# --- processes ----------------------------------------------------------------------------

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


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


def twice_at_once(
    app: Flask, job: Callable[[], R], timeout: float = 60
) -> tuple[list[R], list[BaseException]]:
    """`job` run by two threads of `app`, released together: what each returned, and what
    each raised."""
    start = threading.Barrier(2)
    results: list[R] = []
    errors: list[BaseException] = []

    def run() -> None:
        with app.app_context():
            start.wait()
            try:
                results.append(job())
            except BaseException as exc:
                errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=timeout)
    return results, errors
