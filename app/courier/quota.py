"""How many emails one account is sent: the quota of the emailed links a stranger may ask for
(activation resend, password reset) and of those a signed-in caller asks for (an email
change, which a stolen access token must not turn into a mail bomb), and the cap on notices
of one kind."""

from __future__ import annotations

from limits import RateLimitItemPerHour, RateLimitItemPerMinute
from redis.exceptions import RedisError

from app.core.extensions import limiter
from app.web.limits import account_key, limit_ids, take

EMAILS_PER_ACCOUNT = RateLimitItemPerHour(3)
# Notices tell the owner that something changed: the first says it, more of the same kind
# within minutes say nothing new and let whoever makes the changes flood the mailbox.
NOTICE_INTERVAL = RateLimitItemPerMinute(1, 5)


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


def notice_quota_allows(kind: str, user_id: int) -> bool:
    """Whether the account may be sent one more notice of this kind (say "password-changed")
    now: one per NOTICE_INTERVAL. The change it tells of happens either way."""
    if not limiter.enabled:
        return True
    try:
        return limiter.limiter.hit(NOTICE_INTERVAL, *limit_ids(f"notice-{kind}", str(user_id)))
    except RedisError:
        # Redis away and not yet noticed by the limiter (a CLI command, an endpoint without a
        # limit of its own): one notice too many rather than none, and the change goes on.
        return True
