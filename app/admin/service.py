"""The use cases of user management: find users, (de)activate them, change their group.

Each mutation is done by an admin, commits once and leaves an audit line naming the admin,
the user and the change. The service always keeps at least one active ADMIN.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from app.admin.schemas import PAGE_DEPTH
from app.core.db import db
from app.core.errors import UserNotFound
from app.core.log import audit
from app.events.models import EventType
from app.events.service import EventPage, events_of, record_event
from app.identity.models import (
    GroupName,
    User,
    email_trigram_pattern,
    email_trigram_text,
)
from app.identity.users import get_group, keep_an_active_admin
from app.links.models import ActivationToken, PasswordResetToken
from app.links.tokens import drop_email_tokens
from app.mfa import service as mfa
from app.sessions.endings import end_all_logins

# The exact total counts at most this many matches (one more says "there are more"); past
# it the total is an estimate. The same number bounds how deep `page` reaches.
EXACT_TOTAL = PAGE_DEPTH


@dataclass(frozen=True)
class UserFilter:
    email: str | None = None
    group: GroupName | None = None
    is_active: bool | None = None
    mfa_enabled: bool | None = None


@dataclass(frozen=True)
class UserPage:
    items: list[User]
    page: int | None
    per_page: int
    total: int
    total_exact: bool
    next_after: int | None


def list_users(
    user_filter: UserFilter, per_page: int, *, page: int | None = None, after: int | None = None
) -> UserPage:
    """One page in id order, by number (`page`, within the first PAGE_DEPTH rows) or by key
    (`after`: the users with a greater id), and the filter's total.

    Two queries, whatever the depth and the table's size (three with a group, whose id is
    looked up first): the page, one row more than asked for (so `next_after` knows whether
    more follow), with group and profile joined; and the total, counted over at most
    EXACT_TOTAL + 1 matching rows. Only a total past that costs one more, an estimate
    (`estimated_total`). Every filter is served in id order by an index (migration 0014).
    """
    conditions = _conditions(user_filter)
    ids = sa.select(User.id).where(*conditions).order_by(User.id).limit(per_page + 1)
    if after is not None:
        ids = ids.where(User.id > after)
    else:
        ids = ids.offset(((page or 1) - 1) * per_page)
    # The page's ids first, then their rows with group and profile: joined to the whole
    # filter, PostgreSQL may merge-join the profiles from the first one on, whatever `after`.
    page_ids = ids.subquery()
    rows = list(
        db.session.scalars(
            sa.select(User).join(page_ids, User.id == page_ids.c.id).order_by(User.id)
        ).all()
    )
    items = rows[:per_page]
    next_after = items[-1].id if len(rows) > per_page else None
    bounded = (
        sa.select(User.id).where(*conditions).order_by(User.id).limit(EXACT_TOTAL + 1).subquery()
    )
    total = db.session.scalar(sa.select(sa.func.count()).select_from(bounded)) or 0
    exact = total <= EXACT_TOTAL
    if not exact:
        total = max(estimated_total(conditions), EXACT_TOTAL + 1)
    page_number = None if after is not None else page or 1
    return UserPage(items, page_number, per_page, total, exact, next_after)


def _conditions(user_filter: UserFilter) -> list[sa.ColumnElement[bool]]:
    """The filter as conditions the indexes of migration 0014 serve.

    The flags are compared with `=`, which PostgreSQL reads as the partial indexes' own
    predicates (`NOT is_active`, `mfa_enabled`). The group is looked up first and compared by
    its id, a constant: the planner then knows from the column's statistics how many users
    the group holds, and with the other filters which index to take.
    """
    conditions: list[sa.ColumnElement[bool]] = []
    if user_filter.email is not None:
        conditions.extend(_email_conditions(user_filter.email))
    if user_filter.group is not None:
        conditions.append(User.group_id == get_group(user_filter.group).id)
    if user_filter.is_active is not None:
        conditions.append(User.is_active == user_filter.is_active)
    if user_filter.mfa_enabled is not None:
        conditions.append(User.mfa_enabled == user_filter.mfa_enabled)
    return conditions


def _email_conditions(part: str) -> list[sa.ColumnElement[bool]]:
    """`part` anywhere in the email, any case (emails are stored lower-case: the table's
    check).

    On PostgreSQL the trigram index finds the candidates by the part spelt in letters
    (`email_trigram_text`), and `strpos(email, part) <> 0` keeps those that hold it as
    written. Not a second LIKE: the planner would multiply the two estimates of one fact
    and take a part held by one user in ten for one in a hundred; an `<>` on a function's
    result it reckons true for nearly every row, as it is for the candidates.
    """
    part = part.lower()
    if db.session.get_bind().dialect.name != "postgresql":
        return [User.email.contains(part, autoescape=True)]
    spelt = email_trigram_text(User.email).like(f"%{email_trigram_pattern(part)}%")
    return [spelt, sa.func.strpos(User.email, part) != 0]


def estimated_total(conditions: list[sa.ColumnElement[bool]]) -> int:
    """How many users match, by the database's statistics, never by counting them.

    PostgreSQL: the planner's row estimate for the filtered query, read from
    EXPLAIN (FORMAT JSON): as good as the last ANALYZE (autovacuum keeps it fresh), and
    extended statistics (migration 0014) tell it how the group and the two flags go
    together. SQLite keeps no such statistics: the answer is EXACT_TOTAL + 1, "more than
    EXACT_TOTAL" (`total_exact` false says it is no count); SQLite serves development only.
    """
    bind = db.session.get_bind()
    if bind.dialect.name != "postgresql":
        return EXACT_TOTAL + 1
    statement = (
        sa.select(User.id)
        .where(*conditions)
        .compile(dialect=bind.dialect, compile_kwargs={"render_postcompile": True})
    )
    plan = (
        db.session.connection()
        .exec_driver_sql(f"EXPLAIN (FORMAT JSON) {statement}", statement.params)
        .scalar_one()
    )
    return int(plan[0]["Plan"]["Plan Rows"])


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
