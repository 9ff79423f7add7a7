"""Rate limits: whom a limit counts (the client address, the account an email names, the
caller), the one decorator that applies an endpoint's limits and documents its 429, and the
counting that the policies of other packages build on (the login brake in
app/passwords/limits.py, the email quota in app/courier/quota.py).

Every count is taken before the work it limits, atomically, in a moving window (Redis in
production): of thirty concurrent attempts against a limit of five, five are let through.
"""

from __future__ import annotations

import hashlib
import ipaddress
import math
import time
from collections.abc import Callable
from typing import Any, TypeVar, cast

import flask_smorest
from flask import Flask, current_app, g, request
from flask_limiter.util import get_remote_address
from limits import RateLimitItem
from limits.storage import MovingWindowSupport
from marshmallow import ValidationError

from app.core.errors import TooManyAttempts
from app.core.extensions import limiter
from app.web.schemas import normalise_email

F = TypeVar("F", bound=Callable[..., Any])

TOO_MANY = {"429": {"description": "Too many requests; retry after Retry-After"}}


def init_limits(app: Flask) -> None:
    """Bind the limiter, without its check before every request when nothing needs it.

    Every limit of the service is a decorator on its view (`rate_limited`), which checks in
    the view. Flask-Limiter's before-request check serves only application, default and
    blueprint limits, and the service sets no limit on a blueprint: it found nothing to
    count, and cost every request, /auth/me included, a tenth of a millisecond of CPU.
    Should an application or default limit be configured (RATELIMIT_APPLICATION,
    RATELIMIT_DEFAULT), the check stays.
    """
    limiter.init_app(app)
    manager = limiter.limit_manager
    if manager.application_limits or manager.default_limits:
        return
    checks = app.before_request_funcs.get(None, [])
    app.before_request_funcs[None] = [c for c in checks if c != limiter._check_request_limit]


def client_address() -> str:
    """Who a per-address limit counts, and whose addresses login remembers: the client of
    the request's address, as `client_of` reads it with RATELIMIT_IPV6_PREFIX."""
    return client_of(get_remote_address(), current_app.config["RATELIMIT_IPV6_PREFIX"])


def client_of(address: str, ipv6_prefix: int) -> str:
    """The client an address names: an IPv4 address itself, an IPv6 address its network of
    `ipv6_prefix` bits (`2001:db8:1:2::/64`), since a client is given a whole /64 and takes
    a new address from it at will.

    The address is read in whatever form the server or proxy wrote it: `ip:port` and
    `[ipv6]:port` (a port is one connection, not a client), and an IPv4-mapped IPv6 address
    (`::ffff:1.2.3.4`, from a dual-stack socket) is its IPv4 client. Text that is no address
    (`unknown`) is a client as written: counted, never an error.
    """
    host = address
    if address.startswith("["):  # [ipv6] or [ipv6]:port
        host = address[1:].split("]", 1)[0]
    elif address.count(":") == 1:  # ipv4:port; a bare IPv6 address has two colons or more
        host = address.split(":", 1)[0]
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return address
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network((ip, ipv6_prefix), strict=False))
    return str(ip)


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
    """Key of an authenticated endpoint's limit: the caller's account, as the guard
    (app/sessions/guard.py) left it in `g.caller` before any limit of the route counts."""
    return f"user:{g.caller.id}"


def rate_limited(
    *,
    per_address: str | None = None,
    per_email: str | None = None,
    per_caller: str | Callable[[], str] | None = None,
) -> Callable[[F], F]:
    """Apply the endpoint's limits (each a flask-limiter string such as "5/minute;20/hour",
    or a function returning one, read per request: a limit the configuration sets), counting
    every request, and document the 429 they answer."""
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


def limit_ids(*parts: str) -> tuple[str, ...]:
    return (current_app.config["RATELIMIT_KEY_PREFIX"], *parts)


def refuse(seconds: float) -> TooManyAttempts:
    # flask-limiter would write the per-address window's Retry-After over this one, which is
    # the one that applies: with no current limit it leaves this response's headers alone.
    limiter.context.view_rate_limit = None
    # Redis hands timestamps back with 14 significant digits: a tenth of a millisecond.
    return TooManyAttempts(max(1, math.ceil(round(seconds, 3))))


def take(items: list[RateLimitItem], *ids: str) -> None:
    """Count one attempt in each window, or raise TooManyAttempts when one is full."""
    for item in items:
        if not limiter.limiter.hit(item, *ids):
            reset, _remaining = limiter.limiter.get_window_stats(item, *ids)
            raise refuse(reset - time.time())


def forget(items: list[RateLimitItem], *ids: str) -> None:
    for item in items:
        limiter.limiter.clear(item, *ids)


def window_storage() -> MovingWindowSupport:
    # The moving-window strategy only runs on storages that support it (Redis, memory), and
    # `limiter.limiter` is the in-memory fallback while Redis is down.
    return cast(MovingWindowSupport, limiter.limiter.storage)


def raw_key(*parts: str) -> str:
    return "/".join(limit_ids(*parts))
