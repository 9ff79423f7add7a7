"""A login goes on: its refresh token spent for the next pair.

A refresh is one conditional UPDATE of the login's row (app/sessions/models.py), which
spends the presented token, stores the next one's hash and notes the use; only a token that
statement did not take is looked at again (`_presented_again`). The UPDATE commits once the
next pair is signed, so a refresh that fails spends nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa

from app.core.crypto import hash_token
from app.core.db import UTCDateTime, db, utcnow, write_on_own_connection
from app.core.errors import NotAuthenticated
from app.core.log import audit
from app.core.prepared import prepared
from app.events.models import EventType
from app.events.service import record_event
from app.identity.models import GroupName
from app.identity.users import ACCOUNT_GONE
from app.sessions import refresh_format
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
from app.sessions.refresh_tokens import token_pair

# A login's last use is written at most this often.
LAST_USED_STEP = timedelta(minutes=1)

_sessions = LoginSession.__table__
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


def spend_refresh_token(refresh_token: str) -> tuple[Continued, dict[str, Any]]:
    """Spend the presented refresh token for the next pair of its login: the login, and the
    pair. The pair is signed before the spending commits, so that should it fail, the token
    is not spent.

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

    def handed_out(rotated: tuple[Any, ...]) -> tuple[Continued, dict[str, Any]]:
        user_id, expires_at, group = rotated
        login = Continued(user_id, group, family, expires_at, next_token)
        return login, _next_pair(login)

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
    return login, _next_pair(login)


def _next_pair(login: Continued) -> dict[str, Any]:
    """The next pair of a login whose refresh token was spent, with the token the rotation
    made."""
    return token_pair(
        login.user_id, login.group, login.family, login.expires_at, login.refresh_token, utcnow()
    )


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
