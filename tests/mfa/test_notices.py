"""The notices two-factor sends: one for each change of the factor, each with an HTML part
and a plain-text part that say the same, in words a person reads (no API talk)."""

from __future__ import annotations

import re
from email.message import EmailMessage

from flask import Flask
from flask.testing import FlaskClient

from tests.support.http import Accounts, bearer
from tests.support.mail import Mailbox
from tests.support.mfa import enrol, mfa_token_of, renew_codes, second_step, step_clock, turn_off

EMAIL, BOSS = "ada@example.com", "boss@example.com"
API_TALK = re.compile(r"\b(POST|GET|PUT|PATCH|DELETE)\b|endpoint|token|mfa")


def every_notice(app: Flask, client: FlaskClient, accounts: Accounts, mailbox: Mailbox) -> list:
    boss = accounts.active_user(BOSS)
    accounts.set_group(app, BOSS, "ADMIN")
    pair = accounts.active_user(EMAIL)
    with step_clock() as clock:
        authenticator, codes = enrol(client, pair["access_token"], clock)
        recovered = second_step(client, mfa_token_of(client, EMAIL), codes[0]).json
        assert (
            renew_codes(client, recovered["access_token"], authenticator.next_code()).status_code
            == 200
        )
        assert (
            turn_off(client, recovered["access_token"], authenticator.next_code()).status_code
            == 204
        )
        enrol(client, recovered["access_token"], clock)
        ada_id = client.get("/auth/me", headers=bearer(recovered["access_token"])).json["id"]
        reset = client.post(
            f"/admin/users/{ada_id}/mfa/reset", headers=bearer(boss["access_token"])
        )
        assert reset.status_code == 200
    notices = mailbox.to(EMAIL)[1:]  # after the activation link
    assert [n["Subject"] for n in notices] == [
        "Two-factor sign-in is on for your cinema account",
        "A recovery code was used to sign in to your cinema account",
        "New recovery codes for your cinema account",
        "Two-factor sign-in is off for your cinema account",
        "Two-factor sign-in is on for your cinema account",
        "An administrator turned off two-factor sign-in for your account",
    ]
    return notices


def visible(html: str) -> str:
    return " ".join(re.sub(r"<head>.*?</head>|<[^>]+>", " ", html, flags=re.S).split())


def parts(message: EmailMessage) -> tuple[str, str]:
    plain = message.get_body(preferencelist=("plain",))
    html = message.get_body(preferencelist=("html",))
    assert plain is not None and html is not None
    return str(plain.get_content()), str(html.get_content())


def test_each_notice_says_the_same_in_text_and_html_and_in_plain_words(
    app: Flask, client: FlaskClient, accounts: Accounts, mailbox: Mailbox
) -> None:
    for notice in every_notice(app, client, accounts, mailbox):
        text, html = parts(notice)
        shown = visible(html)
        paragraphs = text.replace("\r\n", "\n").split("\n\n")
        for paragraph in filter(None, (" ".join(p.split()) for p in paragraphs)):
            assert paragraph in shown, (notice["Subject"], paragraph)
        words = re.sub(r"https?://\S+", "", text)
        assert not API_TALK.search(words), (notice["Subject"], words)
        assert "http://cinema.test/auth/password/reset" in text
