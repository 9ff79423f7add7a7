"""Managing one's passkeys: list, rename, delete (with its notice and event), the last way
in, the data export and the account deletion."""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from flask import Flask
from flask.testing import FlaskClient

from app.core.db import db
from app.core.errors import Conflict
from app.identity.models import User
from app.passkeys.manage import delete_passkey
from tests.passkeys.authenticator import Authenticator
from tests.passkeys.flows import add_passkey, sign_in
from tests.support.account import delete_me, export_me, rows_of, scalars_in, stored_secrets
from tests.support.http import Accounts, assert_401, assert_problem, bearer, me
from tests.support.mail import Mailbox

EMAIL = "viewer@example.com"
OTHER = "other@example.com"


def passkeys(client: FlaskClient, token: str) -> list[dict[str, object]]:
    response = client.get("/auth/passkeys", headers=bearer(token))
    assert response.status_code == 200
    return response.json["items"]  # type: ignore[no-any-return]


def test_list_and_rename(client: FlaskClient, accounts: Accounts) -> None:
    token = accounts.active_user(EMAIL)["access_token"]
    phone = add_passkey(client, token, Authenticator(), name="Phone")
    laptop = add_passkey(client, token, Authenticator(), name="Laptop")
    assert [p["name"] for p in passkeys(client, token)] == ["Phone", "Laptop"]

    response = client.patch(
        f"/auth/passkeys/{phone['id']}", json={"name": "Old phone"}, headers=bearer(token)
    )
    assert response.status_code == 200
    assert response.json == {**phone, "name": "Old phone"}
    assert [p["name"] for p in passkeys(client, token)] == ["Old phone", "Laptop"]
    for bad in ({"name": ""}, {"name": "x" * 65}, {}, {"name": "a\x00b"}):
        answer = client.patch(f"/auth/passkeys/{laptop['id']}", json=bad, headers=bearer(token))
        assert_problem(answer, 422)
    assert [p["name"] for p in passkeys(client, token)] == ["Old phone", "Laptop"]


def test_another_users_passkey_is_not_found(client: FlaskClient, accounts: Accounts) -> None:
    mine = add_passkey(client, accounts.active_user(EMAIL)["access_token"], Authenticator())
    theirs = accounts.active_user(OTHER)["access_token"]
    url = f"/auth/passkeys/{mine['id']}"
    assert_problem(client.patch(url, json={"name": "Mine now"}, headers=bearer(theirs)), 404)
    assert_problem(client.delete(url, headers=bearer(theirs)), 404)
    assert_problem(client.delete("/auth/passkeys/999999", headers=bearer(theirs)), 404)
    assert passkeys(client, theirs) == []


def test_delete_tells_the_owner_and_the_passkey_signs_in_no_more(
    client: FlaskClient, accounts: Accounts, mailbox: Mailbox
) -> None:
    token = accounts.active_user(EMAIL)["access_token"]
    phone = Authenticator()
    passkey = add_passkey(client, token, phone, name="Lost phone")

    response = client.delete(f"/auth/passkeys/{passkey['id']}", headers=bearer(token))

    assert response.status_code == 204
    assert passkeys(client, token) == []
    assert '"Lost phone" was removed' in mailbox.text(mailbox.to(EMAIL)[-1])
    types = [e["type"] for e in client.get("/auth/me/events", headers=bearer(token)).json["items"]]
    assert types[0] == "passkey_removed"
    assert_401(sign_in(client, phone))


def test_the_last_way_in_cannot_be_deleted(
    app: Flask, client: FlaskClient, accounts: Accounts
) -> None:
    """Every account has a password today, so the rule is met through the API; an account
    without one (social sign-in will make them) keeps its only passkey."""
    token = accounts.active_user(EMAIL)["access_token"]
    passkey = add_passkey(client, token, Authenticator())
    with app.app_context():
        user = db.session.scalar(sa.select(User))
        assert user is not None
        with db.session.no_autoflush:
            user.password_hash = None  # type: ignore[assignment]  # never written
            with pytest.raises(Conflict, match="last way to sign in"):
                delete_passkey(user, passkey["id"])
        db.session.rollback()
    assert len(passkeys(client, token)) == 1


def test_the_export_lists_the_passkeys_and_nothing_secret(
    app: Flask, client: FlaskClient, accounts: Accounts
) -> None:
    token = accounts.active_user(EMAIL)["access_token"]
    phone = Authenticator()
    passkey = add_passkey(client, token, phone, name="Phone")
    exported = export_me(client, token).json
    assert exported["passkeys"] == [passkey]
    with app.app_context():
        row = db.session.execute(sa.text("SELECT credential_id, public_key FROM passkeys")).one()
    values = scalars_in(exported)
    assert not stored_secrets(app) & set(values)
    assert all(bytes(row.public_key).hex() not in value for value in values)


def test_deleting_the_account_deletes_its_passkeys(
    app: Flask, client: FlaskClient, accounts: Accounts
) -> None:
    token = accounts.active_user(EMAIL)["access_token"]
    phone = Authenticator()
    add_passkey(client, token, phone)
    client.post("/auth/passkeys/register/options", headers=bearer(token))  # a pending challenge
    user_id = me(client, token).json["id"]
    assert rows_of(app, user_id)["passkeys"] == rows_of(app, user_id)["webauthn_challenges"] == 1
    assert delete_me(client, token).status_code == 204
    counts = rows_of(app, user_id)
    assert counts["passkeys"] == counts["webauthn_challenges"] == 0
    assert_401(sign_in(client, phone))
