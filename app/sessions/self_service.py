"""The person's own logins (/auth/sessions): see where they are signed in, end one, end every
one but the current. Each ending is one transaction with its security event."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa

from app.core.db import db
from app.core.errors import SessionNotFound
from app.core.log import audit
from app.events.models import EventType
from app.events.service import record_event
from app.sessions.endings import end_logins
from app.sessions.models import LoginSession, live_logins_of

# The most recently used logins listed; ending all the others still ends every one.
MAX_LISTED = 100


@dataclass(frozen=True, slots=True)
class LiveSession:
    id: str  # the family id, which the login's access tokens carry as `fam`
    created_at: datetime
    last_used_at: datetime
    expires_at: datetime
    user_agent: str | None
    ip: str | None
    current: bool


def live_sessions(user_id: int, current_family: str) -> list[LiveSession]:
    """The user's live logins, most recently used first (at most MAX_LISTED); `current`
    marks the login `current_family`, the one of the request's access token."""
    rows = db.session.scalars(
        sa.select(LoginSession)
        .where(live_logins_of(user_id))
        .order_by(LoginSession.last_used_at.desc(), LoginSession.id.desc())
        .limit(MAX_LISTED)
    )
    return [
        LiveSession(
            row.family_id,
            row.created_at,
            row.last_used_at,
            row.expires_at,
            row.user_agent,
            row.ip,
            current=row.family_id == current_family,
        )
        for row in rows
    ]


def end_session(user_id: int, session_id: str) -> None:
    """End the live login `session_id` (its family id) of the user: its refresh and access
    tokens stop at once. Any other id (another person's login, an ended or expired one, none
    at all) is SessionNotFound, alike, and changes nothing."""
    if not end_logins(LoginSession.family_id == session_id, LoginSession.user_id == user_id):
        raise SessionNotFound("No live session of yours has this id.")
    record_event(EventType.SESSION_ENDED, user_id)
    db.session.commit()
    audit("session_ended", user_id=user_id, session_id=session_id)


def end_other_sessions(user_id: int, current_family: str) -> None:
    """End every live login of the user but `current_family` ("sign out everywhere else").
    One security event says it, when there was any other login to end."""
    ended = end_logins(LoginSession.user_id == user_id, LoginSession.family_id != current_family)
    if ended:
        record_event(EventType.SESSION_ENDED, user_id)
    db.session.commit()
    audit("other_sessions_ended", user_id=user_id, count=ended)
