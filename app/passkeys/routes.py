"""HTTP layer of passkeys: the two ceremonies, and the caller's passkeys."""

from __future__ import annotations

from typing import Any

from app.passkeys import ceremonies, manage, schemas
from app.sessions.guard import authenticated, load_caller_user
from app.sessions.schemas import TokenPairSchema
from app.web.blueprint import Blueprint
from app.web.limits import client_address, rate_limited

blp = Blueprint(
    "passkeys",
    __name__,
    url_prefix="/auth/passkeys",
    description="Passkeys (WebAuthn): register one, sign in with one, manage them",
)
OPTIONS_PER_ADDRESS = "20/minute"
LOGIN_PER_ADDRESS = "20/minute"


@blp.route("/register/options", methods=["POST"])
@authenticated()
@rate_limited(per_address=OPTIONS_PER_ADDRESS, per_caller="10/minute")
@blp.response(200, schemas.CreationOptionsSchema)
def register_options() -> dict[str, Any]:
    """Creation options for `navigator.credentials.create()` (parseCreationOptionsFromJSON);
    the challenge is the caller's, single use, for 5 minutes."""
    return ceremonies.registration_options(load_caller_user())


@blp.route("", methods=["POST"])
@authenticated()
@blp.arguments(schemas.RegisterSchema)
@blp.response(201, schemas.PasskeySchema)
@blp.alt_response(400, description="Challenge unknown, spent or expired; not verified")
@blp.alt_response(409, description="This credential is already registered")
def register(body: dict[str, Any]) -> Any:
    """Register the passkey `credential.toJSON()` gave, under an optional name."""
    return ceremonies.register_passkey(load_caller_user(), body["credential"], body.get("name"))


@blp.route("", methods=["GET"])
@authenticated()
@blp.response(200, schemas.PasskeyListSchema)
def list_passkeys() -> dict[str, Any]:
    """The caller's passkeys, oldest first."""
    return {"items": manage.passkeys_of(load_caller_user())}


@blp.route("/<int:passkey_id>", methods=["PATCH"])
@authenticated()
@blp.arguments(schemas.RenameSchema)
@blp.response(200, schemas.PasskeySchema)
@blp.alt_response(404, description="No such passkey of the caller")
def rename(body: dict[str, str], passkey_id: int) -> Any:
    """Rename one of the caller's passkeys."""
    return manage.rename_passkey(load_caller_user(), passkey_id, body["name"])


@blp.route("/<int:passkey_id>", methods=["DELETE"])
@authenticated()
@blp.response(204)
@blp.alt_response(404, description="No such passkey of the caller")
@blp.alt_response(409, description="It is the account's last way to sign in")
def delete(passkey_id: int) -> None:
    """Delete one of the caller's passkeys (its authenticator may keep a useless copy)."""
    manage.delete_passkey(load_caller_user(), passkey_id)


@blp.route("/login/options", methods=["POST"])
@rate_limited(per_address=OPTIONS_PER_ADDRESS)
@blp.arguments(schemas.EmptySchema)
@blp.response(200, schemas.RequestOptionsSchema)
def login_options(_body: dict[str, Any]) -> dict[str, Any]:
    """Request options for `navigator.credentials.get()` (parseRequestOptionsFromJSON):
    discoverable passkeys, user verification required; the challenge is this address's."""
    return ceremonies.login_options(client_address())


@blp.route("/login", methods=["POST"])
@rate_limited(per_address=LOGIN_PER_ADDRESS)
@blp.arguments(schemas.LoginSchema)
@blp.response(200, TokenPairSchema)
@blp.alt_response(401, description="The passkey could not be verified")
@blp.alt_response(403, description="Account not activated or deactivated")
def login(body: dict[str, Any]) -> dict[str, Any]:
    """Sign in with a passkey: the token pair, as POST /auth/login gives. A passkey with user
    verification is both factors: no second step follows."""
    return ceremonies.login(body["credential"])
