"""Who is calling: the JWT callbacks and the decorators that guard endpoints.

Every authenticated request loads the user from the database, so a deactivated or deleted
user is refused at once and authorization reads the stored group, never a claim.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any, TypeVar

import flask_smorest
import sqlalchemy as sa
from flask import Response, g, request
from flask_jwt_extended import current_user, jwt_required

from app.db import db, read_without_transaction
from app.errors import PermissionDenied, problem
from app.extensions import jwt
from app.http import READ_ONLY_METHODS
from app.keys.ring import keyring
from app.models import GroupName, RefreshToken, User, utcnow
from app.openapi import BEARER

F = TypeVar("F", bound=Callable[..., Any])


def _unauthorized(detail: str) -> Response:
    return problem(401, "Unauthorized", detail)


# Built once: building the select and its EXISTS again for every request cost more CPU than
# running it. The values are bound at execution.
_CALLER = sa.select(
    User,
    sa.select(RefreshToken.id)
    .where(
        RefreshToken.family_id == sa.bindparam("family"),
        RefreshToken.user_id == sa.bindparam("user_id"),
        RefreshToken.revoked_at.is_(None),
        RefreshToken.expires_at > sa.bindparam("now", type_=RefreshToken.expires_at.type),
    )
    .exists(),
).where(User.id == sa.bindparam("user_id"))


def load_caller(claims: dict[str, Any]) -> tuple[User | None, bool]:
    """The token's user and whether its login is over, in one round trip.

    A login is alive while its family has a refresh-token record of this user that is
    neither revoked nor expired: a token naming a family that was never issued is refused
    too, even with a valid signature."""
    family = claims.get("fam")
    try:
        user_id = int(claims["sub"])
    except (KeyError, TypeError, ValueError):
        return None, True
    if not isinstance(family, str):
        return None, True
    if request.method in READ_ONLY_METHODS:
        read_without_transaction()
    params = {"family": family, "user_id": user_id, "now": utcnow()}
    row = db.session.execute(_CALLER, params).first()
    if row is None:
        return None, False  # the user loader answers: the account no longer exists
    return row[0], not row[1]


def register_jwt_callbacks() -> None:
    @jwt.decode_key_loader
    def verification_key(header: dict[str, Any], _claims: dict[str, Any]) -> Any:
        # The key named by the token's kid; the algorithm stays the one pinned in config.
        return keyring().verification_key(header.get("kid"))

    @jwt.token_in_blocklist_loader
    def is_revoked(_header: dict[str, Any], claims: dict[str, Any]) -> bool:
        # Access tokens end with their login: logout, reuse detection, a password change,
        # its expiry; and a login that never was.
        # The caller is loaded by the same query, for the user loader that runs next.
        caller, revoked = load_caller(claims)
        g.jwt_caller = caller
        return revoked

    @jwt.user_lookup_loader
    def load_user(_header: dict[str, Any], _claims: dict[str, Any]) -> User | None:
        caller: User | None = g.pop("jwt_caller", None)
        return caller if caller is not None and caller.is_active else None

    jwt.unauthorized_loader(
        lambda reason: _unauthorized("Send an access token: Authorization: Bearer <token>.")
    )
    jwt.invalid_token_loader(lambda reason: _unauthorized("The access token is not valid."))
    jwt.expired_token_loader(
        lambda _h, _c: _unauthorized("The access token has expired; refresh it.")
    )
    jwt.revoked_token_loader(
        lambda _h, _c: _unauthorized("The access token has been revoked; log in again.")
    )
    jwt.user_lookup_error_loader(
        lambda _h, _c: _unauthorized("The account no longer exists or is not active.")
    )
    jwt.token_verification_failed_loader(
        lambda _h, _c: _unauthorized("The access token is not valid.")
    )


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
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            if groups and current_user.group.name not in groups:
                raise PermissionDenied("Your group may not do this.")
            return fn(*args, **kwargs)

        guarded = jwt_required()(wrapper)
        documented = flask_smorest.Blueprint.doc(security=BEARER, responses=responses)
        return documented(guarded)  # type: ignore[no-any-return]

    return decorator


STAFF = (GroupName.MODERATOR, GroupName.ADMIN)


def current_account() -> User:
    user: User = current_user._get_current_object()
    return user
