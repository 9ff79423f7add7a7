"""The link pages and /docs in a real browser: Playwright driving Debian's chromium (never a
downloaded browser) against the app served over real HTTP, with real emails.

Every page is checked for console errors and Content-Security-Policy violations, and a
screenshot of each state is saved under test-artifacts/screenshots/ (not committed).
Without chromium these tests are skipped, saying so; TEST_REQUIRE_SERVICES=1 fails them.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from werkzeug.serving import make_server

from tests.support.http import PASSWORD, Accounts, bearer
from tests.support.mail import Mailbox
from tests.support.services import free_port

SCREENSHOTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "screenshots"
STRONG_PASSWORD = "marble lantern exquisite harbour"
# Reported by Chromium itself, as console errors, whenever a fetch gets a 4xx: the pages
# expect those answers (a spent link, a weak password) and turn them into sentences.
EXPECTED_HTTP_ERROR = re.compile(
    r"Failed to load resource: the server responded with a status of 4\d\d"
)
REPORT_CSP_VIOLATIONS = """
document.addEventListener("securitypolicyviolation", (event) => {
  console.error(`CSP violation: ${event.violatedDirective} blocked ${event.blockedURI}`);
});
"""


@pytest.fixture
def browser(chromium: Any) -> Any:
    """The run's one chromium (tests/fixtures_browser.py)."""
    return chromium


@dataclass
class LiveServer:
    app: Flask
    url: str
    mailbox: Mailbox

    @property
    def client(self) -> FlaskClient:
        return self.app.test_client()

    def accounts(self) -> Accounts:
        return Accounts(self.client, self.mailbox)

    def link(self, address: str) -> str:
        link = self.mailbox.last_link(address)
        assert link.startswith(self.url + "/"), link  # the email points at this server
        return link


