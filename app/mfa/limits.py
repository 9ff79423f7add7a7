"""The brake on guessing a second factor. A code is six digits, three of which are right at
any moment (the window of one step either side), so it may be tried only a few times: per
account, whichever mfa_token or route carries it, and per client address at sign-in.

Every code submitted counts, right or wrong, before it is checked, and nothing forgets the
count: the owner's right code must not hand a guesser who holds the password a fresh budget.
At 30 codes a day, a guesser who holds the password has a 1 in 11,000 chance a day.
"""

from __future__ import annotations

from limits import parse_many

from app.core.extensions import limiter
from app.web.limits import limit_ids, take

# Every request of the second step from one client, whatever its mfa_token (dead ones too).
STEP_PER_ADDRESS = "20/minute"
# Setup and confirm: cheap, but an account must not loop them.
ENROLMENT_PER_CALLER = "10/minute"
CODES_PER_ACCOUNT = parse_many("5/minute;20/hour;30/day")
CODES_PER_ADDRESS = parse_many("10/minute;60/hour")


def count_code_attempt(user_id: int, address: str | None = None) -> None:
    """Count one code for the account (and from `address`, when given); TooManyAttempts
    once a window is full. The address is counted first, so an address past its limit no
    longer uses up the account's."""
    if not limiter.enabled:
        return
    if address is not None:
        take(CODES_PER_ADDRESS, *limit_ids("mfa-address", address))
    take(CODES_PER_ACCOUNT, *limit_ids("mfa-account", str(user_id)))
