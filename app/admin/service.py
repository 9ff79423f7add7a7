"""The use cases of user management: find users, (de)activate them, change their group.

Each mutation is done by an admin, commits once and leaves an audit line naming the admin,
the user and the change. The service always keeps at least one active ADMIN.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from app.core.db import db
from app.core.errors import UserNotFound
from app.core.log import audit
from app.events.models import EventType
from app.events.service import EventPage, events_of, record_event
from app.identity.models import GroupName, User, UserGroup
from app.identity.users import get_group, keep_an_active_admin
from app.links.models import ActivationToken, PasswordResetToken
from app.links.tokens import drop_email_tokens
from app.mfa import service as mfa
from app.sessions.endings import end_all_logins


@dataclass(frozen=True)
class UserFilter:
    email: str | None = None
    group: GroupName | None = None
    is_active: bool | None = None
    mfa_enabled: bool | None = None


@dataclass(frozen=True)
class UserPage:
    items: list[User]
    page: int
    per_page: int
    total: int


def list_users(user_filter: UserFilter, page: int, per_page: int) -> UserPage:
    """One page in id order: two queries (count, and the users with group and profile joined)."""
    conditions: list[sa.ColumnElement[bool]] = []
    if user_filter.email is not None:
        conditions.append(User.email.icontains(user_filter.email, autoescape=True))
    if user_filter.group is not None:
        conditions.append(User.group.has(UserGroup.name == user_filter.group))
    if user_filter.is_active is not None:
        conditions.append(User.is_active.is_(user_filter.is_active))
    if user_filter.mfa_enabled is not None:
        conditions.append(User.mfa_enabled.is_(user_filter.mfa_enabled))
    total = db.session.scalar(sa.select(sa.func.count(User.id)).where(*conditions)) or 0
    items = db.session.scalars(
        sa.select(User)
        .where(*conditions)
        .order_by(User.id)
        .limit(per_page)
        .offset((page - 1) * per_page)
    ).all()
    return UserPage(list(items), page, per_page, total)


def get_user(user_id: int) -> User:
    # The routes' row-id converter has already sent ids past the column to 404.
    user = db.session.get(User, user_id)
    if user is None:
        raise UserNotFound(f"No user with id {user_id}.")
    return user


def user_events(user_id: int, page: int, per_page: int) -> EventPage:
    """One page of the user's security events, newest first; 404 for no such user."""
    get_user(user_id)
    return events_of(user_id, page, per_page)


def activate_user(admin_id: int, user_id: int) -> User:
    """Activate the account; any pending activation link is spent, so it cannot be replayed."""
    user = get_user(user_id)
    was_active = user.is_active
    user.activate()
    drop_email_tokens(user.id, ActivationToken)
    if not was_active:
        record_event(EventType.ACTIVATED, user.id, actor_id=admin_id)
    db.session.commit()
    _audit("admin_user_activated", admin_id, user, is_active=(was_active, True))
    return user


def deactivate_user(admin_id: int, user_id: int) -> User:
    """Deactivate the account; every session ends at once (refresh and access tokens)."""
    user = get_user(user_id)
    keep_an_active_admin(user, "Deactivating")
    was_active = user.is_active
    user.deactivate()
    # Refresh tokens are revoked; access tokens fail at the next request, as the guard
    # refuses an inactive account and a revoked login alike.
    end_all_logins(user.id)
    # Every emailed link is spent: an activation link would undo the deactivation, a reset
    # link would still change the password of an account its owner may have lost.
    drop_email_tokens(user.id, ActivationToken, PasswordResetToken)
    record_event(EventType.DEACTIVATED, user.id, actor_id=admin_id)
    db.session.commit()
    _audit("admin_user_deactivated", admin_id, user, is_active=(was_active, False))
    return user


def change_group(admin_id: int, user_id: int, group: GroupName) -> User:
    """Move the user to a group; guards read the stored group, so it applies on the next call."""
    user = get_user(user_id)
    previous = user.group.name
    if group != GroupName.ADMIN:
        keep_an_active_admin(user, "Demoting")
    user.group = get_group(group)
    record_event(EventType.GROUP_CHANGED, user.id, actor_id=admin_id)
    db.session.commit()
    _audit("admin_group_changed", admin_id, user, group=(previous.value, group.value))
    return user


def reset_mfa(admin_id: int, user_id: int) -> User:
    """Turn off the person's two-factor (they lost the app and their recovery codes)."""
    return mfa.reset_by_admin(admin_id, get_user(user_id))


def _audit(event: str, admin_id: int, user: User, **change: tuple[Any, Any]) -> None:
    audit(
        event,
        admin_id=admin_id,
        target_id=user.id,
        change={name: {"from": old, "to": new} for name, (old, new) in change.items()},
    )
