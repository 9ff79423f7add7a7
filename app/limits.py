"""Rate limits: whom a limit counts (the client address, the account an email names, the
caller) and the one decorator that applies an endpoint's limits and documents its 429."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import flask_smorest
from flask import Response, request
from flask_jwt_extended import current_user
from flask_limiter.util import get_remote_address

from app.extensions import limiter

F = TypeVar("F", bound=Callable[..., Any])

TOO_MANY = {"429": {"description": "Too many requests; retry after Retry-After"}}


def client_address() -> str:
    return get_remote_address()


def body_email() -> str:
    """Key of "per account" limits: the normalised email of the body."""
    try:
        body = request.get_json(silent=True)
    except RecursionError:  # `silent` covers ValueError only; the body parser answers 400
        body = None
    email = body.get("email") if isinstance(body, dict) else None
    # Only an ASCII address can be an account's (and a key Redis can encode).
    if isinstance(email, str) and email.strip() and email.isascii():
        return "email:" + email.strip().lower()
    return "ip:" + get_remote_address()


def caller() -> str:
    """Key of an authenticated endpoint's limit: the caller's account."""
    return f"user:{current_user.id}"


def rate_limited(
    *,
    per_address: str | None = None,
    per_email: str | None = None,
    per_caller: str | None = None,
    deduct_when: Callable[[Response], bool] | None = None,
) -> Callable[[F], F]:
    """Apply the endpoint's limits (each a flask-limiter string such as "5/minute;20/hour")
    and document the 429 they answer. With `deduct_when`, only responses it accepts count."""
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
            limited = limiter.limit(rule, key_func=key, deduct_when=deduct_when)(limited)
        return flask_smorest.Blueprint.doc(responses=TOO_MANY)(limited)  # type: ignore[no-any-return]

    return decorator


def failed_login(response: Response) -> bool:
    return response.status_code in (401, 403)


def wrong_password(response: Response) -> bool:
    return response.status_code == 400
