"""How long the email outbox keeps a row after its email is done with: deleted by the
scheduled clean-up (app/periodic/cleanup.py), in batches like every other aged row."""

from __future__ import annotations

from datetime import datetime

from app.core.batches import Batches
from app.courier.models import EmailOutbox
from app.courier.outbox import KEEP_FINISHED


def delete_finished_emails(now: datetime, batches: Batches) -> int:
    """Delete the outbox rows made more than KEEP_FINISHED before `now` whose email is done
    with (sent, refused for good or given up: its payload dropped). A row still carrying its
    payload stays: the outbox sweep is not finished with it."""
    return batches.delete(
        EmailOutbox,
        EmailOutbox.created_at,
        before=now - KEEP_FINISHED,
        where=[EmailOutbox.payload.is_(None)],
    )
