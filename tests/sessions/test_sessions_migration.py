"""The migration that gives each login its record: a database holding logins of the revision
before it is upgraded, and its logins keep working (the guard now reads the records); it
downgrades cleanly, and an ending made meanwhile survives the round trip."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
from flask import Flask
from flask_migrate import downgrade, upgrade

from app.core.db import db, utcnow
from app.identity.models import GroupName
from app.identity.users import get_group
from app.passwords.hashing import hash_password
from app.sessions.access_tokens import sign_access_token
from tests.support.http import PASSWORD, claims, login, me, refresh
from tests.support.mail import SMTPServer
from tests.support.migrations import REFRESH_TOKENS as TOKENS
from tests.support.migrations import USERS, app_migrated_to, revision_before
from tests.support.sessions import current_session, end_session, list_sessions

REVISION = "0010_sessions"
PREVIOUS = revision_before(REVISION)
HOUR = timedelta(hours=1)


# Family ids as the service has always made them (uuid4().hex).
LIVE, ENDED = "5f0d4a2c9b3e4e7a8c1d2b3a4f5e6d7c", "0a1b2c3d4e5f40718293a4b5c6d7e8f9"


def token(name: str) -> str:
    return f"refresh-token-{name}-" + "x" * 30


def seed_logins_of_the_previous_revision(now: datetime) -> dict[str, str]:
    """A user with a live login (rotated once) and an ended one, as the previous revision
    stored them; the access token of each, signed as the service signs them."""
    user_id = db.session.execute(
        sa.insert(USERS).returning(USERS.c.id),
        {
            "email": "before@example.com",
            "password_hash": hash_password(PASSWORD),
            "is_active": True,
            "group_id": get_group(GroupName.USER).id,
            "created_at": now - timedelta(days=3),
            "updated_at": now - timedelta(days=3),
        },
    ).scalar_one()
    # (token, family, created, used, revoked): the live login's first token spent an hour
    # ago and its current one; a login that a logout ended.
    for name, family, created, used, revoked in [
        ("first", LIVE, now - 2 * HOUR, now - HOUR, None),
        ("current", LIVE, now - HOUR, None, None),
        ("ended", ENDED, now - 3 * HOUR, None, now - HOUR / 2),
    ]:
        db.session.execute(
            sa.insert(TOKENS),
            {
                "token_hash": hashlib.sha256(token(name).encode()).hexdigest(),
                "user_id": user_id,
                "family_id": family,
                "expires_at": now + timedelta(days=5),
                "created_at": created,
                "used_at": used,
                "revoked_at": revoked,
            },
        )
    db.session.commit()
    return {
        family: sign_access_token(user_id, GroupName.USER, family, now, timedelta(minutes=15))
        for family in (LIVE, ENDED)
    }


@pytest.fixture(params=["sqlite", "postgresql"])
def app_before(
    request: pytest.FixtureRequest,
    tmp_path: Path,
    make_postgres_database: Callable[[str], str],
    smtp_server: SMTPServer,
) -> Iterator[Flask]:
    """An app on a database migrated to the revision before the sessions."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'before.sqlite3'}"
    else:
        url = make_postgres_database("sessions_migration")
    with app_migrated_to(PREVIOUS, url, tmp_path, smtp_server.port) as app:
        yield app


def test_existing_logins_get_a_record_and_keep_working(app_before: Flask) -> None:
    client = app_before.test_client()
    now = utcnow().replace(microsecond=0)
    with app_before.app_context():
        access = seed_logins_of_the_previous_revision(now)
        upgrade()
    # The live login works as it did, with its record; the ended one stays ended.
    assert me(client, access[LIVE]).status_code == 200
    assert me(client, access[ENDED]).status_code == 401
    (record,) = list_sessions(client, access[LIVE])
    assert record["id"] == LIVE
    assert record["current"] is True
    assert (record["user_agent"], record["ip"]) == (None, None)  # never stored before
    assert datetime.fromisoformat(record["created_at"]) == now - timedelta(hours=2)
    assert datetime.fromisoformat(record["last_used_at"]) == now - timedelta(hours=1)
    assert datetime.fromisoformat(record["expires_at"]) == now + timedelta(days=5)
    assert refresh(client, token("ended")).status_code == 401
    refreshed = refresh(client, token("current"))
    assert refreshed.status_code == 200
    pair = refreshed.json
    assert claims(pair["access_token"])["fam"] == LIVE
    assert current_session(client, pair["access_token"])["id"] == record["id"]


def test_the_downgrade_is_clean_and_keeps_what_ended_ended(app_before: Flask) -> None:
    client = app_before.test_client()
    with app_before.app_context():
        access = seed_logins_of_the_previous_revision(utcnow())
        upgrade()
    # A login started after the upgrade ends the old one through the new endpoint.
    later = login(client, "before@example.com").json
    old_id = current_session(client, access[LIVE])["id"]
    assert end_session(client, later["access_token"], old_id).status_code == 204
    with app_before.app_context():
        downgrade(revision=PREVIOUS)
        assert "sessions" not in sa.inspect(db.engine).get_table_names()
        live_families = db.session.execute(
            sa.select(TOKENS.c.family_id).where(TOKENS.c.revoked_at.is_(None))
        ).scalars()
        # The ending was written to the tokens too: only the later login is live.
        assert set(live_families) == {claims(later["access_token"])["fam"]}
        db.session.commit()
        upgrade()
    assert me(client, later["access_token"]).status_code == 200
    assert me(client, access[LIVE]).status_code == 401
    assert [item["current"] for item in list_sessions(client, later["access_token"])] == [True]
