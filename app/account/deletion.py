"""The use case of a person deleting their own account, and the job that deletes its avatar.

What the account holds goes in one transaction, by the database's ON DELETE rules from the
user's row: the profile, the refresh tokens (so every login, and with it every access
token), the emailed links' tokens and the emails not yet sent to the person (CASCADE). The
security events stay, pseudonymised: their `user_id` becomes NULL (SET NULL) and their
`subject`, a keyed hash of the id, is all that tells them apart. The avatar object lives
outside the database, so it is deleted after the commit, by a job.
"""

from __future__ import annotations

import logging
import re

import sqlalchemy as sa

from app.core.db import db
from app.core.errors import WrongPassword
from app.core.log import audit
from app.courier.queue import enqueue_after_commit
from app.events.models import EventType
from app.events.service import record_event
from app.identity.models import GroupName, User
from app.identity.storage import avatar_storage
from app.identity.users import keep_an_active_admin
from app.passwords.service import check_current_password

log = logging.getLogger(__name__)


def delete_account(user: User, password: str) -> None:
    """Delete the account of a signed-in person who proves the password (WrongPassword
    otherwise); the last active admin may not go (Conflict). The password is checked first,
    so a stolen access token alone learns nothing, not even that its holder is an admin.

    An account without a password (created by a provider) has nothing to prove here yet: it
    is refused, and told to set one by forgot/reset. (To come: a fresh sign-in with the
    provider as the proof, as a recent-login check.)"""
    if user.password_hash is None:
        raise WrongPassword(
            "This account has no password: set one with POST /auth/password/forgot, then"
            " delete the account with it."
        )
    check_current_password(user, password, refusal="account_deletion_refused")
    if user.group_name == GroupName.ADMIN:
        keep_an_active_admin(user, "Deleting")  # locks the admin rows until the commit
    avatar_key = user.profile.avatar_key if user.profile is not None else None
    record_event(EventType.DELETED, user.id)
    # The event is written before its user is deleted, so SET NULL pseudonymises it with the
    # others; a Core DELETE leaves the cascades to the database, where they are one statement.
    db.session.flush()
    db.session.execute(sa.delete(User).where(User.id == user.id))
    if avatar_key is not None:
        # A job id that names the object, so that a job Redis never got (logged with its
        # id) or one that ran out of retries (RQ's failed registry) says what is left over.
        job_id = "delete-" + re.sub(r"[^A-Za-z0-9_-]", "-", avatar_key)
        enqueue_after_commit(delete_avatar_object, avatar_key, job_id=job_id)
    db.session.commit()
    audit("account_deleted", user_id=user.id)


def delete_avatar_object(key: str) -> None:
    """The job that deletes a deleted account's avatar object. Nothing points at the object
    any more, so nothing else would ever delete it: while storage is unreachable the job
    raises, and RQ runs it again with the back-off of app/courier/queue.py."""
    avatar_storage().delete(key)
    log.info("avatar_object_deleted")
