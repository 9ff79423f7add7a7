"""Bodies of two-factor: the code every step takes, setup's secret, the recovery codes, and
the login's answer, which is one of two shapes."""

from __future__ import annotations

from typing import Any

from flask import Response, jsonify
from marshmallow import Schema, fields, validate

from app.mfa.totp import CODE_PATTERN, RECOVERY_CODES
from app.sessions.schemas import TokenPairSchema
from app.web.schemas import TokenString

CODE_RULE = (
    "The 6-digit code the authenticator app shows now, or an unused recovery code"
    " (xxxx-xxxx-xxxx); spaces, hyphens and case do not matter."
)


def Code() -> fields.String:
    return fields.String(
        required=True,
        load_only=True,
        validate=[
            validate.Length(min=6, max=64),
            validate.Regexp(CODE_PATTERN, error="Enter 6 digits, or a recovery code."),
        ],
        metadata={"description": CODE_RULE, "example": "123456"},
    )


class CodeSchema(Schema):
    code = Code()


class SecondStepSchema(Schema):
    mfa_token = TokenString()
    code = Code()


class TotpSetupSchema(Schema):
    secret = fields.String(
        required=True, metadata={"description": "Base32, for typing into the app by hand"}
    )
    otpauth_uri = fields.String(
        required=True, metadata={"description": "RFC 6238: SHA-1, 6 digits, 30-second steps"}
    )
    qr_svg = fields.String(
        required=True, metadata={"description": "The otpauth URI as a QR code, inline SVG"}
    )


class RecoveryCodesSchema(Schema):
    recovery_codes = fields.List(
        fields.String(),
        required=True,
        validate=validate.Length(equal=RECOVERY_CODES),
        metadata={"description": "Single-use codes, shown this once; keep them safe"},
    )


class MfaStepSchema(Schema):
    """The login's answer for an account with two-factor on: no tokens yet."""

    mfa_required = fields.Boolean(required=True, metadata={"enum": [True]})
    mfa_token = fields.String(
        required=True, metadata={"description": "Send it with a code to POST /auth/login/mfa"}
    )
    expires_in = fields.Integer(
        required=True, metadata={"description": "mfa_token lifetime, seconds"}
    )


# What a way in answers: the token pair, or the two-factor step. Documented as both
# (apispec turns the schemas into references); `login_answer` dumps the one it is.
LOGIN_ANSWER = {"oneOf": [TokenPairSchema, MfaStepSchema]}


def login_answer(answer: dict[str, Any]) -> Response:
    schema = MfaStepSchema() if answer.get("mfa_required") else TokenPairSchema()
    return jsonify(schema.dump(answer))
