"""Issue 24: a login keeps one row, its refresh token's state, instead of a row per refresh.
Old tokens are no longer stored, so these attacks are played against the real stack, on
SQLite and on PostgreSQL, each with a check that fails if the defence is taken away:

1. a stranger who knows a login's family id (the `fam` claim other services see) and guesses
   a generation cannot end the login, or take it over, with a made-up "old" token;
2. the database alone yields no usable refresh token;
3. a token is spent once; concurrent refreshes continue one generation, never two;
4. the tokens of an ended or expired login, or of a deactivated account, never refresh;
5. malformed tokens are a 401 problem, never a 500.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
import sqlalchemy as sa
import time_machine
from flask import Flask
from flask.testing import FlaskClient

from app.core.crypto import derive_key
from app.core.db import db, utcnow
from app.sessions.models import LoginSession
from tests.support.http import (
    PASSWORD,
    Accounts,
    assert_401,
    assert_problem,
    at_once,
    bearer,
    claims,
    logout,
    me,
    past_the_refresh_grace,
    refresh,
)
from tests.support.mail import Mailbox
from tests.support.sessions import current_session, end_session, event_types

REUSE = "refresh_reuse_detected"


def family_of(pair: dict[str, Any]) -> str:
    return str(claims(pair["access_token"])["fam"])


def made_up(family: str, generation: int | str, raw: bytes | None = None) -> str:
    """A token of the right shape: 32 secret bytes and a 16-byte tag, all guessed."""
    raw = raw if raw is not None else secrets.token_bytes(48)
    return f"{family}.{generation}.{base64.urlsafe_b64encode(raw).decode()}"


def row_of(app: Flask, family: str) -> dict[str, Any]:
    with app.app_context():
        row = db.session.execute(
            sa.select(LoginSession.__table__).where(LoginSession.family_id == family)
        ).one()
        db.session.commit()
    return dict(row._mapping)


def assert_untouched(client: FlaskClient, pair: dict[str, Any]) -> None:
    """The login goes on, with no theft alarm."""
    assert me(client, pair["access_token"]).status_code == 200
    assert REUSE not in event_types(client, pair["access_token"])


# --- 1. a made-up old token ends nothing -------------------------------------------------


def test_a_made_up_token_of_any_generation_ends_nothing(
    app: Flask, client: FlaskClient, accounts: Accounts
) -> None:
    first = accounts.active_user("stranger-target@example.com")
    second = refresh(client, first["refresh_token"]).json
    current = refresh(client, second["refresh_token"]).json  # generation 2, rotated just now
    family = family_of(current)
    real_old = base64.urlsafe_b64decode(first["refresh_token"].split(".")[2])
    wrong_key = derive_key("refresh-token-tag", "a SECRET_KEY that is not the server's")
    tagged_elsewhere = secrets.token_bytes(32)
    tagged_elsewhere += hmac.new(
        wrong_key, f"{family}.0.".encode() + tagged_elsewhere, hashlib.sha256
    ).digest()[:16]
    attempts = [
        made_up(family, 0),
        made_up(family, 1),  # the generation just spent, inside the grace: not the grace case
        made_up(family, 2),  # the current generation: not its token
        made_up(family, 3),
        made_up(family, 0, tagged_elsewhere),
        made_up(family, 1, real_old),  # a real token's bytes under another generation
    ]
    before = row_of(app, family)
    for token in attempts:
        body = assert_401(refresh(client, token))
        assert "already used" not in body["detail"]
        assert_401(logout(client, token))
        assert_untouched(client, current)
    assert row_of(app, family) == before  # nothing spent, nothing ended
    # The checks above can fail: the real token of generation 0 is reuse, and ends it all.
    assert "already used" in assert_401(refresh(client, first["refresh_token"]))["detail"]
    assert_401(me(client, current["access_token"]))
    assert_401(refresh(client, current["refresh_token"]))


def test_the_server_key_alone_makes_no_current_token(
    app: Flask, client: FlaskClient, accounts: Accounts
) -> None:
    """Even tagged with the server's own key, a token of the current generation is spent
    only by the hash its row holds: SECRET_KEY without the database takes over nothing."""
    pair = accounts.active_user("key-alone@example.com")
    family = family_of(pair)
    key = derive_key("refresh-token-tag", app.config["SECRET_KEY"])
    secret = secrets.token_bytes(32)
    tag = hmac.new(key, f"{family}.0.".encode() + secret, hashlib.sha256).digest()[:16]
    assert_401(refresh(client, made_up(family, 0, secret + tag)))
    assert_untouched(client, pair)
    assert refresh(client, pair["refresh_token"]).status_code == 200


# --- 2. a database leak ---------------------------------------------------------------------


def test_nothing_the_database_holds_is_a_refresh_token(
    app: Flask, client: FlaskClient, accounts: Accounts
) -> None:
    first = accounts.active_user("leaked@example.com")
    current = refresh(client, first["refresh_token"]).json
    family = family_of(current)
    handed_out = [first["refresh_token"], current["refresh_token"]]
    stored: list[str] = []
    with app.app_context(), db.engine.connect() as conn:
        metadata = sa.MetaData()
        metadata.reflect(bind=conn)
        for table in metadata.sorted_tables:
            for row in conn.execute(sa.select(table)):
                stored += [str(value) for value in row if value is not None]
    # No token, and no token's secret part, is stored anywhere.
    for token in handed_out:
        secret_part = token.split(".")[2]
        assert not [value for value in stored if token in value or secret_part in value]
    row = row_of(app, family)
    attempts = [value for value in stored if value in (row["refresh_hash"], row["family_id"])]
    for hex_hash in (row["refresh_hash"], row["previous_refresh_hash"]):
        as_bytes = bytes.fromhex(hex_hash)
        attempts += [
            made_up(family, 1, as_bytes + as_bytes[:16]),
            made_up(family, 0, as_bytes + as_bytes[:16]),
            f"{family}.1.{hex_hash}",
        ]
    assert attempts
    for token in attempts:
        assert_401(refresh(client, token))
        assert_untouched(client, current)
    assert refresh(client, current["refresh_token"]).status_code == 200


# --- 3. spent once --------------------------------------------------------------------------


def test_a_token_is_spent_once(app: Flask, client: FlaskClient, accounts: Accounts) -> None:
    pair = accounts.active_user("once@example.com")
    family = family_of(pair)
    rotated = refresh(client, pair["refresh_token"]).json
    row = row_of(app, family)
    assert (row["refresh_generation"], row["refresh_hash"]) == (
        1,
        hashlib.sha256(rotated["refresh_token"].encode()).hexdigest(),
    )
    with past_the_refresh_grace():
        assert "already used" in assert_401(refresh(client, pair["refresh_token"]))["detail"]
    assert_401(refresh(client, rotated["refresh_token"]))


@pytest.mark.postgres("concurrent transactions need PostgreSQL")
@pytest.mark.parametrize("grace", [10, 0])
def test_concurrent_refreshes_continue_one_generation(
    app_factory: Callable[..., Flask], mailbox: Mailbox, grace: int
) -> None:
    app = app_factory(REFRESH_REUSE_GRACE=grace)
    client = app.test_client()
    pair = Accounts(client, mailbox).active_user(f"racing{grace}@example.com")
    answers: list[dict[str, Any]] = []

    def send(c: FlaskClient) -> Any:
        response = refresh(c, pair["refresh_token"])
        if response.status_code == 200:
            answers.append(response.json)
        return response

    statuses = at_once(app, [send] * 8)
    row = row_of(app, family_of(pair))
    # One rotation, whatever the others did: generation 1, its token the only one handed out.
    assert row["refresh_generation"] == 1
    assert (
        row["previous_refresh_hash"] == hashlib.sha256(pair["refresh_token"].encode()).hexdigest()
    )
    assert {a["refresh_token"] for a in answers} == {answers[0]["refresh_token"]}
    assert row["refresh_hash"] == hashlib.sha256(answers[0]["refresh_token"].encode()).hexdigest()
    assert statuses == ([200] * 8 if grace else [200] + [401] * 7)


@pytest.mark.postgres("concurrent transactions need PostgreSQL")
@pytest.mark.parametrize("attempt", range(3))
def test_a_refresh_racing_a_logout_leaves_no_live_token(
    app: Flask, client: FlaskClient, accounts: Accounts, attempt: int
) -> None:
    pair = accounts.active_user(f"race-out{attempt}@example.com")
    answers: list[dict[str, Any]] = []

    def send(c: FlaskClient) -> Any:
        response = refresh(c, pair["refresh_token"])
        if response.status_code == 200:
            answers.append(response.json)
        return response

    at_once(app, [send, lambda c: logout(c, pair["refresh_token"], pair["access_token"])])
    assert row_of(app, family_of(pair))["ended_at"] is not None
    for answer in answers:
        assert_401(refresh(client, answer["refresh_token"]))
        assert_401(me(client, answer["access_token"]))


# --- 4. ended, expired, deactivated ---------------------------------------------------------


def test_an_ended_login_never_refreshes_not_even_within_the_grace(
    app: Flask, client: FlaskClient, accounts: Accounts
) -> None:
    email = "ended-login@example.com"
    pair = accounts.active_user(email)
    rotated = refresh(client, pair["refresh_token"]).json  # the first is in its grace now
    other = accounts.login(email)
    assert end_session(client, other["access_token"], family_of(pair)).status_code == 204
    for token in (pair["refresh_token"], rotated["refresh_token"]):
        assert_401(refresh(client, token))
        assert_401(logout(client, token))
    # Logout and a password change end logins the same way.
    assert logout(client, other["refresh_token"]).status_code == 204
    assert_401(refresh(client, other["refresh_token"]))
    third = accounts.login(email)
    changed = client.post(
        "/auth/password/change",
        json={"old_password": PASSWORD, "new_password": "quartz meadow lantern ferry"},
        headers=bearer(third["access_token"]),
    )
    assert changed.status_code == 204
    assert_401(refresh(client, third["refresh_token"]))


def test_an_expired_login_never_refreshes(
    app: Flask, client: FlaskClient, accounts: Accounts
) -> None:
    pair = accounts.active_user("expired-login@example.com")
    end = current_session(client, pair["access_token"])["expires_at"]
    end_at = utcnow().fromisoformat(end)
    with time_machine.travel(end_at - timedelta(seconds=2), tick=False):
        rotated = refresh(client, pair["refresh_token"]).json
    with time_machine.travel(end_at + timedelta(seconds=1), tick=False):  # within the grace
        for token in (pair["refresh_token"], rotated["refresh_token"]):
            assert "expired" in assert_401(refresh(client, token))["detail"]


def test_a_deactivated_account_spends_nothing(
    app: Flask, client: FlaskClient, accounts: Accounts
) -> None:
    from app.identity.models import User

    email = "benched-login@example.com"
    pair = accounts.active_user(email)
    rotated = refresh(client, pair["refresh_token"]).json
    family = family_of(pair)
    with app.app_context():
        db.session.execute(sa.update(User).where(User.email == email).values(is_active=False))
        db.session.commit()
    before = row_of(app, family)
    for token in (pair["refresh_token"], rotated["refresh_token"]):
        assert_401(refresh(client, token))
    assert row_of(app, family) == before


# --- 5. malformed tokens --------------------------------------------------------------------


def test_malformed_tokens_are_a_401_problem(client: FlaskClient, accounts: Accounts) -> None:
    pair = accounts.active_user("malformed@example.com")
    family = family_of(pair)
    secret = pair["refresh_token"].split(".")[2]
    tokens = [
        "x",
        "a.b.c",
        "..",
        f"{family}..{secret}",
        f"{family}.x.{secret}",
        f"{family}.-1.{secret}",
        f"{family}.+1.{secret}",
        f"{family}.00.{secret}",
        f"{family}.1_0.{secret}",
        f"{family}.{10**40}.{secret}",
        f"{family}.2147483648.{secret}",
        f"{family}.\u0661.{secret}",  # an Arabic-Indic one, which int() would read
        f"{family}.\uff11.{secret}",  # a fullwidth one
        f"{family.upper()}.0.{secret}",
        f"{family}.0.{secret[:-1]}",
        f"{family}.0.{secret}A",
        f"{family}.0.{secret[:-1]}=",
        f"{family}.0.{secret}.0",
        f"{family} .0.{secret}",
        "\u00e9" * 43,
        "\x00" * 43,
        secrets.token_urlsafe(32),  # the legacy shape, which no login holds
        pair["access_token"],
    ]
    for token in tokens:
        assert_401(refresh(client, token))
        assert_401(logout(client, token))
    # 10 KB: in the header it is read and refused; in a body, the body's own bound (4096
    # characters) refuses it first. A problem either way, never a 500.
    huge = f"{family}.0.{secret}" * 100
    assert_problem(refresh(client, "\ud800" * 43), 400)  # no Unicode text: the body is refused
    assert_401(client.post("/auth/refresh", headers=bearer(huge)))
    assert_problem(refresh(client, huge), 422)
    assert_problem(logout(client, huge), 422)
    assert_untouched(client, pair)
    assert refresh(client, pair["refresh_token"]).status_code == 200
