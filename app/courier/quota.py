"""How many emails a stranger can make us send one account: the quota of the emailed links
(activation resend, password reset) that anyone may ask for, and of those a signed-in caller
asks for (an email change), which a stolen access token must not turn into a mail bomb."""

from __future__ import annotations

from limits import RateLimitItemPerHour

from app.core.extensions import limiter
from app.web.limits import account_key, limit_ids, take

EMAILS_PER_ACCOUNT = RateLimitItemPerHour(3)


def _quota_ids(kind: str, email: str) -> tuple[str, ...]:
    return limit_ids(f"emails-{kind}", account_key(email) or "")


def email_quota_allows(kind: str, email: str) -> bool:
    """Whether the account may be sent one more email of this kind now (3 an hour); counted
    only when it says yes, so requests that send nothing never use up the owner's quota."""
    if not limiter.enabled:
        return True
    return limiter.limiter.hit(EMAILS_PER_ACCOUNT, *_quota_ids(kind, email))


def take_email_quota(kind: str, email: str) -> None:
    """The same quota for a caller who may be told: count one email of this kind, or raise
    TooManyAttempts (429, with the wait) once the account has had 3 this hour."""
    if limiter.enabled:
        take([EMAILS_PER_ACCOUNT], *_quota_ids(kind, email))
