"""Migration 0016, one row per login: a database holding refresh tokens as the previous code
wrote them (a row per token, the spent ones kept) is upgraded, and the real app refreshes
the tokens of live logins, which move into the new form; the downgrade writes each live
login's tokens back as the previous code reads them."""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
from flask import Flask
from flask_migrate import downgrade, upgrade

from app.core.db import UTCDateTime, db, utcnow
from app.identity.models import GroupName
from app.identity.users import get_group
from app.passwords.hashing import hash_password
from app.sessions.access_tokens import sign_access_token
from app.sessions.models import LoginSession
from tests.support.http import PASSWORD, assert_401, claims, me, past_the_refresh_grace, refresh
from tests.support.mail import SMTPServer
from tests.support.migrations import REFRESH_TOKENS as TOKENS
from tests.support.migrations import USERS, app_migrated_to, revision_before
from tests.support.sessions import list_sessions

REVISION = "0016_one_row_per_login"
PREVIOUS = revision_before(REVISION)
HOUR = timedelta(hours=1)

# The sessions table before 0016, with the columns the previous code wrote.
SESSIONS = sa.table(
    "sessions",
    sa.column("user_id", sa.Integer()),
    sa.column("family_id", sa.String()),
    sa.column("created_at", UTCDateTime()),
    sa.column("last_used_at", UTCDateTime()),
    sa.column("expires_at", UTCDateTime()),
    sa.column("ended_at", UTCDateTime()),
)

LIVE, FORKED, ENDED = (secrets.token_hex(16) for _ in range(3))


def sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def seed_as_the_previous_code(now: datetime) -> tuple[dict[str, str], dict[str, str]]:
    """A user with three logins as the previous code stored them: LIVE refreshed twice (two
    spent tokens and its current one), FORKED, whose last refresh raced (two unspent tokens:
    the grace gave each tab one), ENDED by a logout. Returns the tokens, opaque as the
    previous code made them (secrets.token_urlsafe(32)), and an access token per login."""
    user_id = db.session.execute(
        sa.insert(USERS).returning(USERS.c.id),
        {
            "email": "old-tokens@example.com",
            "password_hash": hash_password(PASSWORD),
            "is_active": True,
            "group_id": get_group(GroupName.USER).id,
            "created_at": now - 3 * HOUR,
            "updated_at": now - 3 * HOUR,
        },
    ).scalar_one()
    expires_at = now + timedelta(days=5)
    tokens = {name: secrets.token_urlsafe(32) for name in ("first", "second", "current")}
    tokens |= {name: secrets.token_urlsafe(32) for name in ("tab_a", "tab_b", "ended")}
    # (name, family, created, used, revoked)
    rows = [
        ("first", LIVE, now - 3 * HOUR, now - 2 * HOUR, None),
        ("second", LIVE, now - 2 * HOUR, now - HOUR, None),
        ("current", LIVE, now - HOUR, None, None),
        ("tab_a", FORKED, now - HOUR, None, None),
        ("tab_b", FORKED, now - HOUR + timedelta(seconds=2), None, None),
        ("ended", ENDED, now - HOUR, None, now - HOUR / 2),
    ]
    for name, family, created, used, revoked in rows:
        db.session.execute(
            sa.insert(TOKENS),
            {
                "token_hash": sha256(tokens[name]),
                "user_id": user_id,
                "family_id": family,
                "expires_at": expires_at,
                "created_at": created,
                "used_at": used,
                "revoked_at": revoked,
            },
        )
    for family, ended_at in ((LIVE, None), (FORKED, None), (ENDED, now - HOUR / 2)):
        db.session.execute(
            sa.insert(SESSIONS),
            {
                "user_id": user_id,
                "family_id": family,
                "created_at": now - 3 * HOUR,
                "last_used_at": now - HOUR,
                "expires_at": expires_at,
                "ended_at": ended_at,
            },
        )
    db.session.commit()
    lifetime = timedelta(minutes=15)
    access = {
        f: sign_access_token(user_id, GroupName.USER, f, now, lifetime) for f in (LIVE, FORKED)
    }
    return tokens, access


