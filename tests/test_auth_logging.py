"""Every auth event is a structured log line; no password, token or hash is ever logged."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable

import pytest
import sqlalchemy as sa
from flask import Flask
from flask.testing import FlaskClient

from app.core.db import db
from app.core.log import JSONFormatter
from app.identity.models import User
from app.links.models import ActivationToken, PasswordResetToken
from app.sessions.models import LoginSession
from tests.support.apps import run_worker, service_log_records
from tests.support.http import PASSWORD, bearer, past_the_refresh_grace
from tests.support.mail import Mailbox

NEW_PASSWORD = "granite pelican lantern mosaic"
WRONG = "a wrong password for sure"
EMAIL = "logged@example.com"


def post(client: FlaskClient, path: str, body: dict, token: str | None = None):
    return client.post(path, json=body, headers=bearer(token) if token else {})


def stored_secrets(app: Flask) -> list[str]:
    """Every hash the database holds: password hashes and token hashes."""
    with app.app_context():
        values = list(db.session.scalars(sa.select(User.password_hash)))
        for model in (ActivationToken, PasswordResetToken):
            values += db.session.scalars(sa.select(model.token_hash))
        for column in (LoginSession.refresh_hash, LoginSession.previous_refresh_hash):
            values += db.session.scalars(sa.select(column).where(column.is_not(None)))
    return values


def journey(app: Flask, mailbox: Mailbox, secrets: list[str]) -> None:
    """The whole sign-up and sign-in journey, each step's status checked; secrets collected."""
    client = app.test_client()

    def worker() -> None:
        run_worker(app)
        secrets.extend(stored_secrets(app))

    secrets += [PASSWORD, NEW_PASSWORD, WRONG]
    assert post(client, "/auth/register", {"email": EMAIL, "password": PASSWORD}).status_code == 201
    worker()
    first_link = mailbox.last_token(EMAIL)
    assert post(client, "/auth/login", {"email": EMAIL, "password": PASSWORD}).status_code == 403
    assert post(client, "/auth/activate/resend", {"email": EMAIL}).status_code == 202
    worker()
    activation = mailbox.last_token(EMAIL)
    secrets += [first_link, activation]
    assert post(client, "/auth/activate", {"token": activation}).status_code == 200
    assert post(client, "/auth/login", {"email": EMAIL, "password": WRONG}).status_code == 401
    unknown = {"email": "nobody@example.com", "password": WRONG}
    assert post(client, "/auth/login", unknown).status_code == 401
    pair = post(client, "/auth/login", {"email": EMAIL, "password": PASSWORD}).json
    rotated = post(client, "/auth/refresh", {"refresh_token": pair["refresh_token"]}).json
    secrets += [*pair.values(), *rotated.values()]
    with past_the_refresh_grace():
        reuse = post(client, "/auth/refresh", {"refresh_token": pair["refresh_token"]})
    assert reuse.status_code == 401
    second = post(client, "/auth/login", {"email": EMAIL, "password": PASSWORD}).json
    secrets += [second["access_token"], second["refresh_token"]]
    logout = {"refresh_token": second["refresh_token"]}
    assert post(client, "/auth/logout", logout, second["access_token"]).status_code == 204
    third = post(client, "/auth/login", {"email": EMAIL, "password": PASSWORD}).json
    secrets += [third["access_token"], third["refresh_token"]]
    change = {"old_password": WRONG, "new_password": NEW_PASSWORD}
    assert post(client, "/auth/password/change", change, third["access_token"]).status_code == 400
    change = {"old_password": PASSWORD, "new_password": NEW_PASSWORD}
    assert post(client, "/auth/password/change", change, third["access_token"]).status_code == 204
    assert post(client, "/auth/password/forgot", {"email": EMAIL}).status_code == 202
    worker()
    reset_token = mailbox.last_token(EMAIL)
    secrets.append(reset_token)
    reset = {"token": reset_token, "new_password": PASSWORD + " again"}
    secrets.append(reset["new_password"])
    assert post(client, "/auth/password/reset", reset).status_code == 204
    worker()


@pytest.fixture
def captured(
    redis_app: Flask, mailbox: Mailbox, caplog: pytest.LogCaptureFixture
) -> Callable[[], tuple[list[logging.LogRecord], list[str]]]:
    """Run the journey inside the test (caplog keeps the records of the test's own phase)."""

    def run() -> tuple[list[logging.LogRecord], list[str]]:
        secrets: list[str] = []
        with caplog.at_level(logging.DEBUG):
            journey(redis_app, mailbox, secrets)
        return service_log_records(caplog.records), secrets

    return run


def audit_lines(records: list[logging.LogRecord]) -> list[dict]:
    formatter = JSONFormatter()
    return [json.loads(formatter.format(r)) for r in records if r.name == "app.audit"]


def test_every_auth_event_is_a_structured_line(captured) -> None:
    records, _ = captured()
    lines = audit_lines(records)
    events = [line["event"] for line in lines]
    for event in (
        "user_registered",
        "login_refused",
        "activation_resent",
        "user_activated",
        "login_failed",
        "login_succeeded",
        "token_refreshed",
        "refresh_token_reuse_detected",
        "logged_out",
        "password_change_failed",
        "password_changed",
        "password_reset_requested",
        "password_reset",
    ):
        assert event in events, f"{event} was not logged"
    assert {line["reason"] for line in lines if line["event"] == "login_failed"} == {
        "unknown_email",
        "wrong_password",
    }
    for line in lines:
        assert line["level"] == "INFO"
        assert line["ip"] == "127.0.0.1"
        if line.get("reason") != "unknown_email":
            assert isinstance(line["user_id"], int)


def test_no_secret_appears_in_any_log_line(captured) -> None:
    records, secrets = captured()
    secrets = [s for s in secrets if isinstance(s, str) and s]
    assert len(secrets) > 20
    formatter = JSONFormatter()
    for record in records:
        rendered = "\n".join(
            [
                formatter.format(record),
                record.getMessage(),
                repr(record.args),
                repr(record.__dict__),
            ]
        )
        for secret in secrets:
            assert secret not in rendered, f"a secret leaked through {record.name}: {rendered}"
        # The email bodies carry the link secrets; no line may quote them, even cut short.
        assert "Open this link" not in rendered, f"{record.name} logs an email body"
