"""The email outbox table."""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from app.core.db import UTCDateTime, db, utcnow

# The rows the sweep may dispatch again: not sent, and still holding the email.
UNSENT = "sent_at IS NULL AND payload IS NOT NULL"


class EmailOutbox(db.Model):  # type: ignore[name-defined]
    """An email promised by a committed change, written in the same transaction.

    The payload (recipient, subject, bodies) is encrypted, since a body carries a link
    secret, and dropped once the email is delivered; `message_id` stays, so a re-send after
    a lost acknowledgement is the same message to the recipient's mail client.
    """

    __tablename__ = "email_outbox"
    __table_args__ = (
        # The sweep's look for what is still to send: only unsent rows, a sliver of a table
        # that keeps a week of sent ones (migration 0015).
        sa.Index(
            "ix_email_outbox_unsent_next_attempt_at",
            "next_attempt_at",
            postgresql_where=sa.text(UNSENT),
            sqlite_where=sa.text(UNSENT),
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    # Whose email it is: deleting the account deletes its unsent emails with it.
    user_id: Mapped[int | None] = mapped_column(
        sa.ForeignKey("users.id", ondelete="CASCADE"), index=True
    )
    message_id: Mapped[str] = mapped_column(sa.String(255), unique=True)
    payload: Mapped[str | None] = mapped_column(sa.Text)
    # Indexed for the retention clean-up, which deletes finished rows by age.
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)
    # When the sweep next looks at it, if it is still not sent by then (the partial index
    # above).
    next_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime)
    # How many times the sweep dispatched it again.
    attempts: Mapped[int] = mapped_column(default=0, server_default="0")
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # Refused for good by the mail server (a 5xx answer), and its answer: never tried again.
    failed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    failure: Mapped[str | None] = mapped_column(sa.String(255))
