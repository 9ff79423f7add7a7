"""What a person reads, in an email or on a link page, is plain language; every email has
an HTML part and a plain-text part that say the same. (The pages in a real browser:
tests/signup/test_pages_browser.py.)"""

from __future__ import annotations

import re
from email.message import EmailMessage
from html.parser import HTMLParser
from urllib.parse import urlsplit

import pytest
from flask.testing import FlaskClient

from tests.support.http import PASSWORD, Accounts, bearer
from tests.support.mail import Mailbox

# Words that belong to the API and not to a person: methods, endpoint paths, jargon.
API_TALK = re.compile(r"\b(POST|GET|PUT|PATCH|DELETE)\b|/auth/\w+/\w+ |endpoint|token|sign-in page")


class VisibleText(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.parts: list[str] = []
        self.links: list[str] = []
        self._hidden = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in {"head", "script", "style"}:
            self._hidden += 1
        if tag == "a":
            self.links.append(str(dict(attrs).get("href")))

    def handle_endtag(self, tag: str) -> None:
        if tag in {"head", "script", "style"}:
            self._hidden -= 1

    def handle_data(self, data: str) -> None:
        if not self._hidden:
            self.parts.append(data)

    def text(self) -> str:
        return " ".join(" ".join(self.parts).split())


def html_text(html: str) -> VisibleText:
    parser = VisibleText()
    parser.feed(html)
    return parser


def parts(message: EmailMessage) -> tuple[str, str]:
    plain = message.get_body(preferencelist=("plain",))
    html = message.get_body(preferencelist=("html",))
    assert plain is not None and html is not None
    # Alternatives of one content (Flask-Mail wraps them in multipart/mixed for attachments).
    alternative = [p for p in message.walk() if p.get_content_type() == "multipart/alternative"]
    assert [p.get_content_type() for p in alternative[0].iter_parts()] == [  # type: ignore[attr-defined]
        "text/plain",
        "text/html",
    ]
    return str(plain.get_content()), str(html.get_content())


def every_email(client: FlaskClient, accounts: Accounts, mailbox: Mailbox) -> list[EmailMessage]:
    """One of each: activation, resend, reset, password changed, the email change's link
    (to the new address) and its notice (to the current one)."""
    accounts.register("reader@example.com")
    client.post("/auth/activate/resend", json={"email": "reader@example.com"})
    accounts.activate("reader@example.com")
    client.post("/auth/password/forgot", json={"email": "reader@example.com"})
    pair = accounts.login("reader@example.com")
    changed = client.post(
        "/auth/password/change",
        json={"old_password": PASSWORD, "new_password": "marble lantern exquisite harbour"},
        headers=bearer(pair["access_token"]),
    )
    assert changed.status_code == 204
    pair = accounts.login("reader@example.com", "marble lantern exquisite harbour")
    moving = client.post(
        "/auth/email/change",
        json={
            "new_email": "reader.new@example.com",
            "password": "marble lantern exquisite harbour",
        },
        headers=bearer(pair["access_token"]),
    )
    assert moving.status_code == 202
    messages = mailbox.to("reader@example.com") + mailbox.to("reader.new@example.com")
    assert len(messages) == 6
    return messages


def test_every_email_has_html_and_text_parts_with_the_same_content(
    client: FlaskClient, accounts: Accounts, mailbox: Mailbox
) -> None:
    for message in every_email(client, accounts, mailbox):
        text, html = parts(message)
        assert html.lstrip().lower().startswith("<!doctype html>")
        assert '<html lang="en">' in html and '<meta charset="utf-8">' in html
        assert re.search(r"<title>\S[^<]*</title>", html)
        visible = html_text(html)
        paragraphs = text.replace("\r\n", "\n").split("\n\n")
        for paragraph in filter(None, (" ".join(p.split()) for p in paragraphs)):
            assert paragraph in visible.text(), (message["Subject"], paragraph)
        for link in re.findall(r"https?://\S+", text):
            assert link in visible.links, (message["Subject"], link)


def test_no_email_talks_api_to_a_person(
    client: FlaskClient, accounts: Accounts, mailbox: Mailbox
) -> None:
    for message in every_email(client, accounts, mailbox):
        text, html = parts(message)
        for words in (re.sub(r"https?://\S+", "", text), html_text(html).text()):
            words = re.sub(r"https?://\S+", "", words)
            assert not API_TALK.search(words), (message["Subject"], words)


def test_every_link_in_an_email_opens_a_page_without_an_error(
    client: FlaskClient, accounts: Accounts, mailbox: Mailbox
) -> None:
    # The "password changed" notice links to the reset page without a token, to ask for one:
    # it showed "This link is incomplete" in red to a person told to act at once.
    for message in every_email(client, accounts, mailbox):
        text, _html = parts(message)
        for link in re.findall(r"https?://\S+", text):
            url = urlsplit(link)
            response = client.get(f"{url.path}?{url.query}")
            assert response.status_code == 200, (message["Subject"], link)
            page = html_text(response.get_data(as_text=True)).text()
            assert "incomplete" not in page and "error" not in page.lower(), (link, page)


def script_strings(page: str) -> list[str]:
    """The sentences the page's script may show: its string literals."""
    scripts = re.findall(r"<script[^>]*>(.*?)</script>", page, flags=re.S)
    return [s for script in scripts for s in re.findall(r'"([^"\n]{12,})"', script)]


@pytest.mark.parametrize(
    "path", ["/auth/activate?token=abc", "/auth/activate", "/auth/password/reset?token=abc"]
)
def test_the_link_pages_talk_to_people(client: FlaskClient, path: str) -> None:
    page = client.get(path).get_data(as_text=True)
    readable = [html_text(page).text(), *script_strings(page)]
    for words in readable:
        assert not API_TALK.search(words), words
    assert "Send me a new" in page  # the way to a new link is on the page itself
