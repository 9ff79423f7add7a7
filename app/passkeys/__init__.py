"""Passkeys (WebAuthn): a way in without a password that cannot be phished.

The `webauthn` library (py_webauthn) builds the options and verifies both ceremonies; this
package owns the challenge store (challenges.py), the credential table (models.py), the
ceremonies (ceremonies.py), managing one's passkeys (manage.py) and their routes.
"""
