"""Who is calling: the JWT callbacks and the decorators that guard endpoints.

Every authenticated request loads the user from the database, so a deactivated or deleted
user is refused at once and authorization reads the stored group, never a claim.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any, TypeVar

import sqlalchemy as sa
from flask import Flask, Response, g, request
from flask_jwt_extended import current_user, jwt_required

from app.errors import PermissionDenied, problem
from app.extensions import db, jwt
from app.models import GroupName, RefreshToken, User

F = TypeVar("F", bound=Callable[..., Any])

BEARER: list[dict[str, list[str]]] = [{"bearerAuth": []}]


def _unauthorized(detail: str) -> Response:
    return problem(401, "Unauthorized", detail)


def load_caller(claims: dict[str, Any]) -> tuple[User | None, bool]:
    """The token's user and whether its login was ended, in one round trip."""
    family = claims.get("fam")
    try:
        user_id = int(claims["sub"])
    except (KeyError, TypeError, ValueError):
        return None, True
    if not isinstance(family, str):
        return None, True
    revoked = (
        sa.select(RefreshToken.id)
        .where(RefreshToken.family_id == family, RefreshToken.revoked_at.is_not(None))
        .exists()
    )
    row = db.session.execute(sa.select(User, revoked).where(User.id == user_id)).first()
    if row is None:
        return None, False  # the user loader answers: the account no longer exists
    return row[0], bool(row[1])


def _canonical_bearer_scheme() -> None:
    """Accept `bearer`, `BEARER`, ... like `Bearer`.

    The scheme is case-insensitive (RFC 9110 section 11.1), and login answers token_type
    "bearer", but flask-jwt-extended only matches "Bearer" exactly. Its header is read from
    the WSGI environ, so the scheme is rewritten there before any guard runs.
    """
    scheme, space, token = request.environ.get("HTTP_AUTHORIZATION", "").partition(" ")
    if space and scheme != "Bearer" and scheme.lower() == "bearer":
        request.environ["HTTP_AUTHORIZATION"] = f"Bearer {token}"


def register_jwt_callbacks(app: Flask) -> None:
    app.before_request(_canonical_bearer_scheme)

    @jwt.token_in_blocklist_loader
    def is_revoked(_header: dict[str, Any], claims: dict[str, Any]) -> bool:
        # Access tokens end with their login: logout, reuse detection or a password change.
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


def login_required(fn: F) -> F:
    return jwt_required()(fn)  # type: ignore[no-any-return]


def _group_required(*allowed: GroupName) -> Callable[[F], F]:
    def decorator(fn: F) -> F:
        @wraps(fn)
        @jwt_required()
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            if current_user.group.name not in allowed:
                raise PermissionDenied("Your group may not do this.")
            return fn(*args, **kwargs)

        return wrapper  # type: ignore[return-value]

    return decorator


moderator_required = _group_required(GroupName.MODERATOR, GroupName.ADMIN)
admin_required = _group_required(GroupName.ADMIN)


def current_account() -> User:
    user: User = current_user._get_current_object()
    return user
