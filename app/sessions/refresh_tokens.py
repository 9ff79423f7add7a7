"""A login ("family"): started with its first token pair and its record, continued by
spending its refresh token (ended in app/sessions/endings.py).

The login's record is also its refresh token's state (app/sessions/models.py): one row per
login, however often it is refreshed. A refresh is one conditional UPDATE of that row, which
spends the presented token, stores the next one's hash and notes the use; only a token that
statement did not take is looked at again (`_presented_again`).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, TypeVar

import sqlalchemy as sa
from flask import current_app

from app.core.batches import Batches
from app.core.crypto import hash_token
from app.core.db import UTCDateTime, db, utcnow, write_on_own_connection
from app.core.errors import NotAuthenticated
from app.core.log import audit
from app.core.prepared import prepared
from app.events.models import EventType
from app.events.service import record_event
from app.identity.models import GroupName, User
from app.identity.users import ACCOUNT_GONE
from app.sessions import refresh_format
from app.sessions.access_tokens import issue_access_token, sign_access_token
from app.sessions.endings import end_login
from app.sessions.models import LoginSession
from app.sessions.refresh_format import Presented
from app.sessions.refresh_judge import (
    ACTIVE_GROUP,
    EXPIRED,
    NOT_VALID,
    REUSED,
    LoginState,
    Verdict,
    judge,
    login_state,
)
from app.web.requests import client_of_request

T = TypeVar("T")

# A login's last use is written at most this often.
LAST_USED_STEP = timedelta(minutes=1)

_sessions = LoginSession.__table__
# Core statements, built once: SQLAlchemy computes a new statement's cache key on every
# execution, and the ORM's unit of work would cost as much CPU as the rest of a refresh.
_INSERT_LOGIN = sa.insert(_sessions)
_LEGACY_FAMILY = sa.select(_sessions.c.family_id).where(
    _sessions.c.legacy_refresh_hash == sa.bindparam("spent_hash")
)


def _at(name: str) -> sa.BindParameter[datetime]:
    return sa.bindparam(name, type_=UTCDateTime())


# The whole refresh: spend the presented token (its hash is the current one), store the next
# one's, note the use (at most once a minute), and read what the access token needs, if the
# login is live and its account active. Of concurrent requests with one token, one updates
# the row; the others find the hash changed, whichever waited for the row's lock. Prepared
# on PostgreSQL, in a transaction of its own (`write_on_own_connection`).
_ROTATE = prepared(
    "accounts_rotate",
    sa.update(_sessions)
    .where(
        _sessions.c.family_id == sa.bindparam("family"),
        _sessions.c.refresh_hash == sa.bindparam("spent_hash"),
        _sessions.c.ended_at.is_(None),
        _sessions.c.expires_at > _at("now"),
        ACTIVE_GROUP.is_not(None),
    )
    .values(
        refresh_generation=sa.bindparam("generation"),
        refresh_hash=sa.bindparam("next_hash"),
        previous_refresh_hash=sa.bindparam("spent_hash"),
        rotated_at=_at("now"),
        last_used_at=sa.case(
            (_sessions.c.last_used_at > _at("recently"), _sessions.c.last_used_at),
            else_=_at("now"),
        ),
    )
    .returning(_sessions.c.user_id, _sessions.c.expires_at, ACTIVE_GROUP),
)


@dataclass(frozen=True, slots=True)
class Continued:
    """A login a refresh token continues: what its next pair is made of."""

    user_id: int
    group: GroupName
    family: str
    expires_at: datetime
    refresh_token: str


def issue_token_pair(user: User) -> dict[str, Any]:
    """Start a login: its record and its first token pair. Every way in starts here.

    The login ends JWT_REFRESH_TOKEN_EXPIRES from now, whatever its refreshes."""
    config = current_app.config
    now = utcnow()
    expires_at = now + timedelta(seconds=config["JWT_REFRESH_TOKEN_EXPIRES"])
    family_id = uuid.uuid4().hex
    access_ttl = min(timedelta(seconds=config["JWT_ACCESS_TOKEN_EXPIRES"]), expires_at - now)
    # Signed before this transaction writes: signing may make the first key, in a
    # transaction of its own, which a write held here would keep waiting on SQLite.
    access_token = issue_access_token(user, family_id, now, access_ttl)
    refresh_token = refresh_format.first_token(family_id)
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
    return _pair(access_token, refresh_token, access_ttl)


def continue_login(login: Continued) -> dict[str, Any]:
    """The next pair of a login whose refresh token was spent: a new access token, which
    never outlives the login, and the refresh token the rotation made."""
    now = utcnow()
    ttl = min(
        timedelta(seconds=current_app.config["JWT_ACCESS_TOKEN_EXPIRES"]), login.expires_at - now
    )
    access_token = sign_access_token(login.user_id, login.group, login.family, now, ttl)
    return _pair(access_token, login.refresh_token, ttl)


def _pair(access_token: str, refresh_token: str, access_ttl: timedelta) -> dict[str, Any]:
    return {
        "access_token": access_token,
        "refresh_token": refresh_token,
        "token_type": "bearer",
        "expires_in": int(access_ttl.total_seconds()),
    }


def spend_refresh_token(
    refresh_token: str, next_pair: Callable[[Continued], T]
) -> tuple[Continued, T]:
    """Spend the presented refresh token for the next one of its login, and hand out what
    `next_pair` makes of it; it is made before the spending commits, so that should it fail,
    the token is not spent.

    A refresh token works once. Presented again within REFRESH_REUSE_GRACE seconds of its
    rotation, while it is the token its login spent last, it is a request that raced the
    rotation (two tabs refreshing at once, a retry after a lost answer): it is given the
    token that rotation made, and its login goes on. Presented again otherwise, it was
    stolen or replayed, so the whole login ends (RFC 9700 section 4.14.2). An account
    deleted or deactivated since is refused, and nothing is spent then.
    """
    presented, family = _read(refresh_token)
    now = utcnow()
    generation = presented.generation + 1
    next_token = refresh_format.next_token(family, generation, presented.text, now)

    def handed_out(rotated: tuple[Any, ...]) -> tuple[Continued, T]:
        user_id, expires_at, group = rotated
        login = Continued(user_id, group, family, expires_at, next_token)
        return login, next_pair(login)

    spent = write_on_own_connection(
        _ROTATE,
        {
            "family": family,
            "spent_hash": presented.hash,
            "generation": generation,
            "next_hash": hash_token(next_token),
            "now": now,
            "recently": now - LAST_USED_STEP,
        },
        then=handed_out,
    )
    if spent is not None:
        return spent
    login = _presented_again(presented, family, now)
    return login, next_pair(login)


def _presented_again(presented: Presented, family: str, now: datetime) -> Continued:
    """A token the rotation did not take: spent before, ended, expired, its account gone,
    or not ours."""
    state = login_state(family)
    verdict = judge(presented, state, now)
    if verdict is Verdict.CURRENT:  # the rotation saw the token: its account stopped it
        raise NotAuthenticated(ACCOUNT_GONE)
    if verdict is not Verdict.GRACE:
        _refuse(verdict, family, state)
    assert state is not None and state.rotated_at is not None
    # The token that rotation made, made again: the same text.
    token = refresh_format.next_token(
        family, state.refresh_generation, presented.text, state.rotated_at
    )
    if hash_token(token) != state.refresh_hash:  # rotated under another SECRET_KEY
        raise NotAuthenticated(NOT_VALID)
    if state.group is None:
        raise NotAuthenticated(ACCOUNT_GONE)
    audit("refresh_token_presented_within_grace", user_id=state.user_id, family=family)
    return Continued(state.user_id, state.group, family, state.expires_at, token)


def login_of_refresh_token(refresh_token: str) -> tuple[int, str]:
    """(user id, family) of the login a refresh token may end (logout): its current token,
    or the one just rotated, within the grace. Any other is refused as a refresh refuses
    it: a spent one ends its login as reuse."""
    presented, family = _read(refresh_token)
    state = login_state(family)
    verdict = judge(presented, state, utcnow())
    if verdict is not Verdict.CURRENT and verdict is not Verdict.GRACE:
        _refuse(verdict, family, state)
    assert state is not None
    return state.user_id, family


def _refuse(verdict: Verdict, family: str, state: LoginState | None) -> None:
    """Refuse the token (NotAuthenticated); a spent one ends its whole login first, with its
    security event, committed whatever the request does next."""
    if verdict is Verdict.EXPIRED:
        raise NotAuthenticated(EXPIRED)
    if verdict is Verdict.REUSED and state is not None:
        end_login(family)
        record_event(EventType.REFRESH_REUSE_DETECTED, state.user_id)
        db.session.commit()
        audit("refresh_token_reuse_detected", user_id=state.user_id, family=family)
        raise NotAuthenticated(REUSED)
    raise NotAuthenticated(NOT_VALID)


def _read(refresh_token: str) -> tuple[Presented, str]:
    """The presented token and its login's family; NotAuthenticated when it has neither
    form, or is a legacy token no login holds."""
    presented = refresh_format.parse(refresh_token)
    if presented is None:
        raise NotAuthenticated(NOT_VALID)
    if presented.family is not None:
        return presented, presented.family
    family = db.session.scalar(_LEGACY_FAMILY, {"spent_hash": presented.hash})
    if family is None:
        raise NotAuthenticated(NOT_VALID)
    return presented, family


def delete_expired_logins(now: datetime, batches: Batches) -> int:
    """Delete the records of logins expired by `now`, ended or not, and so their refresh
    tokens (the scheduled clean-up)."""
    return batches.delete(LoginSession, LoginSession.expires_at, up_to=now)
