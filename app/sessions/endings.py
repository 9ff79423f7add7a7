"""The one way a login ends, whatever ends it: logout, reuse of a spent refresh token, the
person's session list, a password change or reset, an email change, two-factor turned on or
off, a deactivation."""

from __future__ import annotations

import sqlalchemy as sa

from app.core.db import rows_changed, utcnow
from app.sessions.models import LoginSession


def end_logins(*which: sa.ColumnElement[bool]) -> int:
    """End the live logins that meet `which` (conditions on LoginSession) in the current
    transaction; return how many ended. The one way a login ends: its record is ended, and
    with it its refresh token, and its access tokens stop at their next use (the guard reads
    the record on every request, on every process)."""
    now = utcnow()
    return rows_changed(
        sa.update(LoginSession)
        .where(LoginSession.ended_at.is_(None), LoginSession.expires_at > now, *which)
        .values(ended_at=now)
        .execution_options(synchronize_session=False)
    )


def end_login(family_id: str) -> None:
    """End one login (logout, a replayed refresh token)."""
    end_logins(LoginSession.family_id == family_id)


def end_all_logins(user_id: int, keep_family: str | None = None) -> None:
    """End every login of the user (a password change, a deactivation), or every one but
    `keep_family`: the login that made the change (an email change, two-factor turned on
    or off)."""
    keep = [] if keep_family is None else [LoginSession.family_id != keep_family]
    end_logins(LoginSession.user_id == user_id, *keep)
