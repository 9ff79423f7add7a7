"""The JWK Set body (RFC 7517): only the public members are declared, so only they are sent."""

from __future__ import annotations

from marshmallow import Schema, fields


class PublicJWKSchema(Schema):
    kty = fields.String(required=True, metadata={"example": "OKP"})
    crv = fields.String(required=True, metadata={"example": "Ed25519"})
    x = fields.String(required=True, metadata={"description": "The public key, base64url"})
    kid = fields.String(required=True, metadata={"description": "Its RFC 7638 thumbprint"})
    alg = fields.String(required=True, metadata={"example": "EdDSA"})
    use = fields.String(required=True, metadata={"example": "sig"})


class JWKSetSchema(Schema):
    keys = fields.List(fields.Nested(PublicJWKSchema), required=True)
