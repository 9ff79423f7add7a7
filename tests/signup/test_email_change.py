"""Email change: the password proves the person, a link proves the new mailbox, the old one is
told, and the change cannot be used to learn, take or keep an address someone else holds.

Each attack is sent as the attacker sends it (a stolen access token, a replayed or outdated
link, a race for the address) against the real stack: the app with its database and the
real SMTP server."""

from __future__ import annotations

import base64
import hashlib
import logging
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
import sqlalchemy as sa
import time_machine
from flask import Flask
from flask.testing import FlaskClient

from app.core.db import db, utcnow
from app.identity.models import User
from app.links.models import EmailChangeToken
from tests.support.apps import service_log_records, stored_values
from tests.support.http import (
    PASSWORD,
    USER_KEYS,
    Accounts,
    assert_401,
    assert_problem,
    at_once,
    bearer,
    login,
    me,
    refresh,
)
from tests.support.mail import Mailbox

OLD, NEW = "ada@example.com", "ada.lovelace@example.com"
NEW_PASSWORD = "marble lantern exquisite harbour"


def change(client: FlaskClient, access: str, new_email: str, password: str = PASSWORD) -> Any:
    return client.post(
        "/auth/email/change",
        json={"new_email": new_email, "password": password},
        headers=bearer(access),
    )


def confirm(client: FlaskClient, token: str) -> Any:
    return client.post("/auth/email/confirm", json={"token": token})


def asked(client: FlaskClient, accounts: Accounts, new_email: str = NEW) -> dict[str, Any]:
    """An active account at OLD that asked to move to `new_email`; returns its token pair."""
    pair = accounts.active_user(OLD)
    response = change(client, pair["access_token"], new_email)
    assert response.status_code == 202, response.json
    return pair


def pending_changes(app: Flask) -> int:
    with app.app_context():
        return db.session.scalar(sa.select(sa.func.count()).select_from(EmailChangeToken)) or 0


def emails(app: Flask) -> list[str]:
    with app.app_context():
        return sorted(db.session.scalars(sa.select(User.email)))


def text_and_html(mailbox: Mailbox, address: str) -> str:
    (message,) = mailbox.to(address)
    html = message.get_body(preferencelist=("html",))
    assert html is not None
    return Mailbox.text(message) + str(html.get_content())