@pytest.fixture(params=["sqlite", "postgresql"])
def app_before(
    request: pytest.FixtureRequest,
    tmp_path: Path,
    make_postgres_database: Callable[[str], str],
    smtp_server: SMTPServer,
) -> Iterator[Flask]:
    """An app on a database migrated to the revision before 0016."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'before.sqlite3'}"
    else:
        url = make_postgres_database("one_row_migration")
    with app_migrated_to(PREVIOUS, url, tmp_path, smtp_server.port) as app:
        yield app


def test_live_logins_keep_refreshing_and_move_to_the_new_form(app_before: Flask) -> None:
    client = app_before.test_client()
    with app_before.app_context():
        tokens, access = seed_as_the_previous_code(utcnow())
        upgrade()
        assert "refresh_tokens" not in sa.inspect(db.engine).get_table_names()
    sessions_before = list_sessions(client, access[LIVE])

    first = refresh(client, tokens["current"])
    assert first.status_code == 200, first.json
    rotated = first.json["refresh_token"]
    assert rotated.startswith(f"{LIVE}.1.")  # the new form, of the same login
    assert claims(first.json["access_token"])["fam"] == LIVE
    # The legacy token just spent is the grace case as any other...
    again = refresh(client, tokens["current"])
    assert again.status_code == 200
    assert again.json["refresh_token"] == rotated
    # ...and the new one goes on.
    second = refresh(client, rotated)
    assert second.status_code == 200
    assert second.json["refresh_token"].startswith(f"{LIVE}.2.")
    assert (
        {s["id"] for s in list_sessions(client, second.json["access_token"])}
        == {s["id"] for s in sessions_before}
        == {LIVE, FORKED}
    )

    # Of the two tokens a raced refresh left, the newer carries the login.
    assert_401(refresh(client, tokens["tab_a"]))
    assert refresh(client, tokens["tab_b"]).status_code == 200
    # An ended login stays ended; a token spent before the upgrade is refused and, its row
    # gone, ends nothing.
    assert_401(refresh(client, tokens["ended"]))
    assert_401(refresh(client, tokens["second"]))
    assert me(client, second.json["access_token"]).status_code == 200


def test_a_legacy_token_presented_after_its_rotation_is_reuse(app_before: Flask) -> None:
    client = app_before.test_client()
    with app_before.app_context():
        tokens, access = seed_as_the_previous_code(utcnow())
        upgrade()
    rotated = refresh(client, tokens["current"]).json
    with past_the_refresh_grace():
        body = assert_401(refresh(client, tokens["current"]))
    assert "already used" in body["detail"]
    assert_401(refresh(client, rotated["refresh_token"]))
    assert_401(me(client, access[LIVE]))
    assert me(client, access[FORKED]).status_code == 200  # another login goes on


def test_the_downgrade_writes_back_what_the_previous_code_reads(app_before: Flask) -> None:
    client = app_before.test_client()
    with app_before.app_context():
        tokens, _ = seed_as_the_previous_code(utcnow())
        upgrade()
    rotated = refresh(client, tokens["current"]).json["refresh_token"]
    with app_before.app_context():
        rotated_at = db.session.scalar(
            sa.select(LoginSession.rotated_at).where(LoginSession.family_id == LIVE)
        )
        db.session.commit()
        downgrade(revision=PREVIOUS)
        rows = {
            row.token_hash: row
            for row in db.session.execute(
                sa.select(TOKENS).where(TOKENS.c.revoked_at.is_(None))
            ).all()
        }
        db.session.commit()
    # LIVE: its current token unspent, the one it spent last spent when it was rotated (the
    # previous code's grace and reuse detection); FORKED: its newer token; ENDED: nothing.
    assert set(rows) == {sha256(rotated), sha256(tokens["current"]), sha256(tokens["tab_b"])}
    assert rows[sha256(rotated)].used_at is None
    assert rows[sha256(rotated)].family_id == LIVE
    assert rows[sha256(tokens["current"])].used_at == rotated_at
    assert rows[sha256(tokens["tab_b"])].used_at is None
    # Up again: the token made between the two migrations still refreshes.
    with app_before.app_context():
        upgrade()
    again = refresh(client, rotated)
    assert again.status_code == 200, again.json
    assert claims(again.json["access_token"])["fam"] == LIVE
