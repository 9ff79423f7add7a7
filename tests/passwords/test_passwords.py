"""Passwords: the strength rule, argon2id storage, change, forgot and reset."""

from __future__ import annotations

import hashlib
import re
from datetime import timedelta

import pytest
import sqlalchemy as sa
import time_machine
from argon2 import PasswordHasher
from flask import Flask
from flask.testing import FlaskClient

from app.core.db import db, utcnow
from app.core.errors import InvalidInput
from app.identity.models import User
from app.links.models import PasswordResetToken
from app.passwords.strength import check_password_strength
from tests.support.apps import stored_password_hash, stored_values
from tests.support.http import (
    PASSWORD,
    Accounts,
    assert_401,
    assert_problem,
    bearer,
    login,
    me,
    refresh,
)
from tests.support.mail import Mailbox

NEW_PASSWORD = "granite pelican lantern mosaic"
# 64 characters: spaces, accents, a non-Latin script and an emoji.
PASSPHRASE = "Über den Wolken 🦩 schweben Kraniche über Fjorde — 静かな夜 gar sanft"
assert len(PASSPHRASE) == 64


def register(client: FlaskClient, email: str, password: str):
    return client.post("/auth/register", json={"email": email, "password": password})


def change(client: FlaskClient, access_token: str, old: str, new: str):
    return client.post(
        "/auth/password/change",
        json={"old_password": old, "new_password": new},
        headers=bearer(access_token),
    )


def forgot(client: FlaskClient, email: str):
    return client.post("/auth/password/forgot", json={"email": email})


def reset(client: FlaskClient, token: str, new: str = NEW_PASSWORD):
    return client.post("/auth/password/reset", json={"token": token, "new_password": new})


def argon2_parameters(password_hash: str) -> dict[str, int]:
    match = re.fullmatch(r"\$argon2id\$v=19\$m=(\d+),t=(\d+),p=(\d+)\$[^$]+\$[^$]+", password_hash)
    assert match, "not an argon2id hash"
    return dict(zip("mtp", map(int, match.groups()), strict=True))


class TestStrengthRule:
    @pytest.mark.parametrize("weak", ["password", "Password123!", "12345678", "qwertyuiop"])
    def test_guessable_passwords_are_refused_with_advice(
        self, client: FlaskClient, weak: str
    ) -> None:
        body = assert_problem(register(client, "guessable@example.com", weak), 422)
        assert set(body["errors"]) == {"password"}
        message = body["errors"]["password"][0]
        assert "too easy to guess" in message
        assert len(message) > len("This password is too easy to guess. ")  # a suggestion too

    @pytest.mark.parametrize(
        "derived",
        [
            "marie.curie1867",
            "Marie.Curie@Radium.org!",
            "MarieCurie1867!",
            "eiruc.eiram polonium x",
            "curie_marie radium 1867",
            "radium radium radium",
        ],
    )
    def test_passwords_built_from_the_email_are_refused(
        self, client: FlaskClient, derived: str
    ) -> None:
        body = assert_problem(register(client, "marie.curie@radium.org", derived), 422)
        assert body["errors"]["password"]

    def test_words_of_the_email_next_to_strong_ones_are_fine(self, client: FlaskClient) -> None:
        response = register(client, "marie.curie@radium.org", "curie violet tangerine orbit")
        assert response.status_code == 201

    def test_a_password_containing_the_local_part_says_why(self, client: FlaskClient) -> None:
        body = assert_problem(
            register(client, "marie.curie@radium.org", "marie.curie tangerine orbit"), 422
        )
        assert "email" in body["errors"]["password"][0]

    def test_too_short_says_the_minimum(self, client: FlaskClient) -> None:
        body = assert_problem(register(client, "short@example.com", "xK#9q!"), 422)
        assert "at least 8" in body["errors"]["password"][0]

    def test_a_long_passphrase_with_spaces_and_unicode_is_accepted(
        self, client: FlaskClient, accounts: Accounts
    ) -> None:
        assert register(client, "poet@example.com", PASSPHRASE).status_code == 201
        accounts.activate("poet@example.com")
        assert login(client, "poet@example.com", PASSPHRASE).status_code == 200

    def test_128_characters_is_the_limit(self, client: FlaskClient) -> None:
        words = "saffron kayak meteor quilt ember vortex lagoon thistle "
        longest = (words * 3)[:128]
        assert register(client, "max@example.com", longest).status_code == 201
        body = assert_problem(register(client, "over@example.com", longest + "z"), 422)
        assert body["errors"]["password"]

    def test_nothing_is_truncated(self, client: FlaskClient, accounts: Accounts) -> None:
        words = "saffron kayak meteor quilt ember vortex lagoon thistle "
        longest = (words * 3)[:127] + "Q"
        accounts.register("whole@example.com", longest)
        accounts.activate("whole@example.com")
        assert_401(login(client, "whole@example.com", longest[:127]))
        assert_401(login(client, "whole@example.com", longest[:72]))  # bcrypt's limit
        assert login(client, "whole@example.com", longest).status_code == 200

    def test_repeating_a_weak_chunk_does_not_make_it_strong(self) -> None:
        with pytest.raises(InvalidInput):
            check_password_strength("ab" * 64, "someone@example.com")


