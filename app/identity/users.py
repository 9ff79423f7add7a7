"""Lookups of users and groups, for every package, the CLI and the tests."""

from __future__ import annotations

import sqlalchemy as sa

from app.core.db import db
from app.core.errors import NotAuthenticated
from app.identity.models import GroupName, User, UserGroup

# Said when a token names an account that was deleted or deactivated since it was issued.
ACCOUNT_GONE = "The account no longer exists or is not active."


def active_user(user_id: int) -> User:
    """The account `user_id`, which must exist and be active (else NotAuthenticated)."""
    user = db.session.get(User, user_id)
    if user is None or not user.is_active:
        raise NotAuthenticated(ACCOUNT_GONE)
    return user


def find_user_by_email(email: str) -> User | None:
    """The user with this normalised email, or None."""
    return db.session.scalar(sa.select(User).where(User.email == email))


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
