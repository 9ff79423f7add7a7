"""No secret of a social sign-in reaches a log line or the database in a usable form: the
state, the provider's code, the one-time code, the tokens."""

from __future__ import annotations

import logging
from urllib.parse import parse_qsl, urlsplit

import pytest
from flask import Flask

from app.core.log import JSONFormatter
from tests.support.apps import service_log_records, stored_values
from tests.support.oidc import Browser, fragment, new_subject


def test_the_sign_in_logs_and_stores_no_usable_secret(
    browser: Browser, oidc_app: Flask, caplog: pytest.LogCaptureFixture
) -> None:
    sub = new_subject()
    browser.set_person(sub, email="zed@example.com", email_verified=True)
    with caplog.at_level(logging.DEBUG):
        authorize_url = browser.authorize()
        location = browser.at_provider(authorize_url, sub)
        back = fragment(browser.callback(location).headers["Location"])
        pair = browser.exchange(back["code"]).get_json()
    sent = dict(parse_qsl(urlsplit(authorize_url).query))
    returned = dict(parse_qsl(urlsplit(location).query))
    secrets = [
        sent["state"],
        returned["code"],
        back["code"],
        pair["access_token"],
        pair["refresh_token"],
    ]
    formatter = JSONFormatter()
    # The browser's (httpx) and the provider's (werkzeug) lines are not the service's.
    ours = [
        record
        for record in service_log_records(caplog.records)
        if not record.name.startswith(("httpx", "httpcore", "werkzeug"))
    ]
    lines = [formatter.format(record) for record in ours]
    assert any("oidc_sign_in_code_issued" in line for line in lines)
    for secret in secrets:
        assert [line for line in lines if secret in line] == [], secret
    stored = stored_values(oidc_app)
    for secret in (sent["state"], back["code"], pair["refresh_token"]):
        assert secret not in stored
