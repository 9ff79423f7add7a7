"""Recording security events, reading them back, and forgetting them after retention."""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from datetime import datetime, timedelta

import sqlalchemy as sa
from flask import current_app

from app.core.batches import Batches
from app.core.crypto import derive_key
from app.core.db import db
from app.events.models import EventType, SecurityEvent
from app.web.requests import client_of_request

ENCRYPTION_PURPOSE = "security-event-subjects"


def subject_of(user_id: int) -> str:
    """The keyed hash that stands for the user in their events: a deleted user's events keep
    it, so they can still be told apart from each other's, but not tied to anyone without
    SECRET_KEY."""
    key = derive_key(ENCRYPTION_PURPOSE)
    return hmac.new(key, str(user_id).encode(), hashlib.sha256).hexdigest()


def record_event(event: EventType, user_id: int, *, actor_id: int | None = None) -> None:
    """Add `event` of the account `user_id` to the current transaction, so that it is
    written with the change it records, or not at all. The address and user agent are the
    request's (the address as resolved through TRUSTED_PROXIES); `actor_id` is the admin who
    acted on someone else's account."""
    ip, user_agent = client_of_request()
    db.session.add(
        SecurityEvent(
            user_id=user_id,
            subject=subject_of(user_id),
            type=event.value,
            ip=ip,
            user_agent=user_agent,
            actor_id=actor_id,
        )
    )


@dataclass(frozen=True)
class EventPage:
    items: list[SecurityEvent]
    page: int
    per_page: int
    total: int


def _newest_first(user_id: int) -> sa.Select[SecurityEvent]:
    return (
        sa.select(SecurityEvent)
        .where(SecurityEvent.user_id == user_id)
        .order_by(SecurityEvent.id.desc())
    )


def events_of(user_id: int, page: int, per_page: int) -> EventPage:
    """One page of the account's events, newest first."""
    mine = SecurityEvent.user_id == user_id
    total = db.session.scalar(sa.select(sa.func.count(SecurityEvent.id)).where(mine)) or 0
    items = db.session.scalars(
        _newest_first(user_id).limit(per_page).offset((page - 1) * per_page)
    ).all()
    return EventPage(list(items), page, per_page, total)


def all_events_of(user_id: int) -> list[SecurityEvent]:
    """Every event of the account, newest first (the data export)."""
    return list(db.session.scalars(_newest_first(user_id)))


def delete_old_events(now: datetime, batches: Batches) -> int:
    """Delete the events older than SECURITY_EVENT_RETENTION_DAYS (the scheduled clean-up)."""
    cutoff = now - timedelta(days=current_app.config["SECURITY_EVENT_RETENTION_DAYS"])
    return batches.delete(SecurityEvent, SecurityEvent.created_at, before=cutoff)
