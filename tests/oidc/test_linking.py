"""Linking a provider from a signed-in account, listing and unlinking the identities, and
the last way in; an account without a password gets one by forgot/reset."""

from __future__ import annotations

from typing import Any

from flask.testing import FlaskClient

from tests.support.http import PASSWORD, Accounts, assert_problem, bearer, claims, login
from tests.support.mail import Mailbox
from tests.support.oidc import Browser, fragment, new_subject

VERIFIED = {"email_verified": True}


def start_link(browser: Browser, access_token: str) -> str:
    response = browser.client.post(
        "/auth/oidc/mock/link",
        json={"return_to": "http://cinema.test/signed-in"},
        headers=bearer(access_token),
    )
    assert response.status_code == 200, response.get_json()
    assert "HttpOnly" in response.headers["Set-Cookie"]
    return str(response.get_json()["authorize_url"])


def link(browser: Browser, access_token: str, sub: str, **person: Any) -> dict[str, str]:
    if person:
        browser.set_person(sub, **person)
    back = browser.callback(browser.at_provider(start_link(browser, access_token), sub))
    assert back.status_code == 302
    return fragment(back.headers["Location"])


def identities(client: FlaskClient, access_token: str) -> list[dict[str, Any]]:
    response = client.get("/auth/identities", headers=bearer(access_token))
    assert response.status_code == 200
    return list(response.get_json()["items"])


def event_types(client: FlaskClient, access_token: str) -> list[str]:
    response = client.get("/auth/me/events", headers=bearer(access_token))
    return [item["type"] for item in response.get_json()["items"]]


def test_linking_from_the_account_signs_it_in_by_the_provider_after(
    browser: Browser, accounts: Accounts, mailbox: Mailbox
) -> None:
    pair = accounts.active_user("kim@example.com")
    sub = new_subject()
    # The provider's email may differ from the account's: linking is by the signed-in person.
    assert link(browser, pair["access_token"], sub, email="kim@work.example", **VERIFIED) == {
        "linked": "mock"
    }
    [identity] = identities(browser.client, pair["access_token"])
    assert identity["provider"] == "mock"
    assert identity["email"] == "kim@work.example"
    assert set(identity) == {"id", "provider", "email", "created_at", "last_used_at"}
    assert "identity_linked" in event_types(browser.client, pair["access_token"])
    assert "Mock account was linked" in mailbox.text(mailbox.to("kim@example.com")[-1])
    signed_in = browser.tokens(sub)
    assert claims(signed_in["access_token"])["sub"] == claims(pair["access_token"])["sub"]


def test_an_identity_linked_to_another_account_is_not_taken(
    browser: Browser, accounts: Accounts
) -> None:
    sub = new_subject()
    browser.tokens(sub, email="lou@example.com", **VERIFIED)
    pair = accounts.active_user("max@example.com")
    assert link(browser, pair["access_token"], sub) == {"error": "identity_in_use"}
    assert identities(browser.client, pair["access_token"]) == []


def test_unlinking_with_a_password_left(
    browser: Browser, accounts: Accounts, mailbox: Mailbox
) -> None:
    pair = accounts.active_user("ned@example.com")
    link(browser, pair["access_token"], new_subject(), email="ned@example.com", **VERIFIED)
    [identity] = identities(browser.client, pair["access_token"])
    response = browser.client.delete(
        f"/auth/identities/{identity['id']}", headers=bearer(pair["access_token"])
    )
    assert response.status_code == 204
    assert identities(browser.client, pair["access_token"]) == []
    assert "identity_unlinked" in event_types(browser.client, pair["access_token"])
    assert "Mock account was unlinked" in mailbox.text(mailbox.to("ned@example.com")[-1])


def test_the_last_way_in_cannot_be_unlinked_until_reset_gives_a_password(
    browser: Browser, mailbox: Mailbox
) -> None:
    pair = browser.tokens(new_subject(), email="oz@example.com", **VERIFIED)
    [identity] = identities(browser.client, pair["access_token"])
    unlink = f"/auth/identities/{identity['id']}"
    assert_problem(browser.client.delete(unlink, headers=bearer(pair["access_token"])), 409)
    assert len(identities(browser.client, pair["access_token"])) == 1
    # forgot/reset gives the account a password (which ends its logins, as a reset does).
    forgot = browser.client.post("/auth/password/forgot", json={"email": "oz@example.com"})
    assert forgot.status_code in (200, 202, 204)
    token = mailbox.last_token("oz@example.com")
    reset = browser.client.post(
        "/auth/password/reset", json={"token": token, "new_password": PASSWORD}
    )
    assert reset.status_code in (200, 204), reset.get_json()
    fresh = login(browser.client, "oz@example.com").get_json()
    response = browser.client.delete(unlink, headers=bearer(fresh["access_token"]))
    assert response.status_code == 204


def test_another_accounts_identity_is_404(browser: Browser, accounts: Accounts) -> None:
    browser.tokens(new_subject(), email="pam@example.com", **VERIFIED)
    other = accounts.active_user("quin@example.com")
    owner = login(browser.client, "pam@example.com")  # no password: 401, so read by id
    assert owner.status_code == 401
    for identity_id in (1, 2, 3, 999999):
        response = browser.client.delete(
            f"/auth/identities/{identity_id}", headers=bearer(other["access_token"])
        )
        assert_problem(response, 404)


def test_identities_need_a_caller(oidc_client: FlaskClient) -> None:
    assert_problem(oidc_client.get("/auth/identities"), 401)
