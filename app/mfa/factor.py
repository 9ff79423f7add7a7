"""The account's factor in the database: a code checked and spent, recovery codes replaced,
the factor removed, and each change recorded (security event and notice email).

Every check of a code goes through `spend_code`, at sign-in as when the factor is turned off
or its recovery codes are renewed, so "a code works once" has one home.
"""

from __future__ import annotations

import enum
import logging

import sqlalchemy as sa
from cryptography.fernet import InvalidToken

from app.core.db import db, rows_changed, utcnow
from app.core.log import audit
from app.courier.messages import queue_notice
from app.events.models import EventType
from app.events.service import record_event
from app.identity.models import User
from app.mfa import totp
from app.mfa.models import MfaChallenge, RecoveryCode, TotpFactor

log = logging.getLogger(__name__)

# The notice each change of the factor sends to the account's address.
NOTICES = {
    EventType.MFA_ENABLED: "Two-factor sign-in is on for your cinema account",
    EventType.MFA_DISABLED: "Two-factor sign-in is off for your cinema account",
    EventType.MFA_RESET: "An administrator turned off two-factor sign-in for your account",
    EventType.RECOVERY_CODE_USED: "A recovery code was used to sign in to your cinema account",
    EventType.RECOVERY_CODES_REGENERATED: "New recovery codes for your cinema account",
}


class Used(enum.Enum):
    TOTP = "totp"
    RECOVERY = "recovery"


class SecretUnreadable(RuntimeError):
    """A stored TOTP secret cannot be decrypted with SECRET_KEY (changed without running
    `flask mfa reencrypt`). The message reaches the log, never a response."""


def read_secret(factor: TotpFactor) -> str:
    try:
        return totp.decrypt_secret(factor.secret_encrypted)
    except InvalidToken:
        raise SecretUnreadable(
            f"the TOTP secret of user {factor.user_id} cannot be read with SECRET_KEY: run"
            " `flask --app wsgi mfa reencrypt` with the previous key"
        ) from None


def spend_code(user_id: int, code: str) -> Used | None:
    """Check `code` (as typed) against the account's factor and spend it; None when it is
    wrong, or was used before.

    A TOTP code's step becomes the last one used, so that step and every earlier one are
    refused from then on; a recovery code is marked used. The factor's row is locked first
    (PostgreSQL), and each spend is an UPDATE whose condition is that the code is still
    unused: of two requests with one code, at once or in two processes, exactly one wins."""
    factor = db.session.get(TotpFactor, user_id, with_for_update=True)
    if factor is None:
        return None
    secret = read_secret(factor)
    typed = totp.as_typed(code)
    if totp.is_totp_code(typed):
        step = totp.matching_step(secret, typed, utcnow())
        spent = step is not None and _spend(
            sa.update(TotpFactor)
            .where(
                TotpFactor.user_id == user_id,
                sa.or_(TotpFactor.last_used_step.is_(None), TotpFactor.last_used_step < step),
            )
            .values(last_used_step=step)
        )
        return Used.TOTP if spent else None
    spent = _spend(
        sa.update(RecoveryCode)
        .where(
            RecoveryCode.user_id == user_id,
            RecoveryCode.code_hash == totp.recovery_hash(secret, typed),
            RecoveryCode.used_at.is_(None),
        )
        .values(used_at=utcnow())
    )
    return Used.RECOVERY if spent else None


def _spend(statement: sa.Update) -> bool:
    return rows_changed(statement.execution_options(synchronize_session=False)) == 1


def refuse_code(user_id: int) -> None:
    """A wrong or replayed code: nothing of the attempt is kept but its record, committed
    (the owner sees in their events that someone got past the password)."""
    db.session.rollback()
    record_event(EventType.MFA_FAILED, user_id)
    db.session.commit()
    audit("mfa_code_refused", user_id=user_id)


def replace_recovery_codes(user_id: int, secret: str) -> list[str]:
    """A new set of recovery codes; the old ones die. Returns the codes, to be shown once."""
    db.session.execute(sa.delete(RecoveryCode).where(RecoveryCode.user_id == user_id))
    codes = totp.new_recovery_codes()
    db.session.add_all(
        RecoveryCode(user_id=user_id, code_hash=totp.recovery_hash(secret, totp.as_typed(code)))
        for code in codes
    )
    return codes


def unused_recovery_codes(user_id: int) -> int:
    return (
        db.session.scalar(
            sa.select(sa.func.count(RecoveryCode.id)).where(
                RecoveryCode.user_id == user_id, RecoveryCode.used_at.is_(None)
            )
        )
        or 0
    )


def remove_factor(user: User) -> bool:
    """Turn two-factor off: the factor (pending or on), its recovery codes and the logins
    waiting for a second step go. Whether it was on; the flag is changed by a conditional
    UPDATE, so of two removals at once one finds it on."""
    for model in (TotpFactor, RecoveryCode, MfaChallenge):
        db.session.execute(sa.delete(model).where(model.user_id == user.id))
    # Synchronised with the session: the user object the caller answers with says "off".
    turned_off = sa.update(User).where(User.id == user.id, User.mfa_enabled.is_(True))
    return rows_changed(turned_off.values(mfa_enabled=False)) == 1


def record_change(
    user: User, event: EventType, actor_id: int | None = None, **context: object
) -> None:
    """A change of the factor, in the current transaction: its security event and the notice
    to the account's address (one of a kind every few minutes, as every notice)."""
    record_event(event, user.id, actor_id=actor_id)
    queue_notice(
        user.email,
        user.id,
        f"two-factor-{event.value}",
        "two_factor",
        NOTICES[event],
        change=event.value,
        at=utcnow(),
        **context,
    )
