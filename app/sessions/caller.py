"""The caller of an authenticated request, read with its live-login check in one statement.

A plain, read-only record rather than the ORM's `User`: every authenticated request reads
it, and the ORM's identity map and eager-loading path cost several times the query itself
(issue 14). A route that changes the account loads the `User` it changes
(`guard.load_caller_user`).

The statement's columns are the two records' fields in order: a Caller's seven, the profile
row's id (None: no profile), a CallerProfile's fields, then whether the login is live: its
record (`sessions`, one row by its unique family id) is neither ended nor expired.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from datetime import date, datetime

import sqlalchemy as sa

from app.core.db import read_on_own_connection, utcnow
from app.core.prepared import prepared
from app.identity.models import Gender, GroupName, User, UserGroup, UserProfile
from app.sessions.models import LoginSession


@dataclass(frozen=True, slots=True)
class CallerProfile:
    # The attributes ProfileSchema reads, as UserProfile names them.
    first_name: str | None
    last_name: str | None
    gender: Gender | None
    date_of_birth: date | None
    info: str | None
    avatar_key: str | None


@dataclass(frozen=True, slots=True)
class Caller:
    # The attributes UserSchema reads, as User names them.
    id: int
    email: str
    is_active: bool
    group_name: GroupName
    created_at: datetime
    updated_at: datetime
    mfa_enabled: bool
    profile: CallerProfile | None


_users, _groups = User.__table__, UserGroup.__table__
_profiles, _logins = UserProfile.__table__, LoginSession.__table__

# Built once with bound values: building the select again for every request cost more CPU
# than running it. Prepared on PostgreSQL: planning it cost the server more than running it.
_LIVE_LOGIN = (
    sa.select(_logins.c.id)
    .where(
        _logins.c.family_id == sa.bindparam("family"),
        _logins.c.user_id == _users.c.id,
        _logins.c.ended_at.is_(None),
        _logins.c.expires_at > sa.bindparam("now", type_=_logins.c.expires_at.type),
    )
    .exists()
)
_PROFILE_COLUMNS = [_profiles.c[field.name] for field in fields(CallerProfile)]
_CALLER = prepared(
    "accounts_caller",
    sa.select(
        _users.c.id,
        _users.c.email,
        _users.c.is_active,
        _groups.c.name,
        _users.c.created_at,
        _users.c.updated_at,
        _users.c.mfa_enabled,
        _profiles.c.id,
        *_PROFILE_COLUMNS,
        _LIVE_LOGIN,
    )
    .select_from(
        _users.join(_groups, _groups.c.id == _users.c.group_id).outerjoin(
            _profiles, _profiles.c.user_id == _users.c.id
        )
    )
    .where(_users.c.id == sa.bindparam("user_id")),
)


def load_caller(user_id: int, family: str) -> tuple[Caller | None, bool]:
    """The user `user_id` (None when there is none) and whether the login `family` is over.

    A login is alive while its record, of this user, is neither ended nor expired: a token
    naming a family that was never issued is refused too, even with a valid signature.
    """
    row = read_on_own_connection(_CALLER, {"family": family, "user_id": user_id, "now": utcnow()})
    if row is None:
        return None, False
    values = row
    id_, email, is_active, group_name, created_at, updated_at, mfa_enabled, profile_id = values[:8]
    profile = None if profile_id is None else CallerProfile(*values[8:-1])
    caller = Caller(id_, email, is_active, group_name, created_at, updated_at, mfa_enabled, profile)
    return caller, not values[-1]