@pytest.fixture
def live_server(app_factory: Callable[..., Flask], mailbox: Mailbox) -> Iterator[LiveServer]:
    """The app on a real HTTP server in a thread, its emails going to the SMTP fixture."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    app = app_factory(PUBLIC_BASE_URL=url)
    server = make_server("127.0.0.1", port, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield LiveServer(app, url, mailbox)
    server.shutdown()
    thread.join(timeout=10)


@dataclass
class Tab:
    """A browser page that records console errors, CSP violations and outside requests."""

    page: Any
    name: str
    errors: list[str] = field(default_factory=list)
    outside_requests: list[str] = field(default_factory=list)

    def shot(self, state: str) -> None:
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        self.page.screenshot(path=str(SCREENSHOTS / f"{self.name}-{state}.png"), full_page=True)

    def message(self) -> Any:
        return self.page.locator("#message")

    def assert_clean(self) -> None:
        assert self.errors == []
        assert self.outside_requests == []


@pytest.fixture
def tab(browser: Any, live_server: LiveServer, request: pytest.FixtureRequest) -> Iterator[Tab]:
    """A fresh browser context with no network but this server: everything else is
    refused and recorded, so a page that needs the internet fails here."""
    from playwright.sync_api import expect

    expect.set_options(timeout=15_000)
    context = browser.new_context()
    name = re.sub(r"[^A-Za-z0-9_-]+", "-", request.node.name).strip("-")
    tab = Tab(context.new_page(), name)

    def route(route: Any) -> None:
        if route.request.url.startswith(live_server.url + "/"):
            route.continue_()
        else:
            tab.outside_requests.append(route.request.url)
            route.abort()

    context.route("**/*", route)
    context.add_init_script(REPORT_CSP_VIOLATIONS)
    tab.page.on(
        "console",
        lambda message: (
            message.type == "error"
            and not EXPECTED_HTTP_ERROR.search(message.text)
            and tab.errors.append(message.text)
        ),
    )
    tab.page.on("pageerror", lambda error: tab.errors.append(f"uncaught: {error}"))
    yield tab
    context.close()


def expect_text(locator: Any, pattern: str) -> None:
    from playwright.sync_api import expect

    expect(locator).to_contain_text(re.compile(pattern))


def test_the_activation_link_from_the_email_activates_the_account(
    live_server: LiveServer, tab: Tab
) -> None:
    accounts = live_server.accounts()
    accounts.register("viewer@example.com")
    tab.page.goto(live_server.link("viewer@example.com"))
    tab.shot("1-opened")
    tab.page.get_by_role("button", name="Activate my account").click()
    expect_text(tab.message(), "Your account is active")
    tab.shot("2-activated")
    accounts.login("viewer@example.com")
    tab.assert_clean()


def test_a_spent_activation_link_offers_a_new_one_that_works(
    live_server: LiveServer, tab: Tab
) -> None:
    accounts = live_server.accounts()
    accounts.register("late@example.com")
    spent = live_server.link("late@example.com")
    accounts.client.post("/auth/activate/resend", json={"email": "late@example.com"})
    assert live_server.link("late@example.com") != spent  # the first link no longer works

    tab.page.goto(spent)
    tab.page.get_by_role("button", name="Activate my account").click()
    expect_text(tab.message(), "This link is invalid, expired or already used.")
    tab.shot("1-link-spent")
    live_server.mailbox.clear()
    tab.page.get_by_label("Email address").fill("late@example.com")
    tab.page.get_by_role("button", name="Send me a new link").click()
    expect_text(tab.message(), "a new link is on its way")
    tab.shot("2-new-link-sent")

    tab.page.goto(live_server.link("late@example.com"))  # from the new, real email
    tab.page.get_by_role("button", name="Activate my account").click()
    expect_text(tab.message(), "Your account is active")
    tab.shot("3-activated")
    accounts.login("late@example.com")
    tab.assert_clean()


def test_an_activation_page_without_its_token_offers_a_new_link(
    live_server: LiveServer, tab: Tab
) -> None:
    tab.page.goto(f"{live_server.url}/auth/activate")
    expect_text(tab.page.locator("body"), "This link is incomplete")
    tab.page.get_by_label("Email address").fill("not an address")
    tab.page.get_by_role("button", name="Send me a new link").click()
    # The browser's own check refuses it before anything is sent.
    assert tab.page.locator("input[name=email]:invalid").count() == 1
    tab.shot("1-incomplete-link")
    tab.assert_clean()


def test_the_password_is_reset_through_the_page_weak_then_strong(
    live_server: LiveServer, tab: Tab
) -> None:
    accounts = live_server.accounts()
    accounts.active_user("forgetful@example.com")
    accounts.client.post("/auth/password/forgot", json={"email": "forgetful@example.com"})
    tab.page.goto(live_server.link("forgetful@example.com"))
    tab.shot("1-opened")

    def submit(password: str) -> None:
        tab.page.get_by_label("New password", exact=True).fill(password)
        tab.page.get_by_label("New password, again").fill(password)
        tab.page.get_by_role("button", name="Set the new password").click()

    submit("password1")
    expect_text(tab.message(), "too easy to guess")
    tab.shot("2-weak-password")
    submit(STRONG_PASSWORD)
    expect_text(tab.message(), "Your password is changed")
    tab.shot("3-changed")
    accounts.login("forgetful@example.com", STRONG_PASSWORD)
    old = accounts.client.post(
        "/auth/login", json={"email": "forgetful@example.com", "password": PASSWORD}
    )
    assert old.status_code == 401
    tab.assert_clean()


def test_a_spent_reset_link_offers_a_new_one_that_works(live_server: LiveServer, tab: Tab) -> None:
    accounts = live_server.accounts()
    accounts.active_user("twice@example.com")
    accounts.client.post("/auth/password/forgot", json={"email": "twice@example.com"})
    spent = live_server.link("twice@example.com")
    token = spent.split("token=", 1)[1]
    used = accounts.client.post(
        "/auth/password/reset", json={"token": token, "new_password": STRONG_PASSWORD}
    )
    assert used.status_code == 204

    tab.page.goto(spent)
    tab.page.get_by_label("New password", exact=True).fill("another fine pass phrase")
    tab.page.get_by_label("New password, again").fill("another fine pass phrase")
    tab.page.get_by_role("button", name="Set the new password").click()
    expect_text(tab.message(), "This link is invalid, expired or already used.")
    tab.shot("1-link-spent")
    live_server.mailbox.clear()
    tab.page.get_by_label("Email address").fill("twice@example.com")
    tab.page.get_by_role("button", name="Send me a new reset link").click()
    expect_text(tab.message(), "a new reset link is on its way")
    tab.shot("2-new-link-sent")

    tab.page.goto(live_server.link("twice@example.com"))
    tab.page.get_by_label("New password", exact=True).fill("another fine pass phrase")
    tab.page.get_by_label("New password, again").fill("another fine pass phrase")
    tab.page.get_by_role("button", name="Set the new password").click()
    expect_text(tab.message(), "Your password is changed")
    tab.shot("3-changed")
    accounts.login("twice@example.com", "another fine pass phrase")
    tab.assert_clean()


def test_the_email_change_link_changes_the_address_once(live_server: LiveServer, tab: Tab) -> None:
    accounts = live_server.accounts()
    pair = accounts.active_user("mover@example.com")
    asked = accounts.client.post(
        "/auth/email/change",
        json={"new_email": "moved@example.com", "password": PASSWORD},
        headers=bearer(pair["access_token"]),
    )
    assert asked.status_code == 202
    link = live_server.link("moved@example.com")

    tab.page.goto(link)
    tab.shot("1-opened")
    tab.page.get_by_role("button", name="Confirm my new email address").click()
    expect_text(tab.message(), "Your email address is now moved@example.com")
    tab.shot("2-confirmed")
    accounts.login("moved@example.com")

    tab.page.goto(link)  # the same link again
    tab.page.get_by_role("button", name="Confirm my new email address").click()
    expect_text(tab.message(), "expired or has already been used")
    tab.shot("3-link-spent")
    tab.assert_clean()


def test_docs_render_with_no_network(live_server: LiveServer, tab: Tab) -> None:
    tab.page.goto(f"{live_server.url}/docs/")  # the slash redirects to /docs
    assert tab.page.url == f"{live_server.url}/docs"
    expect_text(tab.page.locator(".swagger-ui .info .title"), "Cinema accounts API")
    operations = tab.page.locator(".opblock-summary-path")
    expect_text(operations.filter(has_text="/auth/register").first, "/auth/register")
    tab.shot("1-rendered")
    tab.assert_clean()
