"""Rotating SECRET_KEY with two-factor on: the TOTP secrets are encrypted with a key derived
from it, so a new SECRET_KEY cannot read them until `flask mfa reencrypt` encrypts them again
with it (README, "Rotating SECRET_KEY"); recovery codes keep working, as their hashes are
keyed by the secret itself."""

from __future__ import annotations

import logging
import secrets
from pathlib import Path

import pytest
from flask import Flask

from app.core.db import db
from tests.support.apps import make_app
from tests.support.http import Accounts
from tests.support.mail import Mailbox
from tests.support.mfa import enrol, mfa_token_of, second_step, step_clock

EMAIL = "ada@example.com"


@pytest.fixture(autouse=True)
def _errors_reach_caplog(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.ERROR, logger="app.web.problems")


def reencrypt(app: Flask, previous_secret_key: str) -> tuple[int, str]:
    result = app.test_cli_runner().invoke(
        args=["mfa", "reencrypt"], env={"PREVIOUS_SECRET_KEY": previous_secret_key}
    )
    return result.exit_code, result.output


def test_a_new_secret_key_reads_the_totp_secrets_once_they_are_reencrypted(
    app: Flask, tmp_path: Path, mailbox: Mailbox, caplog: pytest.LogCaptureFixture
) -> None:
    old_key = app.config["SECRET_KEY"]
    other = make_app(
        app.config["SQLALCHEMY_DATABASE_URI"], tmp_path, 0, SECRET_KEY=secrets.token_urlsafe(48)
    )
    try:
        client = app.test_client()
        pair = Accounts(client, mailbox).active_user(EMAIL)
        # The new SECRET_KEY's signing key, as the runbook makes it (on the real clock: a key
        # made on the test's clock would sign only from then on).
        assert other.test_cli_runner().invoke(args=["keys", "ensure"]).exit_code == 0
        with step_clock() as clock:
            authenticator, codes = enrol(client, pair["access_token"], clock)
            rotated = other.test_client()
            # Deployed with the new key but not yet re-encrypted: the operator is told what to
            # run (in the log, never in the answer).
            refused = second_step(rotated, mfa_token_of(rotated, EMAIL), authenticator.next_code())
            assert refused.status_code == 500
            assert "reencrypt" not in refused.get_data(as_text=True)
            logged = [str(r.exc_info[1]) for r in caplog.records if r.exc_info]
            assert any("flask --app wsgi mfa reencrypt" in message for message in logged)

            assert reencrypt(other, old_key) == (0, "reencrypted: 1\ncurrent: 0\nunreadable: 0\n")
            assert reencrypt(other, old_key) == (0, "reencrypted: 0\ncurrent: 1\nunreadable: 0\n")
            token = mfa_token_of(rotated, EMAIL)
            assert second_step(rotated, token, authenticator.next_code()).status_code == 200
            token = mfa_token_of(rotated, EMAIL)
            assert second_step(rotated, token, codes[0]).status_code == 200

            # The old key reads them no more, and a wrong previous key reads nothing.
            status, output = reencrypt(app, secrets.token_urlsafe(48))
            assert status == 1 and "unreadable: 1" in output
            assert "POST /admin/users/{id}/mfa/reset" in output
    finally:
        # The suite's other apps read keys with the original secret: give them one back.
        assert app.test_cli_runner().invoke(args=["keys", "ensure"]).exit_code == 0
        with other.app_context():
            db.engine.dispose()


def test_the_previous_key_is_asked_for_when_not_in_the_environment(app: Flask) -> None:
    result = app.test_cli_runner().invoke(
        args=["mfa", "reencrypt"], input=f"{app.config['SECRET_KEY']}\n"
    )
    assert result.exit_code == 0, result.output
    assert app.config["SECRET_KEY"] not in result.output  # typed without an echo
    assert "reencrypted: 0" in result.output
