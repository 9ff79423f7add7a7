"""Signing keys: the key pairs that sign access tokens, and the JWKS that publishes them.

`models` is the table, `service` the use cases of the `flask keys` commands (`cli`), `ring` each
process's cache of the keys (signing and verification), `routes` the JWKS endpoint.
"""
