"""Sign-up: registration, the activation email and link, resend; the email-token rules."""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Callable
from datetime import datetime, timedelta

import pytest
import sqlalchemy as sa
import time_machine
from flask import Flask
from flask.testing import FlaskClient

from app.core.db import db, utcnow
from app.identity.models import User
from app.links.models import ActivationToken
from tests.support.apps import run_worker, stored_values
from tests.support.http import PASSWORD, USER_KEYS, Accounts, assert_problem
from tests.support.mail import Mailbox

PROFILE_KEYS = {"first_name", "last_name", "gender", "date_of_birth", "info", "avatar_url"}


def register(client: FlaskClient, email: str, password: str = PASSWORD, **kwargs):
    return client.post("/auth/register", json={"email": email, "password": password}, **kwargs)


def activate(client: FlaskClient, token: str):
    return client.post("/auth/activate", json={"token": token})


def resend(client: FlaskClient, email: str):
    return client.post("/auth/activate/resend", json={"email": email})


class TestRegister:
    def test_201_returns_an_inactive_user_with_a_profile_and_no_secret(
        self, client: FlaskClient
    ) -> None:
        response = register(client, "new@example.com")
        assert response.status_code == 201
        body = response.json
        assert set(body) == USER_KEYS
        assert body["email"] == "new@example.com"
        assert body["is_active"] is False
        assert body["group"] == "USER"
        assert set(body["profile"]) == PROFILE_KEYS
        assert all(value is None for value in body["profile"].values())
        for stamp in (body["created_at"], body["updated_at"]):
            assert datetime.fromisoformat(stamp).utcoffset() == timedelta(0)
        text = response.get_data(as_text=True)
        assert "hash" not in text and "password" not in text and "argon2" not in text

    def test_email_is_trimmed_and_lower_cased(self, client: FlaskClient, app: Flask) -> None:
        body = register(client, "  Mixed.Case@Example.COM ").json
        assert body["email"] == "mixed.case@example.com"
        with app.app_context():
            assert db.session.scalars(sa.select(User.email)).all() == ["mixed.case@example.com"]

    def test_duplicate_is_409_whatever_the_case(
        self, client: FlaskClient, mailbox: Mailbox
    ) -> None:
        assert register(client, "twin@example.com").status_code == 201
        # Once activated: a never-activated account registers again (tests/security).
        assert activate(client, mailbox.last_token("twin@example.com")).status_code == 200
        body = assert_problem(register(client, "TWIN@example.com"), 409)
        assert "already" in body["detail"]
        assert len(mailbox.to("twin@example.com")) == 1  # the refused one sent nothing

    def test_weak_password_is_422_and_sends_nothing(
        self, client: FlaskClient, mailbox: Mailbox, app: Flask
    ) -> None:
        body = assert_problem(register(client, "weak@example.com", "password"), 422)
        assert body["errors"]["password"]
        assert mailbox.to("weak@example.com") == []
        with app.app_context():
            assert db.session.scalar(sa.select(sa.func.count()).select_from(User)) == 0

    def test_invalid_email_is_422(self, client: FlaskClient) -> None:
        body = assert_problem(register(client, "not-an-email"), 422)
        assert body["errors"]["email"]

    @pytest.mark.parametrize(
        "extra", [{"group": "ADMIN"}, {"is_active": True}, {"id": 1}, {"profile": {}}]
    )
    def test_mass_assignment_is_refused(self, client: FlaskClient, extra: dict) -> None:
        response = client.post(
            "/auth/register", json={"email": "sneaky@example.com", "password": PASSWORD, **extra}
        )
        body = assert_problem(response, 422)
        assert set(body["errors"]) == set(extra)
        assert body["errors"][next(iter(extra))] == ["Unknown field."]

    def test_the_activation_email_goes_through_rq_after_the_commit(
        self, redis_app: Flask, mailbox: Mailbox
    ) -> None:
        client = redis_app.test_client()
        assert register(client, "queued@example.com").status_code == 201
        assert register(client, "queued@example.com").status_code == 201  # never activated
        assert register(client, "weakling@example.com", "password").status_code == 422
        assert mailbox.to("queued@example.com") == []  # the request did not wait for SMTP
        run_worker(redis_app)
        assert len(mailbox.to("queued@example.com")) == 2  # one link per registration
        assert mailbox.to("weakling@example.com") == []  # the refused one queued nothing

    def test_an_unreachable_queue_loses_no_registration(
        self, app_factory: Callable[..., Flask], mailbox: Mailbox
    ) -> None:
        # Nothing listens on port 1: Redis is down for the queue and for the rate limits.
        down = app_factory(REDIS_URL="redis://127.0.0.1:1/0", RATELIMIT_ENABLED=True)
        assert register(down.test_client(), "patient@example.com").status_code == 201
        assert mailbox.to("patient@example.com") == []
        # Once the queue is back, the user asks for a new link and activates.
        client = app_factory().test_client()
        assert resend(client, "patient@example.com").status_code == 202
        assert activate(client, mailbox.last_token("patient@example.com")).status_code == 200


