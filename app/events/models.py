"""The security-events table."""

from __future__ import annotations

import enum
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from app.core.db import UTCDateTime, db, utcnow


class EventType(enum.StrEnum):
    REGISTERED = "registered"
    ACTIVATED = "activated"
    LOGIN_SUCCEEDED = "login_succeeded"
    LOGIN_FAILED = "login_failed"
    LOGGED_OUT = "logged_out"
    REFRESH_REUSE_DETECTED = "refresh_reuse_detected"
    PASSWORD_CHANGED = "password_changed"  # noqa: S105 - an event name
    PASSWORD_RESET = "password_reset"  # noqa: S105 - an event name
    EMAIL_CHANGE_REQUESTED = "email_change_requested"
    EMAIL_CHANGED = "email_changed"
    SESSION_ENDED = "session_ended"
    GROUP_CHANGED = "group_changed"
    DEACTIVATED = "deactivated"
    DELETED = "deleted"
    MFA_ENABLED = "mfa_enabled"
    MFA_DISABLED = "mfa_disabled"
    MFA_RESET = "mfa_reset"
    MFA_FAILED = "mfa_failed"
    RECOVERY_CODE_USED = "recovery_code_used"
    RECOVERY_CODES_REGENERATED = "recovery_codes_regenerated"
    PASSKEY_ADDED = "passkey_added"
    PASSKEY_REMOVED = "passkey_removed"
    # A valid signature whose counter did not move forward: a copy of the authenticator.
    PASSKEY_CLONE_SUSPECTED = "passkey_clone_suspected"
    IDENTITY_LINKED = "identity_linked"
    IDENTITY_UNLINKED = "identity_unlinked"


class SecurityEvent(db.Model):  # type: ignore[name-defined]
    """One event of one account. `subject` is a keyed hash of the user's id, written with the
    row: when the user is deleted, `user_id` becomes NULL and the row, pseudonymised, keeps
    only that hash until retention removes it."""

    __tablename__ = "security_events"
    __table_args__ = (sa.Index("ix_security_events_user_id_id", "user_id", "id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int | None] = mapped_column(sa.ForeignKey("users.id", ondelete="SET NULL"))
    subject: Mapped[str] = mapped_column(sa.String(64))
    type: Mapped[str] = mapped_column(sa.String(40))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)
    ip: Mapped[str | None] = mapped_column(sa.String(45))
    user_agent: Mapped[str | None] = mapped_column(sa.String(255))
    # The admin who acted, when it was not the person; no foreign key, so the record of what
    # an admin did outlives the admin's account.
    actor_id: Mapped[int | None] = mapped_column()
