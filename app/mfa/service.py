"""The use cases of two-factor on the person's own account: set it up, confirm it, turn it
off, renew the recovery codes; and an admin's reset of a locked-out person's factor.

Turning it off and renewing the codes also prove the password, which app/passwords checks
before it calls `turn_off` or `renew_recovery_codes` (it builds on this package). Each use
case checks, writes, and commits once; it raises a domain error instead of building a
response. Turning two-factor on or off ends the person's other logins and tells them.
The operator's use case is here too: `reencrypt_secrets`, after a SECRET_KEY change.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from cryptography.fernet import Fernet, InvalidToken
from flask import current_app
from sqlalchemy.exc import IntegrityError

from app.core.db import db, rows_changed, utcnow
from app.core.errors import Conflict, WrongCode
from app.core.log import audit
from app.events.models import EventType
from app.identity.models import User
from app.mfa import totp
from app.mfa.factor import (
    read_secret,
    record_change,
    refuse_code,
    remove_factor,
    replace_recovery_codes,
    spend_code,
)
from app.mfa.limits import count_code_attempt
from app.mfa.models import TotpFactor
from app.sessions.endings import end_all_logins

ALREADY_ON = "Two-factor is already on; turn it off first to move it to another app."
NOT_ON = "Two-factor is not on for this account."
WRONG_CODE = "The code is wrong or was already used."


def set_up(user: User) -> dict[str, Any]:
    """A new secret for the person's authenticator app, pending until confirmed: the secret,
    its otpauth URI and the URI as a QR code (SVG). A setup still pending is replaced."""
    if user.mfa_enabled:
        raise Conflict(ALREADY_ON)
    secret = totp.new_secret()
    factor = db.session.get(TotpFactor, user.id) or TotpFactor(user_id=user.id)
    factor.secret_encrypted = totp.encrypt_secret(secret)
    factor.last_used_step = None
    factor.created_at = utcnow()
    db.session.add(factor)
    try:
        db.session.commit()
    except IntegrityError:  # two first setups at once: both inserted the factor's row
        db.session.rollback()
        raise Conflict("Two setups were started at once; start it again.") from None
    audit("mfa_setup_started", user_id=user.id)
    uri = totp.otpauth_uri(secret, user.email, current_app.config["TOTP_ISSUER"])
    return {"secret": secret, "otpauth_uri": uri, "qr_svg": totp.qr_svg(uri)}


def confirm(user: User, code: str, keep_family: str) -> list[str]:
    """Turn two-factor on with a code of the pending secret; returns the recovery codes, shown
    this once. Every login of the person but `keep_family` (the one confirming, which has
    just proved the factor) ends."""
    factor = None if user.mfa_enabled else db.session.get(TotpFactor, user.id)
    if factor is None:
        raise Conflict(ALREADY_ON if user.mfa_enabled else "No two-factor setup is pending.")
    # Spent like any code (a pending factor has no recovery codes yet): the code that
    # confirmed cannot sign in as well.
    if spend_code(user.id, code) is None:
        raise WrongCode("The code is wrong: enter the code your app shows now.")
    # The flag decides: of two confirmations at once, one turns it on.
    turned_on = sa.update(User).where(User.id == user.id, User.mfa_enabled.is_(False))
    if rows_changed(turned_on.values(mfa_enabled=True)) != 1:
        db.session.rollback()
        raise Conflict(ALREADY_ON)
    codes = replace_recovery_codes(user.id, read_secret(factor))
    end_all_logins(user.id, keep_family=keep_family)
    record_change(user, EventType.MFA_ENABLED)
    db.session.commit()
    audit("mfa_enabled", user_id=user.id)
    return codes


def turn_off(user: User, code: str, keep_family: str) -> None:
    """Turn two-factor off with a code of the factor (the password was proved by the caller);
    every login of the person but `keep_family` ends."""
    _prove_factor(user, code)
    remove_factor(user)
    end_all_logins(user.id, keep_family=keep_family)
    record_change(user, EventType.MFA_DISABLED)
    db.session.commit()
    audit("mfa_disabled", user_id=user.id)


def renew_recovery_codes(user: User, code: str) -> list[str]:
    """A fresh set of recovery codes, shown this once; the old ones die (the password was
    proved by the caller)."""
    _prove_factor(user, code)
    codes = replace_recovery_codes(user.id, read_secret(db.session.get_one(TotpFactor, user.id)))
    record_change(user, EventType.RECOVERY_CODES_REGENERATED)
    db.session.commit()
    audit("mfa_recovery_codes_renewed", user_id=user.id)
    return codes


def _prove_factor(user: User, code: str) -> None:
    """Spend `code` of the account's factor, or refuse it with WrongCode; counted per
    account, like every code."""
    if not user.mfa_enabled:
        raise Conflict(NOT_ON)
    count_code_attempt(user.id)
    if spend_code(user.id, code) is None:
        refuse_code(user.id)
        raise WrongCode(WRONG_CODE)


def reset_by_admin(admin_id: int, user: User) -> User:
    """An admin turns off the factor of a person locked out of it: every login of the person
    ends, the event names the admin, and the person is told. Already off: unchanged (a
    pending setup is dropped)."""
    was_on = remove_factor(user)
    if was_on:
        end_all_logins(user.id)
        record_change(user, EventType.MFA_RESET, actor_id=admin_id)
    db.session.commit()
    change = {"mfa_enabled": {"from": was_on, "to": False}}
    audit("admin_mfa_reset", admin_id=admin_id, target_id=user.id, change=change)
    return user


REENCRYPT_BATCH = 500


def reencrypt_secrets(previous_secret_key: str) -> dict[str, int]:
    """After a SECRET_KEY change: encrypt again with the current key every TOTP secret that
    `previous_secret_key` encrypted, a batch at a time. Secrets the current key reads are
    left alone, so it can run twice, and during a deploy. Returns how many were re-encrypted,
    already current, and readable by neither key."""
    current, previous = totp.cipher(), totp.cipher(previous_secret_key)
    counts = {"reencrypted": 0, "current": 0, "unreadable": 0}
    after = -1
    while True:
        batch = db.session.scalars(
            sa.select(TotpFactor)
            .where(TotpFactor.user_id > after)
            .order_by(TotpFactor.user_id)
            .limit(REENCRYPT_BATCH)
        ).all()
        for factor in batch:
            counts[_reencrypt(factor, current, previous)] += 1
        db.session.commit()
        if len(batch) < REENCRYPT_BATCH:
            return counts
        after = batch[-1].user_id


def _reencrypt(factor: TotpFactor, current: Fernet, previous: Fernet) -> str:
    encrypted = factor.secret_encrypted.encode()
    try:
        current.decrypt(encrypted)
        return "current"
    except InvalidToken:
        pass
    try:
        secret = previous.decrypt(encrypted)
    except InvalidToken:
        return "unreadable"
    factor.secret_encrypted = current.encrypt(secret).decode()
    return "reencrypted"
