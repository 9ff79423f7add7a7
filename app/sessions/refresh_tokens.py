"""A login ("family") starts: its record and its first token pair; and the clean-up of
expired logins. (It goes on in app/sessions/rotation.py, ends in app/sessions/endings.py.)

The login's record is also its refresh token's state (app/sessions/models.py): one row per
login, however often it is refreshed.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from flask import current_app

from app.core.batches import Batches
from app.core.crypto import hash_token
from app.core.db import db, utcnow
from app.identity.models import GroupName, User
from app.sessions import refresh_format
from app.sessions.access_tokens import sign_access_token
from app.sessions.models import LoginSession
from app.web.requests import client_of_request

_sessions = LoginSession.__table__
# Core statements, built once: SQLAlchemy computes a new statement's cache key on every
# execution, and the ORM's unit of work would cost as much CPU as the rest of a refresh.
_INSERT_LOGIN = sa.insert(_sessions)


def issue_token_pair(user: User) -> dict[str, Any]:
    """Start a login: its record and its first token pair. Every way in starts here.

    The login ends JWT_REFRESH_TOKEN_EXPIRES from now, whatever its refreshes."""
    config = current_app.config
    now = utcnow()
    expires_at = now + timedelta(seconds=config["JWT_REFRESH_TOKEN_EXPIRES"])
    family_id = uuid.uuid4().hex
    refresh_token = refresh_format.first_token(family_id)
    # Signed before this transaction writes: signing may make the first key, in a
    # transaction of its own, which a write held here would keep waiting on SQLite.
    pair = token_pair(user.id, user.group.name, family_id, expires_at, refresh_token, now)
    ip, user_agent = client_of_request()  # none outside a request
    db.session.execute(
        _INSERT_LOGIN,
        {
            "user_id": user.id,
            "family_id": family_id,
            "created_at": now,
            "last_used_at": now,
            "expires_at": expires_at,
            "user_agent": user_agent,
            "ip": ip,
            "refresh_generation": 0,
            "refresh_hash": hash_token(refresh_token),
        },
    )
    return pair


def token_pair(
    user_id: int,
    group: GroupName,
    family: str,
    expires_at: datetime,
    refresh_token: str,
    now: datetime,
) -> dict[str, Any]:
    """What a login hands out, at its start or a refresh: a new access token, which never
    outlives the login, and `refresh_token`."""
    ttl = min(timedelta(seconds=current_app.config["JWT_ACCESS_TOKEN_EXPIRES"]), expires_at - now)
    return {
        "access_token": sign_access_token(user_id, group, family, now, ttl),
        "refresh_token": refresh_token,
        "token_type": "bearer",
        "expires_in": int(ttl.total_seconds()),
    }


def delete_expired_logins(now: datetime, batches: Batches) -> int:
    """Delete the records of logins expired by `now`, ended or not, and so their refresh
    tokens (the scheduled clean-up)."""
    return batches.delete(LoginSession, LoginSession.expires_at, up_to=now)
