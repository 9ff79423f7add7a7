"""How many emails a stranger can make us send one account: the quota of the emailed links
(activation resend, password reset) that anyone may ask for."""

from __future__ import annotations

from limits import RateLimitItemPerHour

from app.core.extensions import limiter
from app.web.limits import account_key, limit_ids

EMAILS_PER_ACCOUNT = RateLimitItemPerHour(3)


def email_quota_allows(kind: str, email: str) -> bool:
    """Whether the account may be sent one more email of this kind now (3 an hour); counted
    only when it says yes, so requests that send nothing never use up the owner's quota."""
    if not limiter.enabled:
        return True
    return limiter.limiter.hit(
        EMAILS_PER_ACCOUNT, *limit_ids(f"emails-{kind}", account_key(email) or "")
    )
