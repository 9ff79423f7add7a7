"""Delete expired tokens in small batches, so no long lock is held on busy tables."""

from __future__ import annotations

import logging
import time

import sqlalchemy as sa

from app.db import db, rows_changed
from app.models import TOKEN_MODELS, utcnow

log = logging.getLogger(__name__)

BATCH_SIZE = 2000
# A breath between batches leaves the database to the requests: a million expired rows cost
# about 10 s more, and /auth/me keeps its latency while they go.
PAUSE_SECONDS = 0.02


def delete_expired_tokens(
    batch_size: int = BATCH_SIZE, pause_seconds: float = PAUSE_SECONDS
) -> dict[str, int]:
    """Return how many tokens of each kind were deleted. Safe to run twice at once: each
    batch deletes whatever expired rows are still there, and a row deleted by the other run
    is simply not counted."""
    now = utcnow()
    counts: dict[str, int] = {}
    for kind, model in TOKEN_MODELS.items():
        counts[kind] = 0
        while True:
            batch = (
                sa.select(model.id)
                .where(model.expires_at <= now)
                .order_by(model.id)
                .limit(batch_size)
                .scalar_subquery()
            )
            deleted = rows_changed(sa.delete(model).where(model.id.in_(batch)))
            db.session.commit()
            counts[kind] += deleted
            if deleted < batch_size:
                break
            time.sleep(pause_seconds)
    log.info("expired_tokens_deleted", extra=counts)
    return counts
