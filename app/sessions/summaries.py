"""A person's live logins as they read them: what the data export lists under `sessions`.

Today a login is a refresh-token family, so its summary is read from the family's token
rows; the service records no address or user agent for it yet. When logins get records of
their own, this one function reads them instead and the export follows.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa

from app.core.db import db, utcnow
from app.sessions.models import RefreshToken


@dataclass(frozen=True)
class SessionSummary:
    created_at: datetime  # the sign-in
    last_used_at: datetime  # the latest refresh (the sign-in if none)
    expires_at: datetime
    user_agent: str | None = None
    ip: str | None = None


def sessions_of(user_id: int) -> list[SessionSummary]:
    """The user's live logins, newest first: families with a token neither revoked nor
    expired, the rule the guard applies. No family id or token leaves this function."""
    live = (
        sa.select(
            sa.func.min(RefreshToken.created_at),
            sa.func.max(RefreshToken.created_at),
            sa.func.max(RefreshToken.expires_at),
        )
        .where(
            RefreshToken.user_id == user_id,
            RefreshToken.revoked_at.is_(None),
            RefreshToken.expires_at > utcnow(),
        )
        .group_by(RefreshToken.family_id)
        .order_by(sa.func.min(RefreshToken.created_at).desc())
    )
    return [SessionSummary(*row) for row in db.session.execute(live)]