class TestHashing:
    @pytest.mark.real_hasher
    def test_argon2id_at_or_above_the_owasp_minimum(self, app: Flask, accounts: Accounts) -> None:
        accounts.register("hashed@example.com")
        password_hash = stored_password_hash(app, "hashed@example.com")
        parameters = argon2_parameters(password_hash)
        assert parameters["m"] >= 19 * 1024
        assert parameters["t"] >= 2
        assert PASSWORD not in password_hash

    def test_the_same_password_hashes_differently(self, app: Flask, accounts: Accounts) -> None:
        accounts.register("salt1@example.com")
        accounts.register("salt2@example.com")
        first, second = (stored_password_hash(app, f"salt{n}@example.com") for n in (1, 2))
        assert first != second

    @pytest.mark.real_hasher
    def test_a_weaker_hash_is_upgraded_on_the_next_login(
        self, app: Flask, client: FlaskClient, accounts: Accounts
    ) -> None:
        accounts.register("legacy@example.com")
        accounts.activate("legacy@example.com")
        weak = PasswordHasher(time_cost=1, memory_cost=8 * 1024, parallelism=1).hash(PASSWORD)
        with app.app_context():
            db.session.execute(
                sa.update(User).where(User.email == "legacy@example.com").values(password_hash=weak)
            )
            db.session.commit()
        assert_401(login(client, "legacy@example.com", "a wrong password for sure"))
        # Only a correct login upgrades.
        assert stored_password_hash(app, "legacy@example.com") == weak
        assert login(client, "legacy@example.com").status_code == 200
        upgraded = argon2_parameters(stored_password_hash(app, "legacy@example.com"))
        assert upgraded["m"] >= 19 * 1024 and upgraded["t"] >= 2
        assert login(client, "legacy@example.com").status_code == 200


