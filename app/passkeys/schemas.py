"""Bodies of the passkey endpoints: the WebAuthn Level 3 JSON forms a browser's
`parseCreationOptionsFromJSON` / `parseRequestOptionsFromJSON` read and `toJSON()` writes,
and the passkey as the API shows it."""

from __future__ import annotations

from typing import Any

from marshmallow import EXCLUDE, Schema, fields, validate

from app.passkeys.models import NAME_LENGTH
from app.web.schemas import no_nul

B64URL = {"description": "base64url, unpadded", "pattern": "^[A-Za-z0-9_-]*$"}


def _b64(max_length: int, required: bool = True, **kwargs: Any) -> fields.String:
    return fields.String(
        required=required,
        validate=[validate.Length(max=max_length), validate.Regexp(B64URL["pattern"])],
        metadata={"description": B64URL["description"]},
        **kwargs,
    )


# Sizes: a credential id is at most 1023 bytes (1364 in base64url); the rest as browsers
# write them with room to spare, and all together within the 16 KiB JSON body cap.
CREDENTIAL_ID = 1368


class _Response(Schema):
    class Meta:
        unknown = EXCLUDE  # what a browser adds beyond these, py_webauthn does not read

    clientDataJSON = _b64(2048)
    attestationObject = _b64(4096, required=False)
    authenticatorData = _b64(2048, required=False)
    signature = _b64(1024, required=False)
    userHandle = _b64(128, required=False, allow_none=True)
    transports = fields.List(
        fields.String(validate=validate.Length(max=32)), validate=validate.Length(max=8)
    )


class CredentialSchema(Schema):
    """A PublicKeyCredential as `credential.toJSON()` writes it."""

    class Meta:
        unknown = EXCLUDE  # clientExtensionResults and the like: no extension is asked for

    id = _b64(CREDENTIAL_ID)
    rawId = _b64(CREDENTIAL_ID)
    type = fields.String(required=True, validate=validate.OneOf(["public-key"]))
    response = fields.Nested(_Response, required=True)
    authenticatorAttachment = fields.String(
        allow_none=True, validate=validate.OneOf(["platform", "cross-platform"])
    )


class RegisterSchema(Schema):
    credential = fields.Nested(CredentialSchema, required=True)
    name = fields.String(validate=[validate.Length(min=1, max=NAME_LENGTH), no_nul])


class LoginSchema(Schema):
    credential = fields.Nested(CredentialSchema, required=True)


class EmptySchema(Schema):
    """`{}`: the sign-in options name no one."""


class RenameSchema(Schema):
    name = fields.String(required=True, validate=[validate.Length(min=1, max=NAME_LENGTH), no_nul])


class PasskeySchema(Schema):
    id = fields.Integer(required=True)
    name = fields.String(required=True)
    created_at = fields.AwareDateTime(required=True)
    last_used_at = fields.AwareDateTime(required=True, allow_none=True)
    backed_up = fields.Boolean(required=True, metadata={"description": "Synced to a cloud"})
    transports = fields.List(fields.String(), required=True)


class PasskeyListSchema(Schema):
    items = fields.List(fields.Nested(PasskeySchema), required=True)


class _Descriptor(Schema):
    id = fields.String(required=True, metadata=B64URL)
    type = fields.String(required=True, metadata={"enum": ["public-key"]})
    transports = fields.List(fields.String())


class _Rp(Schema):
    id = fields.String(required=True)
    name = fields.String(required=True)


class _User(Schema):
    id = fields.String(required=True, metadata=B64URL)
    name = fields.String(required=True)
    displayName = fields.String(required=True)


class _Param(Schema):
    type = fields.String(required=True, metadata={"enum": ["public-key"]})
    alg = fields.Integer(required=True, metadata={"enum": [-8, -7, -257]})


class _Selection(Schema):
    residentKey = fields.String(required=True, metadata={"enum": ["required"]})
    requireResidentKey = fields.Boolean(required=True)
    userVerification = fields.String(required=True, metadata={"enum": ["required"]})


class CreationOptionsSchema(Schema):
    rp = fields.Nested(_Rp, required=True)
    user = fields.Nested(_User, required=True)
    challenge = fields.String(required=True, metadata=B64URL)
    pubKeyCredParams = fields.List(fields.Nested(_Param), required=True)
    timeout = fields.Integer(required=True, metadata={"description": "Milliseconds"})
    excludeCredentials = fields.List(fields.Nested(_Descriptor), required=True)
    authenticatorSelection = fields.Nested(_Selection, required=True)
    attestation = fields.String(required=True, metadata={"enum": ["none"]})


class RequestOptionsSchema(Schema):
    challenge = fields.String(required=True, metadata=B64URL)
    rpId = fields.String(required=True)
    timeout = fields.Integer(required=True, metadata={"description": "Milliseconds"})
    userVerification = fields.String(required=True, metadata={"enum": ["required"]})
    allowCredentials = fields.List(
        fields.Nested(_Descriptor),
        required=True,
        metadata={"description": "Always empty: discoverable credentials"},
    )
