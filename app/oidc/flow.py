"""The authorization code flow with PKCE (S256), state and nonce, from our side: the
sign-ins under way (kept server-side, bound to the browser that started them, spent by the
callback), the exchange of the provider's code, and our one-time sign-in codes."""

from __future__ import annotations

import secrets
from datetime import datetime, timedelta
from urllib.parse import urlencode

import requests
import sqlalchemy as sa
from authlib.integrations.base_client.errors import OAuthError
from authlib.integrations.requests_client import OAuth2Session
from authlib.oauth2.rfc7636 import create_s256_code_challenge
from flask import current_app

from app.core.batches import Batches
from app.core.crypto import hash_token
from app.core.db import db, utcnow
from app.core.errors import DisallowedRedirect
from app.oidc.models import PendingSignIn, SignInCode
from app.oidc.providers import Provider, metadata

# Long enough to choose an account at the provider, short enough that a stolen state dies.
PENDING_TTL = timedelta(minutes=10)
# The contract: the one-time sign-in code is valid 60 s.
CODE_TTL = timedelta(seconds=60)


class ProviderRefused(Exception):
    """The provider would not turn the code into tokens (or could not be reached)."""


def allowed_return_to(return_to: str | None) -> str:
    """`return_to` when it is exactly one of OIDC_RETURN_URLS (the first one when none is
    given): compared as a whole string, so no spelling of another host (`//evil`, `\\evil`,
    `user@evil`, another scheme) ever passes."""
    allowed = current_app.config["OIDC_RETURN_URLS"]
    if return_to is None:
        return str(allowed[0])
    if return_to not in allowed:
        raise DisallowedRedirect(
            "return_to is not one of the addresses a sign-in may return to.",
            errors={"return_to": ["Not an allowed return address."]},
        )
    return return_to


def callback_url(provider: Provider) -> str:
    return f"{current_app.config['PUBLIC_BASE_URL']}/auth/oidc/{provider.name}/callback"


def begin(provider: Provider, return_to: str, link_user_id: int | None) -> tuple[str, str]:
    """Record a sign-in under way; return the provider's authorization URL and the secret of
    the browser cookie that binds it. The caller commits."""
    endpoint = metadata(provider)["authorization_endpoint"]  # before anything is written
    state, nonce, verifier, browser = (secrets.token_urlsafe(32) for _ in range(4))
    db.session.add(
        PendingSignIn(
            state_hash=hash_token(state),
            browser_hash=hash_token(browser),
            provider=provider.name,
            nonce=nonce,
            code_verifier=verifier,
            return_to=return_to,
            link_user_id=link_user_id,
            expires_at=utcnow() + PENDING_TTL,
        )
    )
    query = urlencode(
        {
            "response_type": "code",
            "client_id": provider.client_id,
            "redirect_uri": callback_url(provider),
            "scope": provider.scopes,
            "state": state,
            "nonce": nonce,
            "code_challenge": create_s256_code_challenge(verifier),
            "code_challenge_method": "S256",
        }
    )
    return f"{endpoint}{'&' if '?' in endpoint else '?'}{query}", browser


def take_pending(state: str) -> PendingSignIn | None:
    """Spend the sign-in under way that `state` names, whatever comes next: a state works
    once. None when it was never issued or is spent."""
    return db.session.scalar(
        sa.delete(PendingSignIn)
        .where(PendingSignIn.state_hash == hash_token(state))
        .returning(PendingSignIn)
        .execution_options(synchronize_session=False)
    )


def fetch_id_token(provider: Provider, pending: PendingSignIn, code: str) -> str:
    """Exchange the provider's code (with our PKCE verifier) for its id_token."""
    client = OAuth2Session(
        provider.client_id,
        provider.client_secret,
        token_endpoint_auth_method="client_secret_basic",  # noqa: S106 - a method's name
    )
    try:
        token = client.fetch_token(
            metadata(provider)["token_endpoint"],
            code=code,
            redirect_uri=callback_url(provider),
            code_verifier=pending.code_verifier,
            timeout=current_app.config["OIDC_HTTP_TIMEOUT"],
        )
    except (OAuthError, requests.RequestException, ValueError) as exc:
        raise ProviderRefused(type(exc).__name__) from exc
    finally:
        client.close()
    id_token = token.get("id_token")
    if not isinstance(id_token, str):
        raise ProviderRefused("no id_token")
    return id_token


def issue_code(user_id: int) -> str:
    """A one-time sign-in code for the account; only its hash is stored."""
    code = secrets.token_urlsafe(32)
    db.session.add(
        SignInCode(code_hash=hash_token(code), user_id=user_id, expires_at=utcnow() + CODE_TTL)
    )
    return code


def spend_code(code: str) -> int | None:
    """The account of an unspent, unexpired code, which is spent now (atomically: of two
    requests with one code, one wins); None otherwise."""
    now = utcnow()
    return db.session.scalar(
        sa.update(SignInCode)
        .where(
            SignInCode.code_hash == hash_token(code),
            SignInCode.used_at.is_(None),
            SignInCode.expires_at > now,
        )
        .values(used_at=now)
        .returning(SignInCode.user_id)
        .execution_options(synchronize_session=False)
    )


def delete_expired_sign_ins(now: datetime, batches: Batches) -> dict[str, int]:
    """Delete the sign-ins under way and the one-time codes that expired by `now` (the
    scheduled clean-up): nothing can use them any more."""
    return {
        "oidc_sign_ins": batches.delete(PendingSignIn, PendingSignIn.expires_at, up_to=now),
        "oidc_codes": batches.delete(SignInCode, SignInCode.expires_at, up_to=now),
    }
