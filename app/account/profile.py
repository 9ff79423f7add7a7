"""The use case of the caller's own profile fields (the avatar: app/identity/avatars.py)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from app.core.db import db
from app.core.errors import InvalidInput
from app.core.log import audit
from app.identity.models import User, UserProfile

EDITABLE_FIELDS = frozenset({"first_name", "last_name", "gender", "date_of_birth", "info"})


def profile_of(user: User) -> UserProfile:
    if user.profile is None:
        user.profile = UserProfile()
    return user.profile


def update_profile(user: User, changes: Mapping[str, Any]) -> UserProfile:
    """Apply the given fields; the schema has already refused anything else."""
    unknown = set(changes) - EDITABLE_FIELDS
    if unknown:  # a second line of defence against mass assignment
        raise InvalidInput(
            "These fields cannot be changed here.",
            errors={name: ["Unknown field."] for name in sorted(unknown)},
        )
    profile = profile_of(user)
    for name, value in changes.items():
        setattr(profile, name, value)
    db.session.commit()
    audit("profile_updated", user_id=user.id, fields=sorted(changes))
    return profile
