"""Delete expired tokens in small batches, so no long lock is held on busy tables."""

from __future__ import annotations

import logging

import sqlalchemy as sa

from app.extensions import db, rows_changed
from app.models import TOKEN_MODELS, utcnow

log = logging.getLogger(__name__)

BATCH_SIZE = 5000


def delete_expired_tokens(batch_size: int = BATCH_SIZE) -> dict[str, int]:
    """Return how many tokens of each kind were deleted. Safe to run twice at once: each
    batch deletes by id whatever is still there, and a row deleted by the other run is
    simply not counted."""
    now = utcnow()
    counts: dict[str, int] = {}
    for kind, model in TOKEN_MODELS.items():
        counts[kind] = 0
        while True:
            ids = db.session.scalars(
                sa.select(model.id)
                .where(model.expires_at <= now)
                .order_by(model.id)
                .limit(batch_size)
            ).all()
            if not ids:
                break
            counts[kind] += rows_changed(sa.delete(model).where(model.id.in_(ids)))
            db.session.commit()
            if len(ids) < batch_size:
                break
    log.info("expired_tokens_deleted", extra=counts)
    return counts
