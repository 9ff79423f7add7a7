"""Rate limits: whom a limit counts (the client address, the account an email names, the
caller), the one decorator that applies an endpoint's limits and documents its 429, and the
guards of the password checks (login, password change), of the emails a stranger can make
us send (activation resend, password reset) and of the notices an account is sent.

Every count is taken before the work it limits, atomically, in a moving window (Redis in
production): of thirty concurrent attempts against a limit of five, five are let through.

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
import math
import time
from collections.abc import Callable
from typing import Any, TypeVar, cast

import flask_smorest
from flask import current_app, request
from flask_limiter.util import get_remote_address
from limits import (
    RateLimitItem,
    RateLimitItemPerDay,
    RateLimitItemPerHour,
    RateLimitItemPerMinute,
    parse_many,
)
from limits.storage import MovingWindowSupport, Storage
from marshmallow import ValidationError
from redis.exceptions import RedisError

from app.auth.guards import current_caller
from app.errors import InvalidInput, PermissionDenied, TooManyAttempts
from app.extensions import limiter
from app.schemas import normalise_email

F = TypeVar("F", bound=Callable[..., Any])

TOO_MANY = {"429": {"description": "Too many requests; retry after Retry-After"}}

LOGIN_PER_ADDRESS = "20/minute"
LOGIN_PER_ACCOUNT_AND_ADDRESS = parse_many("5/minute;20/hour")
LOGIN_FREE_FAILURES = RateLimitItemPerHour(5)  # per account, before the growing delay
LOGIN_MAX_DELAY = 60  # seconds
# The account's failures past the free ones, counted as far as the delay grows (2**6 > 60).
LOGIN_DELAYED_FAILURES = RateLimitItemPerHour(7)
KNOWN_ADDRESS = RateLimitItemPerDay(1, 30)
PASSWORD_CHANGE_FAILURES = parse_many("5/minute;20/hour")
EMAILS_PER_ACCOUNT = RateLimitItemPerHour(3)
# Notices tell the owner that something changed: the first says it, more of the same kind
# within minutes say nothing new and let whoever makes the changes flood the mailbox.
NOTICE_INTERVAL = RateLimitItemPerMinute(1, 5)


def client_address() -> str:
    return get_remote_address()


def account_key(email: Any) -> str | None:
    """The key of "per account" limits, or None when `email` is no valid address.

    It is the email the account is stored under, by the schema's own function, so no spelling
    of it counts apart; hashed, so a key stays 32 characters whatever the body held.
    """
    try:
        normalised = normalise_email(email)
    except ValidationError:
        return None
    return hashlib.sha256(normalised.encode()).hexdigest()[:32]


def body_email() -> str:
    """flask-limiter key of a per-account limit: the account the body's email names; a body
    without a valid email counts against the client address instead."""
    try:
        body = request.get_json(silent=True)
    except RecursionError:  # `silent` covers ValueError only; the body parser answers 400
        body = None
    account = account_key(body.get("email")) if isinstance(body, dict) else None
    return f"email:{account}" if account else f"ip:{client_address()}"


def caller() -> str:
    """Key of an authenticated endpoint's limit: the caller's account."""
    return f"user:{current_caller().id}"


def rate_limited(
    *,
    per_address: str | None = None,
    per_email: str | None = None,
    per_caller: str | None = None,
) -> Callable[[F], F]:
    """Apply the endpoint's limits (each a flask-limiter string such as "5/minute;20/hour"),
    counting every request, and document the 429 they answer."""
    keyed = [
        (rule, key)
        for rule, key in (
            (per_address, client_address),
            (per_email, body_email),
            (per_caller, caller),
        )
        if rule
    ]

    def decorator(fn: F) -> F:
        limited: Callable[..., Any] = fn
        for rule, key in reversed(keyed):
            limited = limiter.limit(rule, key_func=key)(limited)
        return flask_smorest.Blueprint.doc(responses=TOO_MANY)(limited)  # type: ignore[no-any-return]

    return decorator


# --- counting on the limiter's storage -----------------------------------------------------


def _ids(*parts: str) -> tuple[str, ...]:
    return (current_app.config["RATELIMIT_KEY_PREFIX"], *parts)


def _refuse(seconds: float) -> TooManyAttempts:
    # flask-limiter would write the per-address window's Retry-After over this one, which is
    # the one that applies: with no current limit it leaves this response's headers alone.
    limiter.context.view_rate_limit = None
    # Redis hands timestamps back with 14 significant digits: a tenth of a millisecond.
    return TooManyAttempts(max(1, math.ceil(round(seconds, 3))))


def _take(items: list[RateLimitItem], *ids: str) -> None:
    """Count one attempt in each window, or raise TooManyAttempts when one is full."""
    for item in items:
        if not limiter.limiter.hit(item, *ids):
            reset, _remaining = limiter.limiter.get_window_stats(item, *ids)
            raise _refuse(reset - time.time())


def _forget(items: list[RateLimitItem], *ids: str) -> None:
    for item in items:
        limiter.limiter.clear(item, *ids)


def _storage() -> MovingWindowSupport:
    # The moving-window strategy only runs on storages that support it (Redis, memory), and
    # `limiter.limiter` is the in-memory fallback while Redis is down.
    return cast(MovingWindowSupport, limiter.limiter.storage)


def _raw_key(*parts: str) -> str:
    return "/".join(_ids(*parts))


# --- login -------------------------------------------------------------------------------


def _login_delay(account: str) -> None:
    """The account-wide brake: free for LOGIN_FREE_FAILURES, then one attempt per delay,
    the delay doubling with each failure up to LOGIN_MAX_DELAY."""
    ids = _ids("login-account", account)
    if limiter.limiter.hit(LOGIN_FREE_FAILURES, *ids):
        return
    limiter.limiter.hit(LOGIN_DELAYED_FAILURES, *ids)  # full just means "the longest delay"
    delayed = (
        LOGIN_DELAYED_FAILURES.amount
        - limiter.limiter.get_window_stats(LOGIN_DELAYED_FAILURES, *ids)[1]
    )
    delay = min(2 ** max(delayed - 1, 0), LOGIN_MAX_DELAY)
    turn = _raw_key("login-turn", account)
    if not _storage().acquire_entry(turn, 1, delay):
        started, _count = _storage().get_moving_window(turn, 1, delay)
        raise _refuse(started + delay - time.time())


def _known_address_key(account: str, address: str) -> str:
    pair = hashlib.sha256(f"{account}|{address}".encode()).hexdigest()[:32]
    return _raw_key("login-known", pair)


def login_guarded(view: F) -> F:
    """Wrap the login view (under its schema, so the email is the validated one)."""

    @functools.wraps(view)
    def guarded(body: dict[str, Any], *args: Any, **kwargs: Any) -> Any:
        if not limiter.enabled:
            return view(body, *args, **kwargs)
        account = account_key(body["email"]) or ""
        address = client_address()
        pair = _ids("login-pair", account, address)
        _take(LOGIN_PER_ACCOUNT_AND_ADDRESS, *pair)
        known = _known_address_key(account, address)
        expiry = KNOWN_ADDRESS.get_expiry()
        if not _storage().get_moving_window(known, 1, expiry)[1]:
            _login_delay(account)
        try:
            result = view(body, *args, **kwargs)  # a wrong password (401) stays counted
        except PermissionDenied:
            _forget_login(account, pair)  # the password was right; the account is not active
            raise
        _forget_login(account, pair)
        cast(Storage, _storage()).clear(known)  # restart its 30 days
        _storage().acquire_entry(known, 1, expiry)
        return result

    return cast(F, guarded)


def _forget_login(account: str, pair: tuple[str, ...]) -> None:
    """Only the password's holder gets here, so forgetting the failures helps no attacker."""
    _forget(LOGIN_PER_ACCOUNT_AND_ADDRESS, *pair)
    _forget([LOGIN_FREE_FAILURES, LOGIN_DELAYED_FAILURES], *_ids("login-account", account))
    cast(Storage, _storage()).clear(_raw_key("login-turn", account))


