"""The two WebAuthn ceremonies: register a passkey (signed in), sign in with one.

py_webauthn builds the options and verifies the responses; here are the rules around it.
Each challenge is spent, and committed as spent, before the response is verified, so a
failed attempt cannot be tried again with the same challenge. Every sign-in refusal says the
same words, so none tells whether a credential exists.
"""

from __future__ import annotations

import hmac
import json
from typing import Any

import sqlalchemy as sa
from flask import current_app
from webauthn import (
    generate_authentication_options,
    generate_registration_options,
    verify_authentication_response,
    verify_registration_response,
)
from webauthn.helpers import base64url_to_bytes, options_to_json_dict
from webauthn.helpers.cose import COSEAlgorithmIdentifier
from webauthn.helpers.exceptions import WebAuthnException
from webauthn.helpers.structs import (
    AuthenticatorSelectionCriteria,
    AuthenticatorTransport,
    PublicKeyCredentialDescriptor,
    ResidentKeyRequirement,
    UserVerificationRequirement,
)

from app.core.crypto import derive_key
from app.core.db import db, utcnow
from app.core.errors import InvalidPasskey, NotAuthenticated
from app.core.log import audit
from app.events.models import EventType
from app.events.service import record_event
from app.identity.models import User
from app.identity.users import refuse_inactive_login
from app.passkeys import challenges
from app.passkeys.manage import added
from app.passkeys.models import Passkey
from app.sessions.refresh_tokens import issue_token_pair

TIMEOUT_MS = int(challenges.CHALLENGE_TTL.total_seconds() * 1000)
ALGORITHMS = [
    COSEAlgorithmIdentifier.EDDSA,
    COSEAlgorithmIdentifier.ECDSA_SHA_256,
    COSEAlgorithmIdentifier.RSASSA_PKCS1_v1_5_SHA_256,
]
NOT_VERIFIED = "The passkey could not be verified."
UNKNOWN_CHALLENGE = "The challenge is unknown, already used or expired: ask for new options."


def _user_handle(user_id: int) -> bytes:
    """The opaque handle authenticators keep for the account: no email, no row id."""
    return hmac.new(derive_key("passkey-user-handle"), str(user_id).encode(), "sha256").digest()


def _presented_challenge(credential: dict[str, Any]) -> bytes | None:
    """The challenge the client data says it signed, or None when it cannot be read."""
    try:
        client_data = json.loads(base64url_to_bytes(credential["response"]["clientDataJSON"]))
        return base64url_to_bytes(client_data["challenge"])
    except (KeyError, TypeError, ValueError, AttributeError):
        return None


def _spend(credential: dict[str, Any], ceremony: str, user_id: int | None = None) -> bytes:
    """Spend the challenge the client data names, committed at once; refuse a response whose
    challenge this ceremony (of this user) did not issue, spent or expired."""
    challenge = _presented_challenge(credential)
    spent = challenge is not None and challenges.spend_challenge(
        challenge, ceremony, user_id=user_id
    )
    db.session.commit()
    if challenge is None or not spent:
        if ceremony == challenges.REGISTER:
            raise InvalidPasskey(UNKNOWN_CHALLENGE)
        raise NotAuthenticated(NOT_VERIFIED)
    return challenge


def registration_options(user: User) -> dict[str, Any]:
    """Creation options for a new passkey of `user`, its existing ones excluded."""
    config = current_app.config
    mine = db.session.scalars(sa.select(Passkey).where(Passkey.user_id == user.id))
    options = generate_registration_options(
        rp_id=config["WEBAUTHN_RP_ID"],
        rp_name=config["WEBAUTHN_RP_NAME"],
        user_id=_user_handle(user.id),
        user_name=user.email,
        user_display_name=user.email,
        challenge=challenges.issue_challenge(challenges.REGISTER, user_id=user.id, address=None),
        timeout=TIMEOUT_MS,
        authenticator_selection=AuthenticatorSelectionCriteria(
            resident_key=ResidentKeyRequirement.REQUIRED,
            user_verification=UserVerificationRequirement.REQUIRED,
        ),
        exclude_credentials=[
            PublicKeyCredentialDescriptor(
                id=key.credential_id,
                transports=[AuthenticatorTransport(t) for t in key.transports] or None,
            )
            for key in mine
        ],
        supported_pub_key_algs=ALGORITHMS,
    )
    db.session.commit()
    return options_to_json_dict(options)


