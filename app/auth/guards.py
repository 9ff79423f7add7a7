"""Who is calling: the JWT callbacks and the decorators that guard endpoints.

Every authenticated request loads the user from the database, so a deactivated or deleted
user is refused at once and authorization reads the stored group, never a claim.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any, TypeVar

import sqlalchemy as sa
from flask import Flask, Response
from flask_jwt_extended import current_user, jwt_required

from app.auth.tokens import is_family_revoked
from app.errors import PermissionDenied, problem
from app.extensions import db, jwt
from app.models import GroupName, User

F = TypeVar("F", bound=Callable[..., Any])

BEARER: list[dict[str, list[str]]] = [{"bearerAuth": []}]


def _unauthorized(detail: str) -> Response:
    return problem(401, "Unauthorized", detail)


def register_jwt_callbacks(app: Flask) -> None:
    @jwt.user_lookup_loader
    def load_user(_header: dict[str, Any], claims: dict[str, Any]) -> User | None:
        try:
            user_id = int(claims["sub"])
        except (KeyError, TypeError, ValueError):
            return None
        user = db.session.scalar(sa.select(User).where(User.id == user_id))
        return user if user is not None and user.is_active else None

    @jwt.token_in_blocklist_loader
    def is_revoked(_header: dict[str, Any], claims: dict[str, Any]) -> bool:
        # Access tokens end with their login: logout, reuse detection or a password change.
        family = claims.get("fam")
        return not isinstance(family, str) or is_family_revoked(family)

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
