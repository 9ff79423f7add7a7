"""An account made by a provider: deletion, the data export, the cascade, and the limits
per address on the way in."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

import time_machine
from flask import Flask

from tests.support.account import delete_me, export_me, rows_of
from tests.support.http import PASSWORD, assert_problem, bearer, claims, login
from tests.support.mail import Mailbox
from tests.support.oidc import RETURN_TO, Browser, new_subject, provider_settings

PERSON = {"email_verified": True, "given_name": "Wes"}


def test_deletion_asks_a_passwordless_account_to_set_a_password_first(
    browser: Browser, oidc_app: Flask
) -> None:
    pair = browser.tokens(new_subject(), email="wes@example.com", **PERSON)
    problem = assert_problem(delete_me(browser.client, pair["access_token"], "anything"), 400)
    assert "no password" in problem["detail"]
    assert "/auth/password/forgot" in problem["detail"]
    assert browser.client.get("/auth/me", headers=bearer(pair["access_token"])).status_code == 200


def test_the_export_lists_the_identities_without_the_providers_ids(browser: Browser) -> None:
    sub = new_subject()
    pair = browser.tokens(sub, email="xan@example.com", **PERSON)
    export = export_me(browser.client, pair["access_token"]).get_json()
    [identity] = export["identities"]
    assert identity["provider"] == "mock"
    assert identity["email"] == "xan@example.com"
    assert sub not in str(export)


def test_deleting_the_account_deletes_its_identities(
    browser: Browser, oidc_app: Flask, mailbox: Mailbox
) -> None:
    browser.tokens(new_subject(), email="yul@example.com", **PERSON)
    browser.client.post("/auth/password/forgot", json={"email": "yul@example.com"})
    token = mailbox.last_token("yul@example.com")
    browser.client.post("/auth/password/reset", json={"token": token, "new_password": PASSWORD})
    pair = login(browser.client, "yul@example.com").get_json()
    user_id = int(claims(pair["access_token"])["sub"])
    assert rows_of(oidc_app, user_id)["oidc_identities"] == 1
    assert delete_me(browser.client, pair["access_token"]).status_code == 204
    assert all(
        count == 0
        for table, count in rows_of(oidc_app, user_id).items()
        if table.startswith("oidc_")
    )


def test_the_way_in_is_limited_per_address(
    app_factory: Callable[..., Flask], provider_issuer: str
) -> None:
    app = app_factory(
        RATELIMIT_ENABLED=True,
        OIDC_PROVIDERS={"mock": provider_settings(provider_issuer)},
        OIDC_RETURN_URLS=[RETURN_TO],
    )
    client = app.test_client()
    for path, call in [
        ("exchange", lambda: client.post("/auth/oidc/exchange", json={"code": "x"})),
        ("callback", lambda: client.get("/auth/oidc/mock/callback?state=x")),
        ("authorize", lambda: client.get("/auth/oidc/nope/authorize")),
    ]:
        statuses = [call().status_code for _ in range(21)]
        assert statuses[:20] == [statuses[0]] * 20 and statuses[0] in (400, 404), path
        assert statuses[20] == 429, path


def test_the_cleanup_deletes_expired_sign_ins_and_codes(browser: Browser, oidc_app: Flask) -> None:
    from app.periodic.cleanup import delete_expired_tokens

    browser.sign_in(new_subject(), email="abe@example.com", **PERSON)  # a code never used
    browser.authorize()  # a sign-in never finished
    with oidc_app.app_context():
        assert delete_expired_tokens()["oidc_codes"] == 0  # not expired yet
        later = dt.datetime.now(dt.UTC) + dt.timedelta(minutes=11)
        with time_machine.travel(later, tick=False):
            counts = delete_expired_tokens()
    assert (counts["oidc_sign_ins"], counts["oidc_codes"]) == (1, 1)
