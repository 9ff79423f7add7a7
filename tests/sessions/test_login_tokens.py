"""Sign-in: login, the token pair, refresh rotation and reuse detection, logout, JWT hygiene."""

from __future__ import annotations

import base64
import hashlib
import json
import re
import secrets
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import jwt as pyjwt
import pytest
import sqlalchemy as sa
import time_machine
from flask import Flask
from flask.testing import FlaskClient

from app.core.db import db, utcnow
from app.identity.models import User
from app.sessions.models import LoginSession
from tests.support.http import (
    PASSWORD,
    Accounts,
    assert_401,
    assert_problem,
    bearer,
    claims,
    login,
    logout,
    me,
    past_the_refresh_grace,
    refresh,
)


def refresh_expiry(app: Flask, token: str) -> datetime:
    """The end of the login the refresh token belongs to, as its record holds it."""
    with app.app_context():
        expires_at = db.session.scalar(
            sa.select(LoginSession.expires_at).where(
                LoginSession.refresh_hash == hashlib.sha256(token.encode()).hexdigest()
            )
        )
    assert expires_at is not None, "no record of this refresh token"
    return expires_at


def sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def b64(data: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


class TestLogin:
    def test_returns_a_bearer_pair(self, client: FlaskClient, accounts: Accounts) -> None:
        pair = accounts.active_user("viewer@example.com")
        assert set(pair) == {"access_token", "refresh_token", "token_type", "expires_in"}
        assert pair["token_type"] == "bearer"
        assert pair["expires_in"] == 900
        access = claims(pair["access_token"])
        assert access["type"] == "access"
        assert access["exp"] - access["iat"] == 900  # checklist 10: at most 15 minutes
        assert me(client, pair["access_token"]).json["email"] == "viewer@example.com"

    def test_email_is_matched_case_insensitively(
        self, client: FlaskClient, accounts: Accounts
    ) -> None:
        accounts.active_user("casey@example.com")
        assert login(client, "  CASEY@example.com").status_code == 200

    def test_unknown_email_and_wrong_password_get_one_401_body(
        self, client: FlaskClient, accounts: Accounts
    ) -> None:
        accounts.active_user("known@example.com")
        wrong_password = login(client, "known@example.com", "not the right password at all")
        unknown_email = login(client, "unknown@example.com")
        assert_401(wrong_password)
        assert_401(unknown_email)
        assert wrong_password.get_data() == unknown_email.get_data()

    # The timing of unknown email against wrong password: tests/security/test_checklist.py,
    # test_unknown_email_and_wrong_password_take_the_same_time.

    def test_inactive_account_is_403_only_after_a_correct_password(
        self, client: FlaskClient, accounts: Accounts
    ) -> None:
        accounts.register("pending@example.com")
        assert_401(login(client, "pending@example.com", "a wrong password for sure"))
        body = assert_problem(login(client, "pending@example.com"), 403)
        assert "not activated" in body["detail"]
        assert "/auth/activate/resend" in body["detail"]

    def test_password_over_128_characters_is_422(self, client: FlaskClient) -> None:
        body = assert_problem(login(client, "long@example.com", "x" * 129), 422)
        assert body["errors"]["password"]


class TestRefresh:
    def test_rotation_spends_the_presented_token(
        self, client: FlaskClient, accounts: Accounts
    ) -> None:
        first = accounts.active_user("rotor@example.com")
        second = refresh(client, first["refresh_token"])
        assert second.status_code == 200
        pair = second.json
        assert set(pair) == {"access_token", "refresh_token", "token_type", "expires_in"}
        assert pair["refresh_token"] != first["refresh_token"]
        assert me(client, pair["access_token"]).status_code == 200
        assert refresh(client, pair["refresh_token"]).status_code == 200

    def test_reuse_revokes_that_login_only(self, client: FlaskClient, accounts: Accounts) -> None:
        stolen = accounts.active_user("victim@example.com")
        other_device = accounts.login("victim@example.com")
        rotated = refresh(client, stolen["refresh_token"]).json
        with past_the_refresh_grace():
            body = assert_401(refresh(client, stolen["refresh_token"]))  # replayed
        assert "already used" in body["detail"]
        # Every token of that login is dead, access tokens included...
        assert_401(refresh(client, rotated["refresh_token"]))
        assert_401(me(client, rotated["access_token"]))
        assert_401(me(client, stolen["access_token"]))
        # ...while the other login goes on.
        assert me(client, other_device["access_token"]).status_code == 200
        assert refresh(client, other_device["refresh_token"]).status_code == 200

    def test_the_refresh_token_is_accepted_in_the_authorization_header(
        self, client: FlaskClient, accounts: Accounts
    ) -> None:
        pair = accounts.active_user("header@example.com")
        response = client.post("/auth/refresh", headers=bearer(pair["refresh_token"]))
        assert response.status_code == 200
        again = client.post(
            "/auth/refresh", json={}, headers=bearer(response.json["refresh_token"])
        )
        assert again.status_code == 200

    def test_no_token_at_all_is_401(self, client: FlaskClient) -> None:
        assert_401(client.post("/auth/refresh", json={}))
        assert_401(client.post("/auth/refresh"))

    def test_rotation_never_extends_the_login(
        self, app: Flask, client: FlaskClient, accounts: Accounts
    ) -> None:
        start = utcnow()
        pair = accounts.active_user("finite@example.com")
        end = refresh_expiry(app, pair["refresh_token"])
        assert start + timedelta(days=7) <= end <= utcnow() + timedelta(days=7)
        with time_machine.travel(start + timedelta(days=6)):
            pair = refresh(client, pair["refresh_token"]).json
            assert refresh_expiry(app, pair["refresh_token"]) == end
        with time_machine.travel(end - timedelta(seconds=60)):
            pair = refresh(client, pair["refresh_token"]).json
            # The last access token ends with the login, not 15 minutes later.
            assert pair["expires_in"] <= 60
            assert claims(pair["access_token"])["exp"] <= end.timestamp()
        with time_machine.travel(end + timedelta(seconds=1)):
            body = assert_401(refresh(client, pair["refresh_token"]))
            assert "expired" in body["detail"]
            assert_401(me(client, pair["access_token"]))

    def test_refresh_lifetime_follows_the_setting(
        self, app_factory: Callable[..., Flask], mailbox
    ) -> None:
        app = app_factory(JWT_REFRESH_TOKEN_EXPIRES=3600)
        client = app.test_client()
        before = utcnow()
        pair = Accounts(client, mailbox).active_user("hourly@example.com")
        end = refresh_expiry(app, pair["refresh_token"])
        assert before + timedelta(hours=1) <= end <= utcnow() + timedelta(hours=1)
        with time_machine.travel(end + timedelta(seconds=1)):
            assert "expired" in assert_401(refresh(client, pair["refresh_token"]))["detail"]

    def test_refresh_tokens_name_their_login_and_only_their_hash_is_stored(
        self, app: Flask, client: FlaskClient, accounts: Accounts
    ) -> None:
        pair = accounts.active_user("opaque@example.com")
        family = claims(pair["access_token"])["fam"]
        token = pair["refresh_token"]
        # <family>.<generation>.<secret>: 32 bytes (256 bits) and a 16-byte tag, base64url.
        assert re.fullmatch(rf"{family}\.0\.[A-Za-z0-9_-]{{64}}", token)
        rotated = refresh(client, token).json["refresh_token"]
        assert re.fullmatch(rf"{family}\.1\.[A-Za-z0-9_-]{{64}}", rotated)
        with app.app_context():
            (row,) = db.session.execute(
                sa.select(
                    LoginSession.refresh_generation,
                    LoginSession.refresh_hash,
                    LoginSession.previous_refresh_hash,
                )
            ).all()
        # One row per login, however often it is refreshed; hashes, never a token.
        assert tuple(row) == (1, sha256(rotated), sha256(token))

    def test_unknown_token_is_401(
        self, app: Flask, client: FlaskClient, accounts: Accounts
    ) -> None:
        pair = accounts.active_user("forged@example.com")
        # A token of the right shape that was never issued: no database record.
        assert_401(refresh(client, secrets.token_urlsafe(32)))
        # A refresh token as the HS256 code used to issue them, signed with JWT_SECRET_KEY
        # and naming a live login.
        now = int(utcnow().timestamp())
        old_style = pyjwt.encode(
            {
                "sub": claims(pair["access_token"])["sub"],
                "fam": claims(pair["access_token"])["fam"],
                "jti": "j",
                "type": "refresh",
                "iat": now,
                "exp": now + 3600,
            },
            app.config["JWT_SECRET_KEY"],
            "HS256",
        )
        assert_401(refresh(client, old_style))

    @pytest.mark.parametrize("token", ["garbage", "a.b.c", ""])
    def test_malformed_token_is_401_or_422(self, client: FlaskClient, token: str) -> None:
        response = refresh(client, token)
        assert response.status_code in (401, 422)
        if response.status_code == 401:
            assert response.headers["WWW-Authenticate"] == "Bearer"

    def test_access_token_is_not_a_refresh_token(
        self, client: FlaskClient, accounts: Accounts
    ) -> None:
        pair = accounts.active_user("confused@example.com")
        assert_401(refresh(client, pair["access_token"]))
        assert_401(client.post("/auth/refresh", headers=bearer(pair["access_token"])))
        assert_401(logout(client, pair["access_token"]))

    def test_inactive_or_deleted_user_cannot_refresh(
        self, app: Flask, client: FlaskClient, accounts: Accounts
    ) -> None:
        benched = accounts.active_user("benched@example.com")
        gone = accounts.active_user("gone@example.com")
        with app.app_context():
            db.session.execute(
                sa.update(User).where(User.email == "benched@example.com").values(is_active=False)
            )
            db.session.execute(sa.delete(User).where(User.email == "gone@example.com"))
            db.session.commit()
        assert_401(refresh(client, benched["refresh_token"]))
        assert_401(refresh(client, gone["refresh_token"]))


class TestLogout:
    def test_revokes_the_refresh_token_and_the_presented_access_token(
        self, client: FlaskClient, accounts: Accounts
    ) -> None:
        pair = accounts.active_user("leaver@example.com")
        other = accounts.login("leaver@example.com")
        response = logout(client, pair["refresh_token"], pair["access_token"])
        assert response.status_code == 204
        assert response.get_data() == b""
        assert_401(refresh(client, pair["refresh_token"]))
        body = assert_401(me(client, pair["access_token"]))
        assert "revoked" in body["detail"]
        assert me(client, other["access_token"]).status_code == 200  # another device stays

    def test_an_access_token_of_another_login_of_the_same_user_ends_too(
        self, client: FlaskClient, accounts: Accounts
    ) -> None:
        phone = accounts.active_user("two-devices@example.com")
        laptop = accounts.login("two-devices@example.com")
        assert logout(client, phone["refresh_token"], laptop["access_token"]).status_code == 204
        assert_401(me(client, laptop["access_token"]))

    def test_someone_elses_access_token_is_left_alone(
        self, client: FlaskClient, accounts: Accounts
    ) -> None:
        mine = accounts.active_user("mine@example.com")
        theirs = accounts.active_user("theirs@example.com")
        assert logout(client, mine["refresh_token"], theirs["access_token"]).status_code == 204
        assert me(client, theirs["access_token"]).status_code == 200

    def test_invalid_refresh_token_is_401(self, client: FlaskClient, accounts: Accounts) -> None:
        pair = accounts.active_user("twice@example.com")
        assert_401(logout(client, "not-a-token"))
        assert logout(client, pair["refresh_token"]).status_code == 204
        assert_401(logout(client, pair["refresh_token"]))  # already revoked

    def test_a_spent_refresh_token_is_401_and_ends_its_login(
        self, client: FlaskClient, accounts: Accounts
    ) -> None:
        old = accounts.active_user("spent@example.com")
        new = refresh(client, old["refresh_token"]).json
        with past_the_refresh_grace():
            assert_401(logout(client, old["refresh_token"]))
        assert_401(refresh(client, new["refresh_token"]))

    def test_missing_refresh_token_is_422(self, client: FlaskClient) -> None:
        body = assert_problem(client.post("/auth/logout", json={}), 422)
        assert body["errors"]["refresh_token"]


class TestAccessTokens:
    def test_refresh_token_is_not_an_access_token(
        self, client: FlaskClient, accounts: Accounts
    ) -> None:
        pair = accounts.active_user("typed@example.com")
        assert_401(me(client, pair["refresh_token"]))

    def test_alg_none_is_401(self, client: FlaskClient, accounts: Accounts) -> None:
        pair = accounts.active_user("none@example.com")
        payload = pair["access_token"].split(".")[1]
        for alg in ("none", "None", "NONE"):
            unsigned = f"{b64({'alg': alg, 'typ': 'JWT'})}.{payload}."
            assert_401(me(client, unsigned))

    def test_tampered_token_is_401(self, client: FlaskClient, accounts: Accounts) -> None:
        pair = accounts.active_user("tamper@example.com")
        victim = accounts.active_user("admin-ish@example.com")
        header, payload, signature = pair["access_token"].split(".")
        forged_claims = {
            **claims(pair["access_token"]),
            "sub": claims(victim["access_token"])["sub"],
        }
        assert_401(me(client, f"{header}.{b64(forged_claims)}.{signature}"))
        flipped = signature[:10] + ("A" if signature[10] != "A" else "B") + signature[11:]
        assert_401(me(client, f"{header}.{payload}.{flipped}"))

    def test_token_signed_with_another_key_or_algorithm_is_401(
        self, client: FlaskClient, accounts: Accounts, app: Flask
    ) -> None:
        pair = accounts.active_user("keys@example.com")
        token_claims = claims(pair["access_token"])
        other_key = pyjwt.encode(token_claims, "another key of at least 32 bytes!!", "HS256")
        assert_401(me(client, other_key))
        other_alg = pyjwt.encode(token_claims, app.config["JWT_SECRET_KEY"] + "x" * 64, "HS512")
        assert_401(me(client, other_alg))

    def test_expired_access_token_is_401(self, client: FlaskClient, accounts: Accounts) -> None:
        pair = accounts.active_user("expiring@example.com")
        with time_machine.travel(utcnow() + timedelta(minutes=14)):
            assert me(client, pair["access_token"]).status_code == 200
        with time_machine.travel(utcnow() + timedelta(minutes=15, seconds=1)):
            body = assert_401(me(client, pair["access_token"]))
            assert "expired" in body["detail"]

    def test_missing_or_malformed_header_is_401(self, client: FlaskClient) -> None:
        assert_401(client.get("/auth/me"))
        assert_401(client.get("/auth/me", headers={"Authorization": "Basic abc"}))
        assert_401(client.get("/auth/me", headers={"Authorization": "Bearer"}))

    def test_deleted_user_is_refused_at_once(
        self, app: Flask, client: FlaskClient, accounts: Accounts
    ) -> None:
        pair = accounts.active_user("deleted@example.com")
        with app.app_context():
            db.session.execute(sa.delete(User).where(User.email == "deleted@example.com"))
            db.session.commit()
        assert_401(me(client, pair["access_token"]))

    def test_deactivated_user_is_refused_at_once(
        self, app: Flask, client: FlaskClient, accounts: Accounts
    ) -> None:
        pair = accounts.active_user("paused@example.com")
        with app.app_context():
            db.session.execute(
                sa.update(User).where(User.email == "paused@example.com").values(is_active=False)
            )
            db.session.commit()
        assert_401(me(client, pair["access_token"]))

    def test_group_change_applies_on_the_next_request(
        self, app: Flask, client: FlaskClient, accounts: Accounts
    ) -> None:
        pair = accounts.active_user("promoted@example.com")
        assert me(client, pair["access_token"]).json["group"] == "USER"
        accounts.set_group(app, "promoted@example.com", "MODERATOR")
        assert me(client, pair["access_token"]).json["group"] == "MODERATOR"
        # The token still says what the group was when it was issued; this service never
        # trusts that claim.
        assert claims(pair["access_token"])["group"] == "USER"


AUTH_BODIES = {
    "/auth/register": {"email": "a@example.com", "password": PASSWORD},
    "/auth/activate": {"token": "t"},
    "/auth/activate/resend": {"email": "a@example.com"},
    "/auth/login": {"email": "a@example.com", "password": PASSWORD},
    "/auth/refresh": {"refresh_token": "t"},
    "/auth/logout": {"refresh_token": "t"},
    "/auth/password/forgot": {"email": "a@example.com"},
    "/auth/password/reset": {"token": "t", "new_password": PASSWORD},
    "/auth/password/change": {"old_password": PASSWORD, "new_password": PASSWORD},
}


@pytest.mark.parametrize("path", sorted(AUTH_BODIES))
class TestEveryAuthBodyIsChecked:
    """Checklist 17: bad bodies get a problem answer, never a 500."""

    @pytest.fixture
    def headers(self, path: str, accounts: Accounts) -> dict[str, str]:
        if path != "/auth/password/change":
            return {}
        return bearer(accounts.active_user("body@example.com")["access_token"])

    def test_malformed_json_is_400(self, client: FlaskClient, path: str, headers) -> None:
        response = client.post(path, data="{oops", content_type="application/json", headers=headers)
        assert_problem(response, 400)

    def test_wrong_content_type_is_415(self, client: FlaskClient, path: str, headers) -> None:
        response = client.post(path, data="a=b", content_type="text/plain", headers=headers)
        assert_problem(response, 415)

    def test_unknown_field_is_422(self, client: FlaskClient, path: str, headers) -> None:
        body = {**AUTH_BODIES[path], "is_admin": True}
        errors = assert_problem(client.post(path, json=body, headers=headers), 422)["errors"]
        assert errors == {"is_admin": ["Unknown field."]}

    def test_wrong_types_are_422(self, client: FlaskClient, path: str, headers) -> None:
        body = dict.fromkeys(AUTH_BODIES[path], 12)
        errors = assert_problem(client.post(path, json=body, headers=headers), 422)["errors"]
        assert set(errors) == set(AUTH_BODIES[path])

    def test_a_list_instead_of_an_object_is_422(
        self, client: FlaskClient, path: str, headers
    ) -> None:
        assert_problem(client.post(path, json=[1, 2], headers=headers), 422)


@pytest.mark.parametrize("scheme", ["bearer", "BEARER"])
def test_the_bearer_scheme_is_case_insensitive(
    client: FlaskClient, accounts: Accounts, scheme: str
) -> None:
    # RFC 9110 section 11.1; and a client that sends `{token_type} {access_token}` from the
    # login answer (token_type "bearer") was refused with a 401.
    pair = accounts.active_user("ada@example.com")
    header = {"Authorization": f"{scheme} {pair['access_token']}"}
    response = client.get("/auth/me", headers=header)
    assert response.status_code == 200, response.json
    assert response.json["email"] == "ada@example.com"


def test_the_authorization_header_is_read_as_clients_send_it(
    client: FlaskClient, accounts: Accounts
) -> None:
    # What flask-jwt-extended's reader took, kept when the guard took over reading it.
    token = accounts.active_user("ada@example.com")["access_token"]
    for accepted in (
        f"Bearer\t{token}",
        f"Bearer {token},",
        f"Basic dXNlcjpwdw==, Bearer {token}",
        f"  Bearer   {token}  ",
    ):
        response = client.get("/auth/me", headers={"Authorization": accepted})
        assert response.status_code == 200, (accepted, response.json)
    for sent, detail in (
        ("Bearer", "Send an access token"),
        ("Basic dXNlcjpwdw==", "Send an access token"),
        (f"Bearer {token} extra", "not valid"),
        (f"Bearer {token[:-4]}", "not valid"),
    ):
        assert (
            detail in assert_401(client.get("/auth/me", headers={"Authorization": sent}))["detail"]
        ), sent
