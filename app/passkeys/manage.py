"""The signed-in person's passkeys: list, rename, delete; and what adding one tells.

Adding or deleting a passkey writes a security event and emails a notice (at most one of each
kind per few minutes, as the password's notice). The last way to sign in is never deleted
(app/identity/ways_in.py).
"""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from app.core.db import db, utcnow
from app.core.errors import Conflict, UserNotFound
from app.core.log import audit
from app.courier.messages import queue_notice
from app.events.models import EventType
from app.events.service import record_event
from app.identity.models import User
from app.identity.ways_in import keep_a_way_in
from app.passkeys.models import Passkey

NOT_FOUND = "No such passkey."
REGISTERED = "This passkey is already registered."


def passkeys_of(user: User) -> list[Passkey]:
    """The user's passkeys, oldest first."""
    query = sa.select(Passkey).where(Passkey.user_id == user.id).order_by(Passkey.id)
    return list(db.session.scalars(query))


def _mine(user: User, passkey_id: int) -> Passkey:
    # Someone else's passkey answers as one that does not exist: ids tell nothing.
    passkey = db.session.get(Passkey, passkey_id)
    if passkey is None or passkey.user_id != user.id:
        raise UserNotFound(NOT_FOUND)
    return passkey


def added(user: User, passkey: Passkey) -> Passkey:
    """Keep a verified new passkey: the row, its event, its notice, committed together; a
    credential id already registered (by anyone) is a Conflict."""
    db.session.add(passkey)
    try:
        db.session.flush()
    except IntegrityError:  # the unique credential id: registered before, or just now
        db.session.rollback()
        raise Conflict(REGISTERED) from None
    record_event(EventType.PASSKEY_ADDED, user.id)
    _notify(user, "passkey_added", "A passkey was added to your cinema account", passkey)
    db.session.commit()
    audit("passkey_added", user_id=user.id, passkey_id=passkey.id)
    return passkey


def rename_passkey(user: User, passkey_id: int, name: str) -> Passkey:
    """Give one of the caller's passkeys a new name."""
    passkey = _mine(user, passkey_id)
    passkey.name = name
    db.session.commit()
    return passkey


def delete_passkey(user: User, passkey_id: int) -> None:
    """Delete one of the caller's passkeys, unless it is the account's last way in (409)."""
    # The account row is locked first, so two deletions at once cannot both count the other's
    # passkey as the way that remains.
    db.session.execute(sa.select(User.id).where(User.id == user.id).with_for_update())
    passkey = _mine(user, passkey_id)
    keep_a_way_in(user)
    db.session.delete(passkey)
    record_event(EventType.PASSKEY_REMOVED, user.id)
    _notify(user, "passkey_removed", "A passkey was removed from your cinema account", passkey)
    db.session.commit()
    audit("passkey_removed", user_id=user.id, passkey_id=passkey_id)


def _notify(user: User, template: str, subject: str, passkey: Passkey) -> None:
    kind = template.replace("_", "-")
    queue_notice(user.email, user.id, kind, template, subject, name=passkey.name, at=utcnow())