class TestRequest:
    def test_the_link_goes_to_the_new_address_and_a_notice_without_one_to_the_old(
        self, client: FlaskClient, accounts: Accounts, mailbox: Mailbox
    ) -> None:
        pair = accounts.active_user(OLD)
        mailbox.clear()
        response = change(client, pair["access_token"], " Ada.Lovelace@Example.COM ")
        assert response.status_code == 202
        assert set(response.json) == {"detail"}
        link = mailbox.last_link(NEW)
        assert link.startswith("http://cinema.test/auth/email/confirm?token=")
        assert "24 hours" in Mailbox.text(mailbox.to(NEW)[0])
        notice = text_and_html(mailbox, OLD)
        assert NEW in notice
        assert "http" not in notice and "href" not in notice
        assert link.split("token=", 1)[1] not in notice
        # Nothing changes before the link is used.
        assert me(client, pair["access_token"]).json["email"] == OLD
        assert login(client, OLD).status_code == 200

    def test_the_link_has_256_bits_and_only_its_sha256_is_stored(
        self, client: FlaskClient, accounts: Accounts, mailbox: Mailbox, app: Flask
    ) -> None:
        asked(client, accounts)
        secret = mailbox.last_token(NEW)
        assert len(base64.urlsafe_b64decode(secret + "=" * (-len(secret) % 4))) >= 32
        with app.app_context():
            stored = db.session.scalars(sa.select(EmailChangeToken.token_hash)).all()
        assert stored == [hashlib.sha256(secret.encode()).hexdigest()]
        assert secret not in "\n".join(stored_values(app))

    def test_a_wrong_password_is_400_even_when_the_address_is_taken(
        self, client: FlaskClient, accounts: Accounts, mailbox: Mailbox, app: Flask
    ) -> None:
        """The attack: a stolen access token without the password probes which addresses
        have accounts. Taken or free, the answer is the same 400 and nothing is sent."""
        pair = accounts.active_user(OLD)
        accounts.active_user("taken@example.com")
        mailbox.clear()
        taken = assert_problem(change(client, pair["access_token"], "taken@example.com", "x"), 400)
        free = assert_problem(change(client, pair["access_token"], "free@example.com", "x"), 400)
        assert taken == free
        assert taken["title"] == "Wrong Password"
        assert mailbox.messages == []
        assert pending_changes(app) == 0

    def test_an_address_held_by_another_account_is_409_after_the_right_password(
        self, client: FlaskClient, accounts: Accounts, mailbox: Mailbox, app: Flask
    ) -> None:
        pair = accounts.active_user(OLD)
        accounts.active_user("taken@example.com")
        mailbox.clear()
        body = assert_problem(change(client, pair["access_token"], "Taken@example.com"), 409)
        assert "already exists" in body["detail"]
        assert mailbox.messages == []
        assert pending_changes(app) == 0

    @pytest.mark.parametrize("address", ["not-an-email", "ada@localhost", "a%b@example.com"])
    def test_an_invalid_address_is_422_by_the_one_email_rule(
        self, client: FlaskClient, accounts: Accounts, mailbox: Mailbox, address: str
    ) -> None:
        pair = accounts.active_user(OLD)
        mailbox.clear()
        body = assert_problem(change(client, pair["access_token"], address), 422)
        assert body["errors"]["new_email"]
        assert mailbox.messages == []

    def test_the_current_address_is_422(
        self, client: FlaskClient, accounts: Accounts, mailbox: Mailbox
    ) -> None:
        pair = accounts.active_user(OLD)
        mailbox.clear()
        body = assert_problem(change(client, pair["access_token"], "ADA@example.com"), 422)
        assert body["errors"]["new_email"] == ["This is already your email address."]
        assert mailbox.messages == []

    def test_an_access_token_is_required(self, client: FlaskClient) -> None:
        response = client.post("/auth/email/change", json={"new_email": NEW, "password": PASSWORD})
        assert_401(response)

    @pytest.mark.parametrize(
        "body",
        [
            {},
            {"new_email": NEW},
            {"password": PASSWORD},
            {"new_email": NEW, "password": PASSWORD, "is_active": False},
        ],
    )
    def test_a_bad_body_is_422_and_sends_nothing(
        self, client: FlaskClient, accounts: Accounts, mailbox: Mailbox, body: dict[str, Any]
    ) -> None:
        pair = accounts.active_user(OLD)
        mailbox.clear()
        response = client.post(
            "/auth/email/change", json=body, headers=bearer(pair["access_token"])
        )
        assert_problem(response, 422)
        assert mailbox.messages == []


