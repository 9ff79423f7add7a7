"""Who is calling: the guard of every endpoint that takes an access token.

Every authenticated request reads the caller from the database, so a deactivated or deleted
user, or an ended login, is refused at once, and authorization reads the stored group, never
a claim.

The token is verified by flask-jwt-extended's `decode_token` (app/sessions/access_tokens.py:
once per process for a given token, its expiry and key at every use); the caller is read by
one prepared statement (app/sessions/caller.py).
"""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any, TypeVar

import flask_smorest
from flask import current_app, g
from flask_jwt_extended import decode_token
from flask_jwt_extended.exceptions import JWTExtendedException
from jwt import ExpiredSignatureError, InvalidTokenError

from app.core.errors import NextStep, NotAuthenticated, PermissionDenied
from app.identity.models import GroupName, User
from app.identity.users import ACCOUNT_GONE, active_user
from app.sessions.access_tokens import login_named_by
from app.sessions.caller import Caller, load_caller
from app.web.openapi import BEARER
from app.web.requests import bearer_token

F = TypeVar("F", bound=Callable[..., Any])

SEND_TOKEN = "Send an access token: Authorization: Bearer <token>."  # noqa: S105 - a message
NOT_VALID = "The access token is not valid."
EXPIRED = "The access token has expired; refresh it."
REVOKED = "The access token has been revoked; log in again."


def authenticate() -> Caller:
    """The caller of this request, from its access token; NotAuthenticated (401) says why
    there is none. The checks, in the order a client can act on them: a token is sent, it is
    ours and unexpired, its login is still alive, its account exists and is active."""
    token = bearer_token()
    if token is None:
        raise NotAuthenticated(SEND_TOKEN)
    try:
        claims = decode_token(token)
    except ExpiredSignatureError:
        raise NotAuthenticated(EXPIRED) from None
    except (InvalidTokenError, JWTExtendedException):
        raise NotAuthenticated(NOT_VALID) from None
    if claims.get("type") != "access":
        raise NotAuthenticated(NOT_VALID)
    login = login_named_by(claims)
    if login is None:  # a login this service never issued
        raise NotAuthenticated(REVOKED)
    user_id, family = login
    # Access tokens end with their login: logout, reuse detection, a password change, its
    # expiry; and a login that never was.
    caller, ended = load_caller(user_id, family)
    if ended:
        raise NotAuthenticated(REVOKED)
    if caller is None or not caller.is_active:
        raise NotAuthenticated(ACCOUNT_GONE)
    g.login_family = family  # the login a session list marks as the current one
    return caller


def authenticated(*groups: GroupName) -> Callable[[F], F]:
    """The one guard of every endpoint that takes an access token.

    It requires a live access token, refuses callers outside `groups` (when given) with
    403, and documents the bearer scheme and its 401/403 in /openapi.json: the security
    doc cannot be forgotten, because no route requires a token any other way.
    """
    responses: dict[str, dict[str, str]] = {}
    if groups:
        names = " and ".join(f"{g.value.lower()}s" for g in groups)
        responses["403"] = {"description": f"Only {names}"}

    def decorator(fn: F) -> F:
        @wraps(fn)
        def guarded(*args: Any, **kwargs: Any) -> Any:
            caller = authenticate()
            if groups and caller.group_name not in groups:
                raise PermissionDenied("Your group may not do this.")
            if groups:
                _second_factor_of_admins(caller)
            g.caller = caller
            return fn(*args, **kwargs)

        documented = flask_smorest.Blueprint.doc(security=BEARER, responses=responses)
        return documented(guarded)  # type: ignore[no-any-return]

    return decorator


def _second_factor_of_admins(caller: Caller) -> None:
    """ADMIN_MFA_REQUIRED: an admin's password alone holds the keys to every account, so the
    endpoints kept to staff refuse an admin without two-factor."""
    required = current_app.config["ADMIN_MFA_REQUIRED"]
    if required and caller.group_name == GroupName.ADMIN and not caller.mfa_enabled:
        raise PermissionDenied(
            "Admins must sign in with two-factor here.", next_step=NextStep.TURN_ON_MFA
        )


STAFF = (GroupName.MODERATOR, GroupName.ADMIN)


def current_caller() -> Caller:
    """The caller of this guarded request, as the guard read it: a read-only record, enough
    for every route that only reads."""
    caller: Caller = g.caller
    return caller


def current_login_family() -> str:
    """The login ("family") of this guarded request's access token."""
    family: str = g.login_family
    return family


def load_caller_user() -> User:
    """The caller's `User`, for a route that changes the account: one more read by key."""
    return active_user(current_caller().id)  # deleted or deactivated since: refused