def register_passkey(user: User, credential: dict[str, Any], name: str | None) -> Passkey:
    """Verify a new passkey of `user` against a challenge issued to `user`, and keep it."""
    config = current_app.config
    challenge = _spend(credential, challenges.REGISTER, user.id)
    try:
        verified = verify_registration_response(
            credential=credential,
            expected_challenge=challenge,
            expected_rp_id=config["WEBAUTHN_RP_ID"],
            expected_origin=config["WEBAUTHN_ORIGINS"],
            require_user_verification=True,
            supported_pub_key_algs=ALGORITHMS,
        )
    except WebAuthnException as error:
        audit("passkey_registration_refused", user_id=user.id, reason=str(error)[:200])
        raise InvalidPasskey(f"{NOT_VERIFIED} {error}") from None
    passkey = Passkey(
        user_id=user.id,
        credential_id=verified.credential_id,
        public_key=verified.credential_public_key,
        user_handle=_user_handle(user.id),
        sign_count=verified.sign_count,
        transports=_transports(credential),
        backed_up=verified.credential_backed_up,
        name=name or "Passkey",
    )
    return added(user, passkey)


def _transports(credential: dict[str, Any]) -> list[str]:
    """The transports the browser reported, those WebAuthn knows (hints for later ceremonies)."""
    known = {transport.value for transport in AuthenticatorTransport}
    reported = credential["response"].get("transports") or []
    return sorted({transport for transport in reported if transport in known})


def login_options(address: str) -> dict[str, Any]:
    """Request options for a sign-in with a discoverable passkey (allowCredentials empty)."""
    options = generate_authentication_options(
        rp_id=current_app.config["WEBAUTHN_RP_ID"],
        challenge=challenges.issue_challenge(challenges.LOGIN, user_id=None, address=address),
        timeout=TIMEOUT_MS,
        user_verification=UserVerificationRequirement.REQUIRED,
    )
    db.session.commit()
    return options_to_json_dict(options)


def login(credential: dict[str, Any]) -> dict[str, Any]:
    """Start a login with a passkey: a new token pair. User verification makes the passkey
    both factors at once, so no second step follows."""
    config = current_app.config
    challenge = _spend(credential, challenges.LOGIN)
    passkey = _named_passkey(credential)
    try:
        verified = verify_authentication_response(
            credential=credential,
            expected_challenge=challenge,
            expected_rp_id=config["WEBAUTHN_RP_ID"],
            expected_origin=config["WEBAUTHN_ORIGINS"],
            credential_public_key=passkey.public_key,
            credential_current_sign_count=0,  # the counter is judged below, after the signature
            require_user_verification=True,
        )
    except WebAuthnException as error:
        audit("passkey_login_failed", reason=str(error)[:200], user_id=passkey.user_id)
        raise NotAuthenticated(NOT_VERIFIED) from None
    _check_counter(passkey, verified.new_sign_count)
    user = db.session.get(User, passkey.user_id)
    assert user is not None  # the foreign key
    refuse_inactive_login(user)
    passkey.sign_count = verified.new_sign_count
    passkey.backed_up = verified.credential_backed_up
    passkey.last_used_at = utcnow()
    pair = issue_token_pair(user)
    record_event(EventType.LOGIN_SUCCEEDED, user.id)
    db.session.commit()
    audit("login_succeeded", user_id=user.id, way="passkey")
    return pair


def _named_passkey(credential: dict[str, Any]) -> Passkey:
    """The passkey the credential names, whose account the user handle names too."""
    try:
        raw_id = base64url_to_bytes(credential["rawId"])
        handle = base64url_to_bytes(credential["response"]["userHandle"])
    except (KeyError, TypeError, ValueError, AttributeError):
        raise NotAuthenticated(NOT_VERIFIED) from None
    passkey = db.session.scalar(sa.select(Passkey).where(Passkey.credential_id == raw_id))
    if passkey is None or not hmac.compare_digest(handle, passkey.user_handle):
        audit("passkey_login_failed", reason="unknown credential or user handle")
        raise NotAuthenticated(NOT_VERIFIED)
    return passkey


def _check_counter(passkey: Passkey, new_count: int) -> None:
    """A counter that did not move forward means two authenticators hold the key: a clone.
    Counters that stay 0 (most synced passkeys) are fine."""
    if (new_count or passkey.sign_count) and new_count <= passkey.sign_count:
        record_event(EventType.PASSKEY_CLONE_SUSPECTED, passkey.user_id)
        db.session.commit()
        audit("passkey_clone_suspected", user_id=passkey.user_id, passkey_id=passkey.id)
        raise NotAuthenticated(NOT_VERIFIED)