class TestConfirm:
    def test_confirms_once_with_the_user_object_then_the_link_is_400(
        self, client: FlaskClient, accounts: Accounts, mailbox: Mailbox
    ) -> None:
        asked(client, accounts)
        token = mailbox.last_token(NEW)
        response = confirm(client, token)
        assert response.status_code == 200
        assert set(response.json) == USER_KEYS
        assert response.json["email"] == NEW
        assert response.json["is_active"] is True
        body = assert_problem(confirm(client, token), 400)  # used twice
        assert "invalid, expired or already used" in body["detail"]
        assert "/auth/email/change" in body["detail"]

    def test_login_with_the_new_email_works_and_the_old_one_no_longer_does(
        self, client: FlaskClient, accounts: Accounts, mailbox: Mailbox
    ) -> None:
        asked(client, accounts)
        assert confirm(client, mailbox.last_token(NEW)).status_code == 200
        assert login(client, NEW).status_code == 200
        assert_401(login(client, OLD))

    def test_an_older_link_is_400_after_a_newer_request(
        self, client: FlaskClient, accounts: Accounts, mailbox: Mailbox
    ) -> None:
        pair = asked(client, accounts)
        older = mailbox.last_token(NEW)
        assert change(client, pair["access_token"], "ada.l@example.com").status_code == 202
        assert_problem(confirm(client, older), 400)
        assert confirm(client, mailbox.last_token("ada.l@example.com")).status_code == 200
        assert me(client, pair["access_token"]).json["email"] == "ada.l@example.com"

    def test_other_logins_end_and_the_one_that_asked_keeps_working(
        self, client: FlaskClient, accounts: Accounts, mailbox: Mailbox
    ) -> None:
        """The attack: a thief's login stays signed in after the owner moves the account."""
        asking = asked(client, accounts)
        thief = accounts.login(OLD)
        assert confirm(client, mailbox.last_token(NEW)).status_code == 200
        assert_401(me(client, thief["access_token"]))
        assert_401(refresh(client, thief["refresh_token"]))
        assert me(client, asking["access_token"]).json["email"] == NEW
        assert refresh(client, asking["refresh_token"]).status_code == 200

    def test_a_link_confirmed_after_the_asking_login_ended_ends_them_all(
        self, client: FlaskClient, accounts: Accounts, mailbox: Mailbox
    ) -> None:
        asking = asked(client, accounts)
        other = accounts.login(OLD)
        logged_out = client.post(
            "/auth/logout",
            json={"refresh_token": asking["refresh_token"]},
            headers=bearer(asking["access_token"]),
        )
        assert logged_out.status_code == 204
        assert confirm(client, mailbox.last_token(NEW)).status_code == 200
        assert_401(me(client, other["access_token"]))
        assert_401(me(client, asking["access_token"]))

    def test_an_expired_link_is_400_saying_so(
        self, client: FlaskClient, accounts: Accounts, mailbox: Mailbox, app: Flask
    ) -> None:
        asked(client, accounts)
        token = mailbox.last_token(NEW)
        with time_machine.travel(utcnow() + timedelta(hours=24, seconds=1)):
            body = assert_problem(confirm(client, token), 400)
        assert "expired" in body["detail"]
        assert "/auth/email/change" in body["detail"]
        assert emails(app) == [OLD]

    def test_an_unknown_link_is_400(self, client: FlaskClient) -> None:
        body = assert_problem(confirm(client, "x" * 43), 400)
        assert "/auth/email/change" in body["detail"]

    def test_an_address_taken_in_the_meantime_is_409_and_changes_nothing(
        self, client: FlaskClient, accounts: Accounts, mailbox: Mailbox, app: Flask
    ) -> None:
        """The attack: someone registers and activates the address between the request and
        the confirmation. The unique index decides; the account keeps its address."""
        pair = asked(client, accounts)
        token = mailbox.last_token(NEW)
        other = accounts.login(OLD)
        accounts.active_user(NEW, NEW_PASSWORD)
        body = assert_problem(confirm(client, token), 409)
        assert "already exists" in body["detail"]
        assert emails(app) == [NEW, OLD]
        assert me(client, other["access_token"]).json["email"] == OLD  # no login ended
        assert me(client, pair["access_token"]).status_code == 200
        assert login(client, OLD).status_code == 200
        assert login(client, NEW, NEW_PASSWORD).status_code == 200
        assert pending_changes(app) == 1  # the link is not spent: nothing changed
        assert_problem(confirm(client, token), 409)

    def test_a_never_activated_registration_of_the_address_gives_way(
        self, client: FlaskClient, accounts: Accounts, mailbox: Mailbox, app: Flask
    ) -> None:
        """Whoever registers an address first may not own it: the link proved the mailbox,
        the pending registration never did, so it is dropped with its password and links."""
        accounts.register(NEW, NEW_PASSWORD)
        squatter_link = mailbox.last_token(NEW)
        pair = accounts.active_user(OLD)
        assert change(client, pair["access_token"], NEW).status_code == 202
        assert confirm(client, mailbox.last_token(NEW)).status_code == 200
        assert emails(app) == [NEW]
        assert_problem(client.post("/auth/activate", json={"token": squatter_link}), 400)
        assert_401(login(client, NEW, NEW_PASSWORD))
        assert login(client, NEW).status_code == 200

    def test_a_new_password_cancels_the_change(
        self, client: FlaskClient, accounts: Accounts, mailbox: Mailbox, app: Flask
    ) -> None:
        """The notice tells the owner that changing the password cancels a change they did
        not ask for: the thief's link dies with the old password."""
        pair = asked(client, accounts)
        token = mailbox.last_token(NEW)
        changed = client.post(
            "/auth/password/change",
            json={"old_password": PASSWORD, "new_password": NEW_PASSWORD},
            headers=bearer(pair["access_token"]),
        )
        assert changed.status_code == 204
        assert_problem(confirm(client, token), 400)
        assert emails(app) == [OLD]

    def test_the_old_address_gets_no_further_mail_and_its_reset_link_dies(
        self, client: FlaskClient, accounts: Accounts, mailbox: Mailbox
    ) -> None:
        asked(client, accounts)
        client.post("/auth/password/forgot", json={"email": OLD})
        reset_link = mailbox.last_token(OLD)
        assert confirm(client, mailbox.last_token(NEW)).status_code == 200
        mailbox.clear()
        assert client.post("/auth/password/forgot", json={"email": OLD}).status_code == 202
        assert client.post("/auth/password/forgot", json={"email": NEW}).status_code == 202
        assert mailbox.to(OLD) == []
        assert len(mailbox.to(NEW)) == 1
        reset = client.post(
            "/auth/password/reset", json={"token": reset_link, "new_password": NEW_PASSWORD}
        )
        assert_problem(reset, 400)

    def test_an_account_deactivated_since_the_request_changes_nothing(
        self, client: FlaskClient, accounts: Accounts, mailbox: Mailbox, app: Flask
    ) -> None:
        asked(client, accounts)
        with app.app_context():
            user = db.session.scalar(sa.select(User).where(User.email == OLD))
            assert user is not None
            user.deactivate()
            db.session.commit()
        assert_problem(confirm(client, mailbox.last_token(NEW)), 400)
        assert emails(app) == [OLD]

    def test_the_request_and_the_change_are_security_events(
        self, client: FlaskClient, accounts: Accounts, mailbox: Mailbox
    ) -> None:
        pair = asked(client, accounts)
        assert confirm(client, mailbox.last_token(NEW)).status_code == 200
        page = client.get("/auth/me/events", headers=bearer(pair["access_token"])).json
        assert [item["type"] for item in page["items"]][:2] == [
            "email_changed",
            "email_change_requested",
        ]

    def test_no_link_secret_reaches_a_log_line(
        self,
        client: FlaskClient,
        accounts: Accounts,
        mailbox: Mailbox,
        caplog: pytest.LogCaptureFixture,
    ) -> None:
        caplog.set_level(logging.DEBUG)
        asked(client, accounts)
        token = mailbox.last_token(NEW)
        confirm(client, token)
        confirm(client, token)
        records = service_log_records(caplog.records)
        assert any(r.getMessage() == "email_changed" for r in records)
        for record in records:
            assert token not in f"{record.getMessage()} {record.__dict__!r}"

    def test_one_link_used_twice_at_once_changes_once(
        self, app: Flask, client: FlaskClient, accounts: Accounts, mailbox: Mailbox
    ) -> None:
        asked(client, accounts)
        token = mailbox.last_token(NEW)
        statuses = at_once(app, [lambda c: confirm(c, token)] * 2)
        assert statuses == [200, 400]

    @pytest.mark.postgres("SQLite runs one writer at a time: no race to decide")
    def test_two_accounts_racing_for_one_address_get_one_200_and_one_409(
        self, app: Flask, client: FlaskClient, accounts: Accounts, mailbox: Mailbox
    ) -> None:
        links = []
        for owner in ("one@example.com", "two@example.com"):
            pair = accounts.active_user(owner)
            assert change(client, pair["access_token"], NEW).status_code == 202
            links.append(mailbox.last_token(NEW))
        statuses = at_once(app, [lambda c, t=t: confirm(c, t) for t in links])
        assert statuses == [200, 409]
        assert NEW in emails(app)


