"""What a presented refresh token is to its login, judged from the login's row alone: its
current token, the one just rotated (within REFRESH_REUSE_GRACE), a spent one (reuse), or
nothing of ours. A refresh asks only when its rotation did not take the token; a logout
always asks."""

from __future__ import annotations

import enum
from datetime import datetime, timedelta
from typing import Any, NamedTuple

import sqlalchemy as sa
from flask import current_app
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.expression import ColumnElement
from sqlalchemy.sql.visitors import InternalTraversal, _TraverseInternalsType

from app.core.db import db
from app.identity.models import GroupName, User, UserGroup
from app.sessions.models import LoginSession
from app.sessions.refresh_format import Presented

NOT_VALID = "The refresh token is not valid or has been revoked; log in again."
EXPIRED = "The refresh token has expired; log in again."
REUSED = "The refresh token was already used; every session of this login is revoked."

_sessions, _users, _groups = LoginSession.__table__, User.__table__, UserGroup.__table__


class _Qualified(ColumnElement[Any]):
    """A correlated subquery written with its tables' names wherever it stands. SQLite's
    compiler writes RETURNING columns without them (SQLAlchemy 2.1), and passes that on
    to a subquery there, whose `id` and `user_id` would then name the wrong tables."""

    inherit_cache = True
    _traverse_internals: _TraverseInternalsType = [  # noqa: RUF012 - SQLAlchemy's own form
        ("inner", InternalTraversal.dp_clauseelement)
    ]

    def __init__(self, inner: sa.ScalarSelect[Any]) -> None:
        self.inner = inner
        self.type = inner.type


@compiles(_Qualified)
def _compile_qualified(element: _Qualified, compiler: Any, **kw: Any) -> str:
    kw.pop("include_table", None)
    return str(compiler.process(element.inner, **kw))


# The group of the login's account while that account is active, else None: what a refresh
# needs of the account (it refuses a deactivated one) and what the access token carries.
ACTIVE_GROUP = _Qualified(
    sa.select(_groups.c.name)
    .select_from(_users.join(_groups, _groups.c.id == _users.c.group_id))
    .where(_users.c.id == _sessions.c.user_id, _users.c.is_active)
    .correlate(_sessions)
    .scalar_subquery()
)

_STATE = sa.select(
    _sessions.c.user_id,
    _sessions.c.expires_at,
    _sessions.c.ended_at,
    _sessions.c.refresh_generation,
    _sessions.c.refresh_hash,
    _sessions.c.previous_refresh_hash,
    _sessions.c.rotated_at,
    ACTIVE_GROUP,
).where(_sessions.c.family_id == sa.bindparam("family"))


class LoginState(NamedTuple):
    user_id: int
    expires_at: datetime
    ended_at: datetime | None
    refresh_generation: int
    refresh_hash: str | None
    previous_refresh_hash: str | None
    rotated_at: datetime | None
    group: GroupName | None  # None: the account is deactivated


def login_state(family: str) -> LoginState | None:
    """The refresh state of the login `family`; None when there is no such login (never
    issued, or deleted with its account or by the clean-up)."""
    row = db.session.execute(_STATE, {"family": family}).first()
    return None if row is None else LoginState(*row)


class Verdict(enum.Enum):
    CURRENT = "current"
    GRACE = "grace"
    REUSED = "reused"
    EXPIRED = "expired"
    NOT_VALID = "not valid"


def judge(presented: Presented, login: LoginState | None, now: datetime) -> Verdict:
    """What `presented` is to `login`, the login its family (or legacy hash) names.

    Only a token proven ours may end a login: by its hash on the row, by being the legacy
    token the row names (it was found by that hash), or by its tag. A made-up token of an
    earlier generation has no valid tag and ends nothing; a token of a later generation, or
    a second token of the current one, was never issued."""
    if login is None:
        return Verdict.NOT_VALID
    known = presented.hash in (login.refresh_hash, login.previous_refresh_hash)
    if not (known or presented.legacy or presented.is_tagged_ours()):
        return Verdict.NOT_VALID
    if login.ended_at is not None:
        return Verdict.NOT_VALID
    if login.expires_at <= now:
        return Verdict.EXPIRED
    if presented.hash == login.refresh_hash:
        return Verdict.CURRENT
    if presented.hash == login.previous_refresh_hash and _just_rotated(login.rotated_at, now):
        return Verdict.GRACE
    if presented.generation < login.refresh_generation:
        return Verdict.REUSED
    return Verdict.NOT_VALID


def _just_rotated(rotated_at: datetime | None, now: datetime) -> bool:
    """Whether the login's last rotation is at most REFRESH_REUSE_GRACE seconds old."""
    grace = current_app.config["REFRESH_REUSE_GRACE"]
    return bool(grace) and rotated_at is not None and now <= rotated_at + timedelta(seconds=grace)
