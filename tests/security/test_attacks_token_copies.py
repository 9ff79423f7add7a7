"""Issue 21, item 4: a non-canonical copy of an access token was a second token.

`token + "=="` answered 200 and took a second slot in the process's cache of verified tokens:
base64url decoders accept padding, and ignore the bits of the last character that no byte
uses, so one signature can be written several ways. Only the canonical, unpadded text is a
token now, wherever an access token is read: the guard of every authenticated endpoint and
logout. Played through the API, on SQLite and on PostgreSQL.
"""

from __future__ import annotations

import base64
import string

import pytest
from flask import Flask
from flask.testing import FlaskClient

from tests.support.http import Accounts, assert_401, logout, me

BASE64URL = string.ascii_uppercase + string.ascii_lowercase + string.digits + "-_"


def decoded(segment: str) -> bytes:
    return base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))


def copies(token: str) -> dict[str, str]:
    """Other spellings of the same token: the same header, claims and signature bytes."""
    signed, signature = token.rsplit(".", 1)
    # An Ed25519 signature is 64 bytes in 86 characters: the last one carries 4 unused bits.
    last = BASE64URL.index(signature[-1])
    unused_bit_set = f"{signed}.{signature[:-1]}{BASE64URL[last ^ 1]}"
    assert decoded(unused_bit_set.rsplit(".", 1)[1]) == decoded(signature)
    return {"padded": token + "==", "an unused bit set": unused_bit_set}


def verified_tokens(app: Flask) -> int:
    """How many tokens the process remembers as verified."""
    return len(app.extensions["verified_access_tokens"])


@pytest.mark.parametrize("copy", ["padded", "an unused bit set"])
def test_a_copy_of_an_access_token_is_401_and_takes_no_cache_slot(
    app: Flask, client: FlaskClient, accounts: Accounts, copy: str
) -> None:
    """The attack: GET /auth/me with the token plus "==" answered 200."""
    token = accounts.active_user("copier@example.com")["access_token"]
    assert me(client, token).status_code == 200
    assert verified_tokens(app) == 1
    for _ in range(3):  # once verified, a copy would be answered from the cache
        body = assert_401(me(client, copies(token)[copy]))
        assert body["detail"] == "The access token is not valid."
    assert verified_tokens(app) == 1
    assert me(client, token).status_code == 200


def test_logout_reads_a_copy_as_no_access_token(client: FlaskClient, accounts: Accounts) -> None:
    """Logout ends the refresh token's login and the login of the access token it is shown,
    when that is a token: a padded copy of another login's token is not one, so that login
    goes on, as with any text that is no token."""
    ending = accounts.active_user("two.devices@example.com")
    other = accounts.login("two.devices@example.com")
    padded = copies(other["access_token"])["padded"]
    assert logout(client, ending["refresh_token"], padded).status_code == 204
    assert_401(me(client, ending["access_token"]))
    assert me(client, other["access_token"]).status_code == 200
    # The canonical token, shown at logout, does end its login.
    again = accounts.login("two.devices@example.com")
    assert logout(client, again["refresh_token"], other["access_token"]).status_code == 204
    assert_401(me(client, other["access_token"]))
