"""The last way in, across kinds (checklist item 35): an account a provider created has no
password, so its linked identity and its passkeys are all it has; one of them must stay."""

from __future__ import annotations

from flask.testing import FlaskClient

from tests.passkeys.authenticator import Authenticator
from tests.passkeys.flows import add_passkey, sign_in
from tests.support.http import assert_problem, bearer, me
from tests.support.oidc import Browser, new_subject

VERIFIED = {"email_verified": True, "given_name": "Ada", "family_name": "Lovelace"}


def identities(client: FlaskClient, token: str) -> list[dict[str, object]]:
    response = client.get("/auth/identities", headers=bearer(token))
    assert response.status_code == 200
    return response.json["items"]  # type: ignore[no-any-return]


def test_a_passwordless_account_keeps_its_last_way_in(
    browser: Browser, oidc_client: FlaskClient
) -> None:
    token = browser.tokens(new_subject(), email="nopass@example.com", **VERIFIED)["access_token"]
    phone = Authenticator()
    passkey = add_passkey(oidc_client, token, phone)
    (identity,) = identities(oidc_client, token)

    # The passkey remains: the identity may go, and the passkey still signs in.
    unlink = oidc_client.delete(f"/auth/identities/{identity['id']}", headers=bearer(token))
    assert unlink.status_code == 204
    signed_in = sign_in(oidc_client, phone)
    assert signed_in.status_code == 200, signed_in.json
    token = signed_in.json["access_token"]
    assert me(oidc_client, token).status_code == 200

    # Now the passkey is the last way in: removing it would lock the owner out for good.
    last = oidc_client.delete(f"/auth/passkeys/{passkey['id']}", headers=bearer(token))
    assert_problem(last, 409)
    assert sign_in(oidc_client, phone).status_code == 200


def test_the_last_linked_identity_of_a_passwordless_account_stays(
    browser: Browser, oidc_client: FlaskClient
) -> None:
    token = browser.tokens(new_subject(), email="only@example.com", **VERIFIED)["access_token"]
    (identity,) = identities(oidc_client, token)
    last = oidc_client.delete(f"/auth/identities/{identity['id']}", headers=bearer(token))
    assert_problem(last, 409)
    assert len(identities(oidc_client, token)) == 1
