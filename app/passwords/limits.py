"""The brakes on password guessing: login's, and the current-password check of an
authenticated change (a stolen access token must not make it a guessing oracle).

Login, in full (README, "Rate limits"):
- per client address: 20 attempts a minute, whatever the account (password spraying);
- per account and address: 5 failures a minute and 20 an hour, then that address waits;
- per account from anywhere: 5 failures an hour are free, then each attempt waits a short,
  growing delay (1, 2, 4 ... 60 s) after the previous one. Addresses the account logged in
  from in the last 30 days skip this delay, so a stranger cannot lock the owner out; a
  successful login forgets the account's failures.
"""

from __future__ import annotations

import functools
import hashlib
import time
from collections.abc import Callable
from typing import Any, TypeVar, cast

from limits import RateLimitItemPerDay, RateLimitItemPerHour, parse_many
from limits.storage import Storage

from app.core.errors import Conflict, InvalidInput, PermissionDenied
from app.core.extensions import limiter
from app.web.limits import (
    account_key,
    caller,
    client_address,
    forget,
    limit_ids,
    raw_key,
    refuse,
    take,
    window_storage,
)

F = TypeVar("F", bound=Callable[..., Any])

LOGIN_PER_ADDRESS = "20/minute"
LOGIN_PER_ACCOUNT_AND_ADDRESS = parse_many("5/minute;20/hour")
LOGIN_FREE_FAILURES = RateLimitItemPerHour(5)  # per account, before the growing delay
LOGIN_MAX_DELAY = 60  # seconds
# The account's failures past the free ones, counted as far as the delay grows (2**6 > 60).
LOGIN_DELAYED_FAILURES = RateLimitItemPerHour(7)
KNOWN_ADDRESS = RateLimitItemPerDay(1, 30)
PASSWORD_CHANGE_FAILURES = parse_many("5/minute;20/hour")


def _login_delay(account: str) -> None:
    """The account-wide brake: free for LOGIN_FREE_FAILURES, then one attempt per delay,
    the delay doubling with each failure up to LOGIN_MAX_DELAY."""
    ids = limit_ids("login-account", account)
    if limiter.limiter.hit(LOGIN_FREE_FAILURES, *ids):
        return
    limiter.limiter.hit(LOGIN_DELAYED_FAILURES, *ids)  # full just means "the longest delay"
    delayed = (
        LOGIN_DELAYED_FAILURES.amount
        - limiter.limiter.get_window_stats(LOGIN_DELAYED_FAILURES, *ids)[1]
    )
    delay = min(2 ** max(delayed - 1, 0), LOGIN_MAX_DELAY)
    turn = raw_key("login-turn", account)
    if not window_storage().acquire_entry(turn, 1, delay):
        started, _count = window_storage().get_moving_window(turn, 1, delay)
        raise refuse(started + delay - time.time())


def _known_address_key(account: str, address: str) -> str:
    pair = hashlib.sha256(f"{account}|{address}".encode()).hexdigest()[:32]
    return raw_key("login-known", pair)


def login_guarded(view: F) -> F:
    """Wrap the login view (under its schema, so the email is the validated one)."""

    @functools.wraps(view)
    def guarded(body: dict[str, Any], *args: Any, **kwargs: Any) -> Any:
        if not limiter.enabled:
            return view(body, *args, **kwargs)
        account = account_key(body["email"]) or ""
        address = client_address()
        pair = limit_ids("login-pair", account, address)
        take(LOGIN_PER_ACCOUNT_AND_ADDRESS, *pair)
        known = _known_address_key(account, address)
        expiry = KNOWN_ADDRESS.get_expiry()
        if not window_storage().get_moving_window(known, 1, expiry)[1]:
            _login_delay(account)
        try:
            result = view(body, *args, **kwargs)  # a wrong password (401) stays counted
        except PermissionDenied:
            _forget_login(account, pair)  # the password was right; the account is not active
            raise
        _forget_login(account, pair)
        cast(Storage, window_storage()).clear(known)  # restart its 30 days
        window_storage().acquire_entry(known, 1, expiry)
        return result

    return cast(F, guarded)


def _forget_login(account: str, pair: tuple[str, ...]) -> None:
    """Only the password's holder gets here, so forgetting the failures helps no attacker."""
    forget(LOGIN_PER_ACCOUNT_AND_ADDRESS, *pair)
    forget([LOGIN_FREE_FAILURES, LOGIN_DELAYED_FAILURES], *limit_ids("login-account", account))
    cast(Storage, window_storage()).clear(raw_key("login-turn", account))


def password_check_guarded(view: F) -> F:
    """Wrap an authenticated view that checks the current password: a stolen access token
    must not make it a guessing oracle. Wrong passwords count; a right one forgets them."""

    @functools.wraps(view)
    def guarded(*args: Any, **kwargs: Any) -> Any:
        if not limiter.enabled:
            return view(*args, **kwargs)
        ids = limit_ids("password-check", caller())
        take(PASSWORD_CHANGE_FAILURES, *ids)
        try:
            result = view(*args, **kwargs)  # a wrong current password (400) stays counted
        except (InvalidInput, Conflict):  # raised only once the current password was right
            forget(PASSWORD_CHANGE_FAILURES, *ids)
            raise
        forget(PASSWORD_CHANGE_FAILURES, *ids)
        return result

    return cast(F, guarded)
