"""The password, the first way in: sign in with it, change it, and the one way a password is
ever set (change, reset, `flask create-admin`).

Each use case checks, writes, and commits once; it raises a domain error instead of building
a response.
"""

from __future__ import annotations

from typing import Any

from app.core.db import db, utcnow
from app.core.errors import InvalidInput, NotAuthenticated, WrongPassword
from app.core.log import audit
from app.courier.messages import queue_notice
from app.events.models import EventType
from app.events.service import record_event
from app.identity.models import User
from app.identity.users import find_user_by_email, refuse_inactive_login
from app.links.models import EmailChangeToken, PasswordResetToken
from app.links.tokens import drop_email_tokens
from app.mfa import service as mfa
from app.mfa.second_step import start_login
from app.passwords import hashing
from app.passwords.strength import check_password_strength
from app.sessions.endings import end_all_logins

WRONG_CREDENTIALS = "The email or password is wrong."


def login(email: str, password: str) -> dict[str, Any]:
    """Start a login with the account's email and password: a new token pair, or the
    two-factor step when the account has it on (app/mfa/second_step.py decides).

    An unknown email costs the same argon2 check as a wrong password, and both answer the
    same 401; only the password's holder learns that the account is not active (403). A
    hash made with older parameters is upgraded now that the password is at hand."""
    user = find_user_by_email(email)
    if user is None:
        hashing.verify_password(hashing.dummy_hash(), password)
        audit("login_failed", reason="unknown_email")
        raise NotAuthenticated(WRONG_CREDENTIALS)
    if not hashing.verify_password(user.password_hash, password):
        # Recorded for existing accounts only: an unknown email leaves no row to grow.
        record_event(EventType.LOGIN_FAILED, user.id)
        db.session.commit()
        audit("login_failed", reason="wrong_password", user_id=user.id)
        raise NotAuthenticated(WRONG_CREDENTIALS)
    refuse_inactive_login(user)
    if hashing.needs_rehash(user.password_hash):
        user.password_hash = hashing.hash_password(password)
    return start_login(user)


def change_password(user: User, old_password: str, new_password: str) -> None:
    """Change the password of a signed-in user who proves the current one (WrongPassword
    otherwise); every login of the account ends, as with any new password."""
    check_current_password(user, old_password, refusal="password_change_failed")
    set_password(user, new_password, field="new_password")
    record_event(EventType.PASSWORD_CHANGED, user.id)
    db.session.commit()
    audit("password_changed", user_id=user.id)


def set_password(user: User, new_password: str, field: str) -> None:
    """Set a new password: strength rule, every login ended, no reset link or pending email
    change left (a new password is how an owner takes the account back), a notice (unless
    one was sent in the last few minutes). The caller commits; `field` names the body field
    a refusal points at."""
    if hashing.verify_password(user.password_hash, new_password):
        raise InvalidInput(
            "The new password must differ from the current one.",
            errors={field: ["Choose a password different from the current one."]},
        )
    check_password_strength(new_password, user.email, field=field)
    user.password_hash = hashing.hash_password(new_password)
    end_all_logins(user.id)
    drop_email_tokens(user.id, PasswordResetToken, EmailChangeToken)
    queue_notice(
        user.email,
        user.id,
        "password-changed",
        "password_changed",
        "Your cinema password was changed",
        changed_at=utcnow(),
    )


def check_current_password(user: User, password: str, refusal: str) -> None:
    """WrongPassword unless `password` is the signed-in user's own (a change of the password
    or of the second factor proves it); `refusal` names the audit line of a wrong one."""
    if not hashing.verify_password(user.password_hash, password):
        audit(refusal, user_id=user.id)
        raise WrongPassword("The current password is wrong.")


def turn_off_two_factor(user: User, password: str, code: str, keep_family: str) -> None:
    """Turn two-factor off, proving both factors: the password, and a code of the app (or a
    recovery code). Every other login of the account ends."""
    check_current_password(user, password, refusal="mfa_change_refused")
    mfa.turn_off(user, code, keep_family)


def renew_recovery_codes(user: User, password: str, code: str) -> list[str]:
    """New recovery codes, proving both factors; the old codes die."""
    check_current_password(user, password, refusal="mfa_change_refused")
    return mfa.renew_recovery_codes(user, code)
