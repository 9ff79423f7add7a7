"""Signing in with a provider, against a real OpenID provider on a local port: the first
sign-in creates the account, the next ones sign the same account in, and the contract's
rules about emails hold."""

from __future__ import annotations

from urllib.parse import parse_qsl, urlsplit

from flask import Flask
from flask.testing import FlaskClient

from tests.support.http import Accounts, assert_problem, bearer, claims, login, me
from tests.support.mail import Mailbox
from tests.support.oidc import Browser, fragment, new_subject

VERIFIED = {"email_verified": True, "given_name": "Ada", "family_name": "Lovelace"}


def test_the_providers_are_listed_by_name(oidc_client: FlaskClient) -> None:
    response = oidc_client.get("/auth/oidc/providers")
    assert response.status_code == 200
    assert response.get_json() == {"items": [{"name": "mock", "display_name": "Mock"}]}


def test_a_first_sign_in_creates_an_active_account_without_a_password(
    browser: Browser, oidc_client: FlaskClient
) -> None:
    sub = new_subject()
    pair = browser.tokens(sub, email="ada@example.com", **VERIFIED)
    user = me(oidc_client, pair["access_token"]).get_json()
    assert user["email"] == "ada@example.com"
    assert user["profile"]["first_name"] == "Ada"
    assert user["profile"]["last_name"] == "Lovelace"
    # No password: the usual 401, as for a wrong one.
    assert_problem(login(oidc_client, "ada@example.com", "any password at all"), 401)


def test_the_next_sign_in_signs_the_same_account_in(browser: Browser) -> None:
    sub = new_subject()
    first = browser.tokens(sub, email="bea@example.com", **VERIFIED)
    # The provider may change the email it gives: the identity is (provider, sub).
    second = browser.tokens(sub, email="bea.new@example.com", **VERIFIED)
    assert claims(first["access_token"])["sub"] == claims(second["access_token"])["sub"]


def test_the_cookie_binding_the_browser_is_httponly_and_lax(oidc_client: FlaskClient) -> None:
    response = oidc_client.get("/auth/oidc/mock/authorize")
    cookie = response.headers["Set-Cookie"]
    assert "HttpOnly" in cookie
    assert "SameSite=Lax" in cookie
    assert "Path=/auth/oidc" in cookie


def test_an_unverified_email_signs_no_one_in(browser: Browser, accounts: Accounts) -> None:
    accounts.active_user("cy@example.com")
    back = browser.sign_in(new_subject(), email="cy@example.com", email_verified=False)
    assert back == {"error": "email_not_verified"}
    back = browser.sign_in(new_subject(), email="new@example.com")  # no email_verified
    assert back == {"error": "email_not_verified"}


def test_an_activated_account_is_never_linked_silently(
    browser: Browser, oidc_client: FlaskClient
) -> None:
    pair = browser.tokens(new_subject(), email="dee@example.com", **VERIFIED)
    other = browser.sign_in(new_subject(), email="dee@example.com", **VERIFIED)
    assert other == {"error": "account_exists"}
    assert me(browser.client, pair["access_token"]).status_code == 200


def test_a_password_account_of_that_email_gets_account_exists(
    browser: Browser, accounts: Accounts
) -> None:
    accounts.active_user("eve@example.com")
    back = browser.sign_in(new_subject(), email="eve@example.com", **VERIFIED)
    assert back == {"error": "account_exists"}
    assert accounts.login("eve@example.com")["access_token"]


def test_linking_by_verified_email_when_the_operator_says_so(
    app_factory: object, provider_issuer: str, mailbox: Mailbox
) -> None:
    from tests.support.oidc import RETURN_TO, provider_settings

    app = app_factory(  # type: ignore[operator]
        OIDC_PROVIDERS={"mock": provider_settings(provider_issuer)},
        OIDC_RETURN_URLS=[RETURN_TO],
        OIDC_LINK_VERIFIED_EMAIL=True,
    )
    client = app.test_client()
    accounts = Accounts(client, mailbox)
    password_pair = accounts.active_user("fay@example.com")
    pair = Browser(client, provider_issuer).tokens(
        new_subject(), email="fay@example.com", **VERIFIED
    )
    assert claims(pair["access_token"])["sub"] == claims(password_pair["access_token"])["sub"]


def test_a_never_activated_registration_is_replaced(
    browser: Browser, accounts: Accounts, oidc_client: FlaskClient
) -> None:
    accounts.register("gil@example.com")  # someone's pending password, never activated
    pair = browser.tokens(new_subject(), email="gil@example.com", **VERIFIED)
    assert me(oidc_client, pair["access_token"]).get_json()["email"] == "gil@example.com"
    # The pending password is gone with the registration.
    assert_problem(login(oidc_client, "gil@example.com"), 401)


def test_a_deactivated_account_cannot_sign_in_this_way(browser: Browser, oidc_app: Flask) -> None:
    from app.core.db import db
    from app.identity.users import find_user_by_email

    sub = new_subject()
    browser.tokens(sub, email="hal@example.com", **VERIFIED)
    with oidc_app.app_context():
        user = find_user_by_email("hal@example.com")
        assert user is not None
        user.deactivate()
        db.session.commit()
    back = browser.sign_in(sub)
    assert_problem(browser.exchange(back["code"]), 403)


def test_a_refusal_at_the_provider_goes_back_as_an_error(browser: Browser) -> None:
    authorize_url = browser.authorize()
    location = browser.at_provider(authorize_url, "", action="deny")
    # oidc-provider-mock leaves `state` out of its refusal, so nothing tells whose sign-in
    # it ends: the 400 of a state never issued.
    assert "state=" not in location
    assert_problem(browser.callback(location), 400)
    # A provider that follows RFC 6749 4.1.2.1 sends the state back: the front end is told.
    state = dict(parse_qsl(urlsplit(authorize_url).query))["state"]
    back = browser.callback(f"{location}&state={state}")
    assert fragment(back.headers["Location"]) == {"error": "provider_refused"}


def test_an_unknown_provider_is_404(oidc_client: FlaskClient) -> None:
    assert_problem(oidc_client.get("/auth/oidc/nope/authorize"), 404)


def test_a_provider_that_is_down_fails_its_own_sign_ins_only(
    app_factory: object, provider_issuer: str, accounts: Accounts
) -> None:
    from tests.support.oidc import RETURN_TO, provider_settings
    from tests.support.services import free_port

    app = app_factory(  # type: ignore[operator]
        OIDC_PROVIDERS={
            "down": provider_settings(f"http://127.0.0.1:{free_port()}"),
            "mock": provider_settings(provider_issuer),
        },
        OIDC_RETURN_URLS=[RETURN_TO],
    )
    client = app.test_client()
    problem = assert_problem(client.get("/auth/oidc/down/authorize"), 503)
    assert "cannot be reached" in problem["detail"]
    assert client.get("/health/ready").status_code == 200
    assert Browser(client, provider_issuer).sign_in(
        new_subject(), email="ivy@example.com", email_verified=True
    )["code"]


def test_the_exchange_answers_the_token_pair_with_the_login_shape(browser: Browser) -> None:
    pair = browser.tokens(new_subject(), email="jo@example.com", **VERIFIED)
    assert set(pair) == {"access_token", "refresh_token", "token_type", "expires_in"}
    assert me(browser.client, pair["access_token"]).status_code == 200
    assert bearer(pair["access_token"])
