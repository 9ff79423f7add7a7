"""Words a user or an operator reads, checked against what the service does, one section
per place they are read."""

from __future__ import annotations

from datetime import timedelta

import time_machine
from flask import Flask
from flask.testing import FlaskClient

from app.models import utcnow
from tests.helpers import Accounts, Mailbox, assert_problem

# --- the emailed links ---------------------------------------------------------------------

EXPIRED_OR_USED = "This link is invalid, expired or already used."


def expire_and_clean_up(app: Flask) -> None:
    """The clean-up the scheduler runs every hour, run now: expired links are deleted."""
    result = app.test_cli_runner().invoke(args=["cleanup-tokens"])
    assert result.exit_code == 0, result.output


def test_an_activation_link_expired_and_cleaned_up_says_links_expire_and_offers_a_new_one(
    app: Flask, client: FlaskClient, accounts: Accounts, mailbox: Mailbox
) -> None:
    accounts.register("slow@example.com")
    token = mailbox.last_token("slow@example.com")
    with time_machine.travel(utcnow() + timedelta(hours=24, minutes=1)):
        expire_and_clean_up(app)
        body = assert_problem(client.post("/auth/activate", json={"token": token}), 400)
    assert body["detail"] == (
        f"{EXPIRED_OR_USED} Ask for a new activation link with POST /auth/activate/resend."
    )
    page = client.get(f"/auth/activate?token={token}").get_data(as_text=True)
    assert EXPIRED_OR_USED in page  # what the page shows when its button gets that 400
    assert "Send me a new link" in page


def test_a_reset_link_expired_and_cleaned_up_says_links_expire_and_offers_a_new_one(
    app: Flask, client: FlaskClient, accounts: Accounts, mailbox: Mailbox
) -> None:
    accounts.active_user("forgetful@example.com")
    sent = client.post("/auth/password/forgot", json={"email": "forgetful@example.com"})
    assert sent.status_code == 202
    token = mailbox.last_token("forgetful@example.com")
    with time_machine.travel(utcnow() + timedelta(hours=24, minutes=1)):
        expire_and_clean_up(app)
        response = client.post(
            "/auth/password/reset", json={"token": token, "new_password": "quiet harbour velvet"}
        )
    body = assert_problem(response, 400)
    assert body["detail"] == (
        f"{EXPIRED_OR_USED} Ask for a new reset link with POST /auth/password/forgot."
    )
    page = client.get(f"/auth/password/reset?token={token}").get_data(as_text=True)
    assert EXPIRED_OR_USED in page
    assert "Send me a new reset link" in page


def test_a_spent_link_says_the_same(client: FlaskClient, accounts: Accounts) -> None:
    accounts.register("twice@example.com")
    token = accounts.mailbox.last_token("twice@example.com")
    assert client.post("/auth/activate", json={"token": token}).status_code == 200
    body = assert_problem(client.post("/auth/activate", json={"token": token}), 400)
    assert body["detail"].startswith(EXPIRED_OR_USED)


# --- /docs ---------------------------------------------------------------------------------


def test_docs_say_who_gets_a_reset_link(client: FlaskClient) -> None:
    forgot = client.get("/openapi.json").json["paths"]["/auth/password/forgot"]["post"]
    words = f"{forgot['summary']} {forgot.get('description', '')}"
    assert "to an active account" not in words
    assert "never activated" in words  # they get a link too, and using it activates them
    assert "deactivated" in words  # an account an admin deactivated gets none
