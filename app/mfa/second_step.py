"""The second step of a login. Every way in that knows who the person is (the password
today, a provider's word later) hands the user to `start_login`, the one place that decides
between starting the login and asking for the second factor; `finish_login` takes the
mfa_token and a code and starts it. A password reset signs no one in, so it meets neither.
"""

from __future__ import annotations

import secrets
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa

from app.core.batches import Batches
from app.core.crypto import hash_token
from app.core.db import db, rows_changed, utcnow
from app.core.errors import NotAuthenticated, TooManyAttempts
from app.core.log import audit
from app.events.models import EventType
from app.events.service import record_event
from app.identity.models import User
from app.identity.users import active_user
from app.mfa.factor import Used, record_change, refuse_code, spend_code, unused_recovery_codes
from app.mfa.limits import count_code_attempt
from app.mfa.models import MfaChallenge
from app.sessions.endings import end_all_logins
from app.sessions.refresh_tokens import issue_token_pair

MFA_TOKEN_TTL = 300  # seconds
DEAD_STEP = "This two-factor step has expired or was already used; log in again."
WRONG_CODE = (
    "The code is wrong or was already used: enter the next code your app shows, or an"
    " unused recovery code."
)


def start_login(user: User) -> dict[str, Any]:
    """Start the login of a user a way in has identified: the token pair, or, when the
    account has two-factor on, the two-factor step (an mfa_token, valid MFA_TOKEN_TTL
    seconds, of which only the hash is stored). Commits the way in's changes with it."""
    if not user.mfa_enabled:
        return _signed_in(user)
    token = secrets.token_urlsafe(32)
    expires_at = utcnow() + timedelta(seconds=MFA_TOKEN_TTL)
    db.session.add(
        MfaChallenge(token_hash=hash_token(token), user_id=user.id, expires_at=expires_at)
    )
    db.session.commit()
    audit("login_second_step_required", user_id=user.id)
    return {"mfa_required": True, "mfa_token": token, "expires_in": MFA_TOKEN_TTL}


def finish_login(mfa_token: str, code: str, address: str) -> dict[str, Any]:
    """Start the login an mfa_token waits for, with a code of its account: a TOTP code not
    used before, or an unused recovery code. Signing in with a recovery code ends the
    account's other logins (whoever has the lost device may be signed in) and tells the
    person.

    The code is counted before it is checked (per account and per `address`); past the
    limit the mfa_token dies. A wrong code leaves the mfa_token alive for another try."""
    challenge = db.session.scalar(
        sa.select(MfaChallenge).where(MfaChallenge.token_hash == hash_token(mfa_token))
    )
    if challenge is None or challenge.expires_at <= utcnow():
        raise NotAuthenticated(DEAD_STEP)
    user = active_user(challenge.user_id)
    try:
        count_code_attempt(user.id, address)
    except TooManyAttempts:
        db.session.delete(challenge)
        db.session.commit()
        audit("mfa_step_ended_by_limit", user_id=user.id)
        raise
    used = spend_code(user.id, code)
    if used is None:
        refuse_code(user.id)
        raise NotAuthenticated(WRONG_CODE)
    # The delete decides: of two requests with one mfa_token and two good codes, one signs
    # in; the other's code is given back with its rollback.
    if rows_changed(sa.delete(MfaChallenge).where(MfaChallenge.id == challenge.id)) != 1:
        db.session.rollback()
        raise NotAuthenticated(DEAD_STEP)
    if used is Used.RECOVERY:
        end_all_logins(user.id)
        record_change(user, EventType.RECOVERY_CODE_USED, left=unused_recovery_codes(user.id))
    return _signed_in(user)


def _signed_in(user: User) -> dict[str, Any]:
    pair = issue_token_pair(user)
    record_event(EventType.LOGIN_SUCCEEDED, user.id)
    db.session.commit()
    audit("login_succeeded", user_id=user.id)
    return pair


def delete_expired_challenges(now: datetime, batches: Batches) -> int:
    """Delete the two-factor steps expired by `now` (the scheduled clean-up)."""
    return batches.delete(MfaChallenge, MfaChallenge.expires_at, up_to=now)
