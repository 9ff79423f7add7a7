"""Which account a provider's verified claims sign in, or link to (the contract's rules).

An identity is (provider, sub), never the email. A first sign-in with a verified email of
no activated account creates an active USER without a password, replacing a never-activated
registration of that email (its pending password dropped: whoever registered first may not
own the address). An activated account is never linked silently (`account_exists`), unless
OIDC_LINK_VERIFIED_EMAIL says the providers' verified emails are to be trusted.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from flask import current_app
from marshmallow import ValidationError

from app.core.db import db, utcnow
from app.courier.messages import queue_notice
from app.events.models import EventType
from app.events.service import record_event
from app.identity.models import GroupName, User, UserProfile
from app.identity.users import find_user_by_email, get_group
from app.identity.ways_in import register_way_in
from app.oidc.models import LinkedIdentity
from app.oidc.providers import Provider
from app.web.schemas import normalise_email

NAME_LENGTH = 100


class Refused(Exception):
    """The sign-in or link is refused; the message is the `#error=` reason."""


def _count_identities(user_id: int) -> int:
    query = sa.select(sa.func.count(LinkedIdentity.id)).where(LinkedIdentity.user_id == user_id)
    return db.session.scalar(query) or 0


register_way_in("identity", _count_identities)


def find_identity(provider: Provider, subject: str) -> LinkedIdentity | None:
    return db.session.scalar(
        sa.select(LinkedIdentity).where(
            LinkedIdentity.provider == provider.name, LinkedIdentity.subject == subject
        )
    )


def verified_email(claims: dict[str, Any]) -> str | None:
    """The email the provider vouches for, normalised; None when it vouches for none."""
    if claims.get("email_verified") not in (True, "true"):  # some providers send a string
        return None
    try:
        return normalise_email(claims.get("email"))
    except ValidationError:
        return None


def user_signing_in(provider: Provider, claims: dict[str, Any]) -> User:
    """The account these claims sign in, created or linked by the rules above (Refused with
    the reason otherwise). The caller commits."""
    identity = find_identity(provider, claims["sub"])
    if identity is not None:
        identity.last_used_at = utcnow()
        return identity.user
    email = verified_email(claims)
    if email is None:
        raise Refused("email_not_verified")
    user = find_user_by_email(email)
    if user is not None and (user.is_active or user.deactivated_at is not None):
        if not current_app.config["OIDC_LINK_VERIFIED_EMAIL"]:
            raise Refused("account_exists")
    else:
        if user is not None:  # never activated: replaced, with its pending password
            db.session.delete(user)
            db.session.flush()
        user = _new_user(email, claims)
        link(provider, claims, user, notify=False)  # the account is new: nothing to tell
        return user
    link(provider, claims, user)
    return user


def _new_user(email: str, claims: dict[str, Any]) -> User:
    user = User(email=email, password_hash=None, group=get_group(GroupName.USER))
    user.profile = UserProfile(
        first_name=_name(claims, "given_name"), last_name=_name(claims, "family_name")
    )
    user.activate()
    db.session.add(user)
    db.session.flush()
    record_event(EventType.REGISTERED, user.id)
    return user


def link(
    provider: Provider, claims: dict[str, Any], user: User, *, notify: bool = True
) -> LinkedIdentity:
    """Link the provider's account to `user` (Refused when another account has it), with a
    security event and a notice to the account's address."""
    identity = find_identity(provider, claims["sub"])
    if identity is not None:
        if identity.user_id != user.id:
            raise Refused("identity_in_use")
        identity.last_used_at = utcnow()
        return identity
    identity = LinkedIdentity(
        user_id=user.id,
        provider=provider.name,
        subject=claims["sub"],
        email=verified_email(claims),
        given_name=_name(claims, "given_name"),
        family_name=_name(claims, "family_name"),
        last_used_at=utcnow(),
    )
    db.session.add(identity)
    db.session.flush()
    record_event(EventType.IDENTITY_LINKED, user.id)
    if notify:
        tell(user, "identity_linked", provider.display_name)
    return identity


SUBJECTS = {
    "identity_linked": "A sign-in provider was linked to your cinema account",
    "identity_unlinked": "A sign-in provider was unlinked from your cinema account",
}


def tell(user: User, template: str, provider_name: str) -> None:
    """A notice of a linked or unlinked provider, at most one a few minutes per kind."""
    queue_notice(
        user.email,
        user.id,
        template,
        template,
        SUBJECTS[template],
        provider=provider_name,
        changed_at=utcnow(),
    )


def _name(claims: dict[str, Any], key: str) -> str | None:
    value = claims.get(key)
    return value.strip()[:NAME_LENGTH] or None if isinstance(value, str) else None
