"""Social sign-in's use cases: start a sign-in or a link, come back from the provider, turn
the one-time code into a login, list and unlink the linked identities.

Each use case checks, writes, and commits once; it raises a domain error instead of building
a response. The callback's failures are the exception: the browser came from the provider,
so they go back to the front end as `#error=<reason>` on `return_to`.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

import sqlalchemy as sa

from app.core.db import db, utcnow
from app.core.errors import IdentityNotFound, InvalidToken, PermissionDenied, UnknownProvider
from app.core.log import audit
from app.events.models import EventType
from app.events.service import record_event
from app.identity.models import User
from app.identity.ways_in import keep_a_way_in
from app.mfa.second_step import start_login
from app.oidc import accounts, flow
from app.oidc.id_tokens import InvalidIdToken, verify_id_token
from app.oidc.models import LinkedIdentity, PendingSignIn
from app.oidc.providers import Provider, all_providers, get_provider

UNKNOWN_STATE = "This sign-in was never started here, or is already over; start it again."
INVALID_CODE = "The sign-in code is unknown, spent or expired; sign in again."


def list_providers() -> list[Provider]:
    return all_providers()


def start(name: str, return_to: str | None, user: User | None = None) -> tuple[str, str]:
    """Begin a sign-in (or, for a signed-in `user`, a link): the provider's authorization
    URL and the secret of the cookie that binds it to this browser."""
    provider = get_provider(name)
    url, browser = flow.begin(provider, flow.allowed_return_to(return_to), user and user.id)
    db.session.commit()
    return url, browser


def finish(name: str, args: dict[str, str], browser: str | None) -> str:
    """Come back from the provider: where to send the browser, `return_to` with the one-time
    code, `#linked=<provider>` or `#error=<reason>`. A state never issued (or spent) is
    InvalidToken: there is nowhere safe to send the browser."""
    pending = flow.take_pending(args.get("state") or "")
    if pending is None or pending.provider != name:
        db.session.rollback()
        raise InvalidToken(UNKNOWN_STATE)
    db.session.commit()  # spent, whatever comes next
    return_to = pending.return_to  # read now: a rollback below expires the record
    try:
        outcome = _outcome(get_provider(name), pending, args, browser)
    except (accounts.Refused, UnknownProvider) as refusal:
        db.session.rollback()
        audit("oidc_sign_in_refused", provider=name, reason=str(refusal))
        return _back(return_to, error=str(refusal))
    db.session.commit()
    return _back(return_to, **outcome)


def _outcome(
    provider: Provider, pending: PendingSignIn, args: dict[str, str], browser: str | None
) -> dict[str, str]:
    if browser is None or flow.hash_token(browser) != pending.browser_hash:
        raise accounts.Refused("state_mismatch")  # started in another browser
    if pending.expires_at <= utcnow():
        raise accounts.Refused("sign_in_expired")
    if args.get("error") or not args.get("code"):
        raise accounts.Refused("provider_refused")
    try:
        id_token = flow.fetch_id_token(provider, pending, args["code"])
    except flow.ProviderRefused as exc:
        raise accounts.Refused("provider_refused") from exc
    try:
        claims = verify_id_token(provider, id_token, pending.nonce)
    except InvalidIdToken as exc:
        audit("oidc_id_token_refused", provider=provider.name, check=str(exc))
        raise accounts.Refused("invalid_id_token") from exc
    if pending.link_user_id is not None:
        user = db.session.get(User, pending.link_user_id)
        if user is None or not user.is_active:
            raise accounts.Refused("account_gone")
        accounts.link(provider, claims, user)
        audit("oidc_identity_linked", provider=provider.name, user_id=user.id)
        return {"linked": provider.name}
    user = accounts.user_signing_in(provider, claims)
    audit("oidc_sign_in_code_issued", provider=provider.name, user_id=user.id)
    return {"code": flow.issue_code(user.id)}


def _back(return_to: str, **fragment: str) -> str:
    # The fragment never reaches a server, so the code stays out of every access log.
    return f"{return_to}#{urlencode(fragment)}"


def exchange(code: str) -> dict[str, Any]:
    """Turn a one-time sign-in code into a login (InvalidToken when it is unknown, spent or
    expired; PermissionDenied for an account deactivated since)."""
    user_id = flow.spend_code(code)
    user = db.session.get(User, user_id) if user_id is not None else None
    if user is None:
        db.session.rollback()
        raise InvalidToken(INVALID_CODE)
    if not user.is_active:
        db.session.commit()  # the code is spent either way
        audit("login_refused", reason="deactivated", user_id=user.id)
        raise PermissionDenied("This account has been deactivated; contact support.")
    # A provider vouches for who the person is, as a password does: an account with two-factor
    # meets the same second step (checklist item 32).
    return start_login(user)


def identities_of(user: User) -> list[LinkedIdentity]:
    return list(
        db.session.scalars(
            sa.select(LinkedIdentity)
            .where(LinkedIdentity.user_id == user.id)
            .order_by(LinkedIdentity.id)
        )
    )


def unlink(user: User, identity_id: int) -> None:
    """Unlink one of the caller's identities (IdentityNotFound when it is not one of theirs;
    Conflict when it is the account's last way to sign in)."""
    # The account's row, locked until the commit (PostgreSQL), queues two removals of its
    # last two ways in: the second counts after the first is gone.
    db.session.execute(sa.select(User.id).where(User.id == user.id).with_for_update())
    identity = db.session.scalar(
        sa.select(LinkedIdentity)
        .where(LinkedIdentity.id == identity_id, LinkedIdentity.user_id == user.id)
        .with_for_update()
    )
    if identity is None:
        raise IdentityNotFound("No linked identity of this account has this id.")
    keep_a_way_in(user)
    db.session.delete(identity)
    record_event(EventType.IDENTITY_UNLINKED, user.id)
    accounts.tell(user, "identity_unlinked", _display_name(identity.provider))
    db.session.commit()
    audit("oidc_identity_unlinked", provider=identity.provider, user_id=user.id)


def _display_name(name: str) -> str:
    try:
        return get_provider(name).display_name
    except UnknownProvider:  # removed from the settings since it was linked
        return name