class TestChange:
    def test_requires_the_current_password(self, client: FlaskClient, accounts: Accounts) -> None:
        pair = accounts.active_user("careful@example.com")
        body = assert_problem(
            change(client, pair["access_token"], "not my password at all", NEW_PASSWORD), 400
        )
        assert "current password" in body["detail"]
        assert login(client, "careful@example.com").status_code == 200

    def test_requires_an_access_token(self, client: FlaskClient) -> None:
        response = client.post(
            "/auth/password/change", json={"old_password": PASSWORD, "new_password": NEW_PASSWORD}
        )
        assert_401(response)

    def test_equal_to_the_old_one_is_422(self, client: FlaskClient, accounts: Accounts) -> None:
        pair = accounts.active_user("same@example.com")
        body = assert_problem(change(client, pair["access_token"], PASSWORD, PASSWORD), 422)
        assert body["errors"]["new_password"]

    def test_weak_new_password_is_422_naming_the_field(
        self, client: FlaskClient, accounts: Accounts
    ) -> None:
        pair = accounts.active_user("lazy@example.com")
        body = assert_problem(change(client, pair["access_token"], PASSWORD, "Password123!"), 422)
        assert set(body["errors"]) == {"new_password"}
        assert me(client, pair["access_token"]).status_code == 200  # nothing was revoked

    def test_ends_every_session_and_sends_a_notice(
        self, client: FlaskClient, accounts: Accounts, mailbox: Mailbox
    ) -> None:
        here = accounts.active_user("changer@example.com")
        there = accounts.login("changer@example.com")
        mailbox.clear()
        response = change(client, here["access_token"], PASSWORD, NEW_PASSWORD)
        assert response.status_code == 204
        for pair in (here, there):
            assert_401(refresh(client, pair["refresh_token"]))
            assert_401(me(client, pair["access_token"]))
        assert_401(login(client, "changer@example.com"))
        assert login(client, "changer@example.com", NEW_PASSWORD).status_code == 200
        [notice] = mailbox.to("changer@example.com")
        assert "password" in notice["Subject"].lower()
        assert "was changed" in Mailbox.text(notice)


class TestForgot:
    def test_same_202_body_for_unknown_never_activated_and_active(
        self, client: FlaskClient, accounts: Accounts, mailbox: Mailbox
    ) -> None:
        accounts.register("inactive@example.com")
        accounts.active_user("active@example.com")
        mailbox.clear()
        answers = [
            forgot(client, email)
            for email in ("unknown@example.com", "inactive@example.com", "ACTIVE@example.com ")
        ]
        assert {r.status_code for r in answers} == {202}
        assert len({r.get_data() for r in answers}) == 1
        assert mailbox.to("unknown@example.com") == []
        # A never-activated account gets a link too: using it activates the account.
        assert len(mailbox.to("inactive@example.com")) == 1
        assert len(mailbox.to("active@example.com")) == 1

    def test_the_email_carries_a_public_link_and_its_lifetime(
        self, client: FlaskClient, accounts: Accounts, mailbox: Mailbox, app: Flask
    ) -> None:
        accounts.active_user("forgetful@example.com")
        response = client.post(
            "/auth/password/forgot",
            json={"email": "forgetful@example.com"},
            base_url="http://evil.example",
            headers={"Host": "evil.example", "X-Forwarded-Host": "evil.example"},
        )
        assert response.status_code == 202
        link = mailbox.last_link("forgetful@example.com")
        assert link.startswith("http://cinema.test/auth/password/reset?token=")
        message = mailbox.to("forgetful@example.com")[-1]
        html = message.get_body(preferencelist=("html",))
        assert html is not None
        for body in (Mailbox.text(message), str(html.get_content())):
            assert link in body
            assert "24 hours" in body
        secret = mailbox.last_token("forgetful@example.com")
        with app.app_context():
            stored = db.session.scalars(sa.select(PasswordResetToken.token_hash)).all()
        assert stored == [hashlib.sha256(secret.encode()).hexdigest()]
        assert secret not in "\n".join(stored_values(app))

    def test_not_an_email_is_422(self, client: FlaskClient) -> None:
        assert assert_problem(forgot(client, "nope"), 422)["errors"]["email"]