class TestActivationEmail:
    def test_link_is_built_from_public_base_url_never_the_host_header(
        self, client: FlaskClient, mailbox: Mailbox
    ) -> None:
        response = register(
            client,
            "host@example.com",
            base_url="http://evil.example",
            headers={"Host": "evil.example", "X-Forwarded-Host": "evil.example"},
        )
        assert response.status_code == 201
        assert mailbox.last_link("host@example.com").startswith(
            "http://cinema.test/auth/activate?token="
        )
        assert "evil" not in mailbox.to("host@example.com")[0].as_string()

    def test_text_and_html_parts_carry_the_link_and_its_lifetime(
        self, client: FlaskClient, mailbox: Mailbox
    ) -> None:
        register(client, "parts@example.com")
        message = mailbox.to("parts@example.com")[0]
        link = mailbox.last_link("parts@example.com")
        html = message.get_body(preferencelist=("html",))
        assert html is not None
        for body in (Mailbox.text(message), str(html.get_content())):
            assert link in body
            assert "24 hours" in body

    def test_token_has_256_bits_and_only_its_sha256_is_stored(
        self, client: FlaskClient, app: Flask, mailbox: Mailbox
    ) -> None:
        register(client, "entropy@example.com")
        secret = mailbox.last_token("entropy@example.com")
        assert len(base64.urlsafe_b64decode(secret + "=" * (-len(secret) % 4))) >= 32
        with app.app_context():
            stored = db.session.scalars(sa.select(ActivationToken.token_hash)).all()
        assert stored == [hashlib.sha256(secret.encode()).hexdigest()]
        assert secret not in "\n".join(stored_values(app))

    def test_tokens_differ_between_users(self, client: FlaskClient, mailbox: Mailbox) -> None:
        register(client, "one@example.com")
        register(client, "two@example.com")
        assert mailbox.last_token("one@example.com") != mailbox.last_token("two@example.com")


class TestActivationPage:
    def test_get_shows_a_page_that_spends_nothing(
        self, client: FlaskClient, mailbox: Mailbox
    ) -> None:
        register(client, "scanner@example.com")
        link = mailbox.last_link("scanner@example.com")
        token = mailbox.last_token("scanner@example.com")
        for _ in range(2):  # a mail scanner opening the link, then the person
            page = client.get(link.removeprefix("http://cinema.test"))
            assert page.status_code == 200
            assert page.mimetype == "text/html"
            assert page.headers["Referrer-Policy"] == "no-referrer"
            assert "default-src 'none'" in page.headers["Content-Security-Policy"]
            assert token in page.get_data(as_text=True)
        assert activate(client, token).status_code == 200

    def test_the_token_is_escaped_in_the_page(self, client: FlaskClient) -> None:
        page = client.get('/auth/activate?token="><script>alert(1)</script>')
        assert page.status_code == 200
        assert "<script>alert(1)" not in page.get_data(as_text=True)

    def test_get_without_a_token_says_what_to_do(self, client: FlaskClient) -> None:
        page = client.get("/auth/activate")
        assert page.status_code == 200
        assert "ask for a new one" in page.get_data(as_text=True)


class TestActivate:
    def test_activates_once_then_the_user_can_log_in(
        self, client: FlaskClient, accounts: Accounts, mailbox: Mailbox
    ) -> None:
        accounts.register("fresh@example.com")
        token = mailbox.last_token("fresh@example.com")
        response = activate(client, token)
        assert response.status_code == 200
        assert response.json == {"detail": "Your account is active; you can log in now."}
        accounts.login("fresh@example.com")
        body = assert_problem(activate(client, token), 400)  # spent
        assert "invalid, expired or already used" in body["detail"]
        assert "/auth/activate/resend" in body["detail"]

    def test_unknown_token_is_400_saying_how_to_get_a_new_link(self, client: FlaskClient) -> None:
        body = assert_problem(activate(client, "x" * 43), 400)
        assert "invalid" in body["detail"]
        assert "/auth/activate/resend" in body["detail"]

    def test_expired_token_is_400_saying_so(
        self, client: FlaskClient, accounts: Accounts, mailbox: Mailbox
    ) -> None:
        accounts.register("late@example.com")
        token = mailbox.last_token("late@example.com")
        with time_machine.travel(utcnow() + timedelta(hours=24, seconds=1)):
            body = assert_problem(activate(client, token), 400)
        assert "expired" in body["detail"]
        assert "invalid" not in body["detail"]
        assert "/auth/activate/resend" in body["detail"]

    def test_token_still_works_just_before_24_hours(
        self, client: FlaskClient, accounts: Accounts, mailbox: Mailbox
    ) -> None:
        accounts.register("ontime@example.com")
        token = mailbox.last_token("ontime@example.com")
        with time_machine.travel(utcnow() + timedelta(hours=24, seconds=-60)):
            assert activate(client, token).status_code == 200

    def test_lifetime_follows_activation_token_ttl(
        self, app_factory: Callable[..., Flask], mailbox: Mailbox
    ) -> None:
        client = app_factory(ACTIVATION_TOKEN_TTL=3600).test_client()
        register(client, "hour@example.com")
        assert "1 hour" in Mailbox.text(mailbox.to("hour@example.com")[0])
        with time_machine.travel(utcnow() + timedelta(seconds=3601)):
            assert (
                "expired" in activate(client, mailbox.last_token("hour@example.com")).json["detail"]
            )

    @pytest.mark.parametrize("body", [{}, {"token": ""}, {"token": 5}, {"token": "t", "x": 1}])
    def test_bad_body_is_422(self, client: FlaskClient, body: dict) -> None:
        assert_problem(client.post("/auth/activate", json=body), 422)


