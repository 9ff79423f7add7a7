"""Lookups of users and groups, for every package, the CLI and the tests."""

from __future__ import annotations

import sqlalchemy as sa

from app.core.db import db
from app.core.errors import Conflict, NextStep, NotAuthenticated, PermissionDenied
from app.core.log import audit
from app.identity.models import GroupName, User, UserGroup

# Said when a token names an account that was deleted or deactivated since it was issued.
ACCOUNT_GONE = "The account no longer exists or is not active."


def active_user(user_id: int) -> User:
    """The account `user_id`, which must exist and be active (else NotAuthenticated)."""
    user = db.session.get(User, user_id)
    if user is None or not user.is_active:
        raise NotAuthenticated(ACCOUNT_GONE)
    return user


def refuse_inactive_login(user: User) -> None:
    """Refuse (PermissionDenied, 403) to start a login of a deactivated or never-activated
    account, whatever the way in; said only to whoever proved to be its owner."""
    if user.deactivated_at is not None:
        audit("login_refused", reason="deactivated", user_id=user.id)
        raise PermissionDenied("This account has been deactivated; contact support.")
    if not user.is_active:
        audit("login_refused", reason="not_activated", user_id=user.id)
        raise PermissionDenied(
            "This account is not activated yet.", next_step=NextStep.ASK_ACTIVATION_LINK
        )


def find_user_by_email(email: str) -> User | None:
    """The user with this normalised email, or None."""
    return db.session.scalar(sa.select(User).where(User.email == email))


def keep_an_active_admin(user: User, action: str) -> None:
    """Refuse to take the last active ADMIN away (deactivation, demotion, deletion).

    Every active admin row is locked (PostgreSQL; SQLite runs one writer at a time), in id
    order, so two requests removing two admins at once cannot both pass this check: the
    second waits, then sees the first one's change (a deleted row, another group).
    """
    active_admin_ids = db.session.scalars(
        sa.select(User.id)
        .join(User.group)
        .where(UserGroup.name == GroupName.ADMIN, User.is_active.is_(True))
        .order_by(User.id)
        .with_for_update(of=User)
    ).all()
    if list(active_admin_ids) == [user.id]:
        raise Conflict(f"{action} this user would leave no active admin.")


def get_group(name: GroupName) -> UserGroup:
    group = db.session.scalar(sa.select(UserGroup).where(UserGroup.name == name))
    if group is None:
        raise RuntimeError(f"group {name} is missing; run `flask --app wsgi seed-groups`")
    return group


def seed_groups() -> list[str]:
    """Create the missing groups; return the names created."""
    existing = set(db.session.scalars(sa.select(UserGroup.name)))
    created = [name for name in GroupName if name not in existing]
    db.session.add_all(UserGroup(name=name) for name in created)
    db.session.commit()
    return [name.value for name in created]