# --- password change and emails ------------------------------------------------------------


def password_check_guarded(view: F) -> F:
    """Wrap an authenticated view that checks the current password: a stolen access token
    must not make it a guessing oracle. Wrong passwords count; a right one forgets them."""

    @functools.wraps(view)
    def guarded(*args: Any, **kwargs: Any) -> Any:
        if not limiter.enabled:
            return view(*args, **kwargs)
        ids = _ids("password-check", caller())
        _take(PASSWORD_CHANGE_FAILURES, *ids)
        try:
            result = view(*args, **kwargs)  # a wrong current password (400) stays counted
        except InvalidInput:
            _forget(PASSWORD_CHANGE_FAILURES, *ids)  # the current password was right
            raise
        _forget(PASSWORD_CHANGE_FAILURES, *ids)
        return result

    return cast(F, guarded)


def may_email(kind: str, email: str) -> bool:
    """Whether the account may be sent one more email of this kind now (3 an hour); counted
    only when it says yes, so requests that send nothing never use up the owner's quota."""
    if not limiter.enabled:
        return True
    return limiter.limiter.hit(
        EMAILS_PER_ACCOUNT, *_ids(f"emails-{kind}", account_key(email) or "")
    )


def may_notify(kind: str, account_id: int) -> bool:
    """Whether the account may be sent one more notice of this kind (say "password-changed")
    now: one per NOTICE_INTERVAL. The change it tells of happens either way."""
    if not limiter.enabled:
        return True
    try:
        return limiter.limiter.hit(NOTICE_INTERVAL, *_ids(f"notice-{kind}", str(account_id)))
    except RedisError:
        # Redis away and not yet noticed by the limiter (a CLI command, an endpoint without a
        # limit of its own): one notice too many rather than none, and the change goes on.
        return True
