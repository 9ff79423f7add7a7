"""Attacks on the way to the provider and back, against the real provider: the state
(missing, reused, from another browser), a code issued to another client, `return_to` to
anywhere else, and the one-time sign-in code replayed or late."""

from __future__ import annotations

import datetime as dt
from urllib.parse import parse_qsl, urlencode, urlsplit

import pytest
import time_machine
from flask import Flask
from flask.testing import FlaskClient

from app.core.db import db
from app.oidc.models import PendingSignIn
from tests.support.http import assert_problem
from tests.support.oidc import Browser, fragment, new_subject

PERSON = {"email_verified": True}


def test_a_callback_without_state_is_400(browser: Browser) -> None:
    assert_problem(browser.client.get("/auth/oidc/mock/callback?code=abc"), 400)


def test_a_state_works_once(browser: Browser) -> None:
    sub = new_subject()
    browser.set_person(sub, email="rae@example.com", **PERSON)
    location = browser.at_provider(browser.authorize(), sub)
    assert "code" in fragment(browser.callback(location).headers["Location"])
    assert_problem(browser.callback(location), 400)  # the same redirect, replayed


def test_a_state_from_another_browser_signs_no_one_in(
    browser: Browser, oidc_app: Flask, provider_issuer: str
) -> None:
    """Login CSRF: the attacker starts a sign-in in their browser, signs in at the provider
    as themselves, and has the victim's browser follow the redirect back."""
    sub = new_subject()
    browser.set_person(sub, email="attacker@example.com", **PERSON)
    location = browser.at_provider(browser.authorize(), sub)
    victim = Browser(oidc_app.test_client(), provider_issuer)
    back = victim.callback(location)
    assert fragment(back.headers["Location"]) == {"error": "state_mismatch"}
    # Spent by the attempt: the attacker's own browser cannot use it afterwards either.
    assert_problem(browser.callback(location), 400)


def test_a_code_issued_to_another_client_is_refused(browser: Browser) -> None:
    """A code the provider gave another application (an attacker's), injected into our
    callback with the victim's own state: the provider will not give us tokens for it."""
    sub = new_subject()
    browser.set_person(sub, email="sam@example.com", **PERSON)
    ours = urlsplit(browser.authorize())
    params = dict(parse_qsl(ours.query))
    theirs = {**params, "client_id": "an-attackers-client"}
    location = browser.at_provider(
        f"{ours.scheme}://{ours.netloc}{ours.path}?{urlencode(theirs)}", sub
    )
    back = browser.callback(location)
    assert fragment(back.headers["Location"]) == {"error": "provider_refused"}


@pytest.mark.parametrize(
    "return_to",
    [
        "https://evil.example/signed-in",
        "//evil.example/signed-in",
        "\\\\evil.example/signed-in",
        "/\\evil.example",
        "http://cinema.test@evil.example/signed-in",
        "http://cinema.test/signed-in@evil.example",
        "https://cinema.test/signed-in",
        "javascript:alert(1)//http://cinema.test/signed-in",
        "http://cinema.test/signed-in/../../evil",
        "http://cinema.test/signed-in?next=https://evil.example",
        "http://cinema.test.evil.example/signed-in",
    ],
)
def test_return_to_only_from_the_allow_list(
    browser: Browser, oidc_app: Flask, return_to: str
) -> None:
    response = browser.client.get(
        "/auth/oidc/mock/authorize", query_string={"return_to": return_to}
    )
    assert_problem(response, 400)
    assert "Set-Cookie" not in response.headers
    with oidc_app.app_context():
        assert db.session.query(PendingSignIn).count() == 0


def test_the_one_time_code_works_once(browser: Browser) -> None:
    back = browser.sign_in(new_subject(), email="tia@example.com", **PERSON)
    assert browser.exchange(back["code"]).status_code == 200
    assert_problem(browser.exchange(back["code"]), 400)


def test_the_one_time_code_expires_after_60_seconds(browser: Browser) -> None:
    back = browser.sign_in(new_subject(), email="uma@example.com", **PERSON)
    with time_machine.travel(dt.datetime.now(dt.UTC) + dt.timedelta(seconds=61), tick=False):
        assert_problem(browser.exchange(back["code"]), 400)


def test_a_code_never_issued_is_400(oidc_client: FlaskClient) -> None:
    assert_problem(oidc_client.post("/auth/oidc/exchange", json={"code": "made-up"}), 400)


def test_a_sign_in_left_for_more_than_10_minutes_is_over(browser: Browser) -> None:
    sub = new_subject()
    browser.set_person(sub, email="val@example.com", **PERSON)
    location = browser.at_provider(browser.authorize(), sub)
    with time_machine.travel(dt.datetime.now(dt.UTC) + dt.timedelta(minutes=11), tick=False):
        back = browser.callback(location)
    assert fragment(back.headers["Location"]) == {"error": "sign_in_expired"}