class TestResend:
    def test_same_202_body_for_unknown_active_and_inactive(
        self, client: FlaskClient, accounts: Accounts, mailbox: Mailbox
    ) -> None:
        accounts.register("waiting@example.com")
        accounts.active_user("done@example.com")
        mailbox.clear()
        answers = [
            resend(client, email)
            for email in ("nobody@example.com", "done@example.com", "waiting@example.com")
        ]
        assert {r.status_code for r in answers} == {202}
        assert len({r.get_data() for r in answers}) == 1
        assert mailbox.to("nobody@example.com") == []
        assert mailbox.to("done@example.com") == []
        assert len(mailbox.to("waiting@example.com")) == 1

    def test_new_link_replaces_the_old_one(
        self, client: FlaskClient, accounts: Accounts, mailbox: Mailbox, app: Flask
    ) -> None:
        accounts.register("again@example.com")
        old = mailbox.last_token("again@example.com")
        assert resend(client, " Again@Example.com").status_code == 202
        new = mailbox.last_token("again@example.com")
        assert new != old
        assert "no longer works" in Mailbox.text(mailbox.to("again@example.com")[-1])
        with app.app_context():
            assert db.session.scalar(sa.select(sa.func.count()).select_from(ActivationToken)) == 1
        assert_problem(activate(client, old), 400)
        assert activate(client, new).status_code == 200

    def test_the_new_link_is_valid_24_hours(
        self, client: FlaskClient, accounts: Accounts, mailbox: Mailbox
    ) -> None:
        accounts.register("slow@example.com")
        with time_machine.travel(utcnow() + timedelta(hours=30)):
            assert (
                "expired" in activate(client, mailbox.last_token("slow@example.com")).json["detail"]
            )
            resend(client, "slow@example.com")
            token = mailbox.last_token("slow@example.com")
            assert "24 hours" in Mailbox.text(mailbox.to("slow@example.com")[-1])
        with time_machine.travel(utcnow() + timedelta(hours=30 + 24, seconds=1)):
            assert "expired" in activate(client, token).json["detail"]
        with time_machine.travel(utcnow() + timedelta(hours=30 + 23)):
            assert activate(client, token).status_code == 200

    def test_not_an_email_is_422(self, client: FlaskClient) -> None:
        body = assert_problem(resend(client, "nope"), 422)
        assert body["errors"]["email"]


class TestUndeliverableAddresses:
    """Addresses no mail can reach are refused before an account exists for them."""

    @pytest.mark.parametrize(
        "address",
        [
            "a" * 65 + "@example.com",  # local part over 64 (RFC 5321 section 4.5.3.1.1)
            "ada@" + ("b" * 50 + ".") * 5 + "com",  # over 254 in all
            "ada@" + ("b" * 60 + ".") * 5 + "com",  # over the 320 of the column: was a 500
        ],
    )
    def test_an_over_long_address_is_422(
        self, client: FlaskClient, app: Flask, address: str
    ) -> None:
        body = assert_problem(register(client, address), 422)
        assert body["errors"]["email"]
        with app.app_context():
            assert db.session.scalar(sa.select(sa.func.count()).select_from(User)) == 0

    @pytest.mark.parametrize("address", ["äda@example.com", "ada@exämple.com"])
    def test_a_non_ascii_address_is_422_not_an_account_that_never_gets_its_link(
        self, client: FlaskClient, app: Flask, address: str
    ) -> None:
        # Flask-Mail cannot send to it (no SMTPUTF8): the activation email failed for good.
        body = assert_problem(register(client, address), 422)
        assert body["errors"]["email"]
        with app.app_context():
            assert db.session.scalar(sa.select(sa.func.count()).select_from(User)) == 0
