"""The scheduled clean-up: every package's expired tokens and old security events, in small
batches."""

from __future__ import annotations

import logging

from app.core.db import DELETE_BATCH, DELETE_PAUSE, utcnow
from app.events.service import delete_old_events
from app.links.tokens import delete_expired_link_tokens
from app.mfa import second_step
from app.oidc.flow import delete_expired_sign_ins
from app.passkeys import challenges as passkey_challenges
from app.sessions.refresh_tokens import delete_expired_logins

log = logging.getLogger(__name__)


def delete_expired_tokens(
    batch_size: int = DELETE_BATCH, pause_seconds: float = DELETE_PAUSE
) -> dict[str, int]:
    """Delete expired activation, reset, email-change and refresh tokens, the records of
    expired logins, two-factor steps, passkey challenges, social sign-ins under way and their
    one-time codes, and security events past their retention; return how many of each. Safe
    to run twice at once (see `app.core.db.delete_in_batches`)."""
    now = utcnow()
    counts = {
        **delete_expired_link_tokens(now, batch_size, pause_seconds),
        "sessions": delete_expired_logins(now, batch_size, pause_seconds),
        "mfa_challenges": second_step.delete_expired_challenges(now, batch_size, pause_seconds),
        "webauthn_challenges": passkey_challenges.delete_expired_challenges(
            now, batch_size, pause_seconds
        ),
        **delete_expired_sign_ins(now, batch_size, pause_seconds),
        "security_events": delete_old_events(now, batch_size, pause_seconds),
    }
    log.info("expired_tokens_deleted", extra=counts)
    return counts
