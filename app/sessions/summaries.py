"""A person's live logins as they read them: what the data export lists under `sessions`
(the list endpoint, app/sessions/self_service.py, adds which one is the caller's)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa

from app.core.db import db
from app.sessions.models import LoginSession, live_logins_of


@dataclass(frozen=True)
class SessionSummary:
    created_at: datetime  # the sign-in
    last_used_at: datetime  # the latest refresh (the sign-in if none)
    expires_at: datetime
    user_agent: str | None
    ip: str | None


def sessions_of(user_id: int) -> list[SessionSummary]:
    """The user's live logins, newest first: records neither ended nor expired, the rule the
    guard applies. No family id or token leaves this function."""
    rows = db.session.scalars(
        sa.select(LoginSession)
        .where(live_logins_of(user_id))
        .order_by(LoginSession.created_at.desc(), LoginSession.id.desc())
    )
    return [
        SessionSummary(row.created_at, row.last_used_at, row.expires_at, row.user_agent, row.ip)
        for row in rows
    ]