class TestReset:
    def _token(self, client: FlaskClient, mailbox: Mailbox, email: str) -> str:
        assert forgot(client, email).status_code == 202
        return mailbox.last_token(email)

    def test_the_page_spends_nothing(
        self, client: FlaskClient, accounts: Accounts, mailbox: Mailbox
    ) -> None:
        accounts.active_user("page@example.com")
        token = self._token(client, mailbox, "page@example.com")
        for _ in range(2):
            page = client.get(f"/auth/password/reset?token={token}")
            assert page.status_code == 200
            assert page.mimetype == "text/html"
            assert page.headers["Referrer-Policy"] == "no-referrer"
            assert "default-src 'none'" in page.headers["Content-Security-Policy"]
            assert 'type="password"' in page.get_data(as_text=True)
        assert reset(client, token).status_code == 204

    def test_sets_the_password_ends_every_session_and_does_not_log_in(
        self, client: FlaskClient, accounts: Accounts, mailbox: Mailbox
    ) -> None:
        pair = accounts.active_user("reset@example.com")
        token = self._token(client, mailbox, "reset@example.com")
        mailbox.clear()
        response = reset(client, token)
        assert response.status_code == 204
        assert response.get_data() == b""  # no tokens: the user logs in on purpose
        assert_401(refresh(client, pair["refresh_token"]))
        assert_401(me(client, pair["access_token"]))
        assert_401(login(client, "reset@example.com"))
        assert login(client, "reset@example.com", NEW_PASSWORD).status_code == 200
        [notice] = mailbox.to("reset@example.com")
        assert "was changed" in Mailbox.text(notice)
        body = assert_problem(reset(client, token, "another fine long passphrase"), 400)
        assert "/auth/password/forgot" in body["detail"]

    def test_unknown_token_is_400(self, client: FlaskClient) -> None:
        body = assert_problem(reset(client, "x" * 43), 400)
        assert "invalid" in body["detail"]
        assert "/auth/password/forgot" in body["detail"]

    def test_expired_token_is_400_saying_so(
        self, client: FlaskClient, accounts: Accounts, mailbox: Mailbox
    ) -> None:
        accounts.active_user("tardy@example.com")
        token = self._token(client, mailbox, "tardy@example.com")
        with time_machine.travel(utcnow() + timedelta(hours=23, minutes=59)):
            assert_problem(reset(client, token, "Password123!"), 422)  # still alive
        with time_machine.travel(utcnow() + timedelta(hours=24, seconds=1)):
            body = assert_problem(reset(client, token), 400)
        assert "expired" in body["detail"]
        assert "/auth/password/forgot" in body["detail"]

    def test_weak_password_is_422_and_keeps_the_token(
        self, client: FlaskClient, accounts: Accounts, mailbox: Mailbox
    ) -> None:
        accounts.active_user("retry@example.com")
        token = self._token(client, mailbox, "retry@example.com")
        body = assert_problem(reset(client, token, "password"), 422)
        assert set(body["errors"]) == {"new_password"}
        assert assert_problem(reset(client, token, PASSWORD), 422)["errors"]["new_password"]
        assert reset(client, token).status_code == 204

    def test_a_new_link_replaces_the_old_one(
        self, client: FlaskClient, accounts: Accounts, mailbox: Mailbox
    ) -> None:
        accounts.active_user("twice@example.com")
        old = self._token(client, mailbox, "twice@example.com")
        new = self._token(client, mailbox, "twice@example.com")
        assert_problem(reset(client, old), 400)
        assert reset(client, new).status_code == 204

    def test_the_token_dies_when_the_password_changes_by_another_route(
        self, client: FlaskClient, accounts: Accounts, mailbox: Mailbox
    ) -> None:
        pair = accounts.active_user("routes@example.com")
        token = self._token(client, mailbox, "routes@example.com")
        assert change(client, pair["access_token"], PASSWORD, NEW_PASSWORD).status_code == 204
        assert_problem(reset(client, token, "yet another pleasant passphrase"), 400)
        assert login(client, "routes@example.com", NEW_PASSWORD).status_code == 200

    @pytest.mark.parametrize(
        "body",
        [{}, {"token": "t"}, {"new_password": NEW_PASSWORD}, {"token": 1, "new_password": 2}],
    )
    def test_bad_body_is_422(self, client: FlaskClient, body: dict) -> None:
        assert_problem(client.post("/auth/password/reset", json=body), 422)