class TestPage:
    def test_get_shows_a_page_that_spends_nothing(
        self, client: FlaskClient, accounts: Accounts, mailbox: Mailbox, app: Flask
    ) -> None:
        asked(client, accounts)
        link = mailbox.last_link(NEW)
        token = mailbox.last_token(NEW)
        for _ in range(2):  # a mail scanner opening the link, then the person
            page = client.get(link.removeprefix("http://cinema.test"))
            assert page.status_code == 200
            assert page.mimetype == "text/html"
            assert page.headers["Referrer-Policy"] == "no-referrer"
            assert "default-src 'none'" in page.headers["Content-Security-Policy"]
            assert token in page.get_data(as_text=True)
        assert emails(app) == [OLD]
        assert confirm(client, token).status_code == 200

    def test_the_token_is_escaped_in_the_page(self, client: FlaskClient) -> None:
        page = client.get('/auth/email/confirm?token="><script>alert(1)</script>')
        assert page.status_code == 200
        assert "<script>alert(1)" not in page.get_data(as_text=True)

    def test_get_without_a_token_says_what_to_do(self, client: FlaskClient) -> None:
        page = client.get("/auth/email/confirm")
        assert page.status_code == 200
        assert "Open the link from your email again" in page.get_data(as_text=True)


def test_the_lifetime_follows_activation_token_ttl(
    app_factory: Callable[..., Flask], mailbox: Mailbox
) -> None:
    client = app_factory(ACTIVATION_TOKEN_TTL=3600).test_client()
    asked(client, Accounts(client, mailbox))
    assert "1 hour" in Mailbox.text(mailbox.to(NEW)[0])
    with time_machine.travel(utcnow() + timedelta(seconds=3601)):
        assert "expired" in confirm(client, mailbox.last_token(NEW)).json["detail"]
