"""Words a user or an operator reads, checked against what the service does, one section
per place they are read."""

from __future__ import annotations

import re
import subprocess
import sys
from datetime import timedelta

import time_machine
from flask import Flask
from flask.testing import FlaskClient

from app.core.db import utcnow
from tests.support.apps import ROOT
from tests.support.http import Accounts, assert_problem
from tests.support.mail import Mailbox

# --- the emailed links ---------------------------------------------------------------------

EXPIRED_OR_USED = "This link is invalid, expired or already used."


def expire_and_clean_up(app: Flask) -> None:
    """The clean-up the scheduler runs every hour, run now: expired links are deleted."""
    result = app.test_cli_runner().invoke(args=["cleanup-tokens"])
    assert result.exit_code == 0, result.output


def test_an_activation_link_expired_and_cleaned_up_says_links_expire_and_offers_a_new_one(
    app: Flask, client: FlaskClient, accounts: Accounts, mailbox: Mailbox
) -> None:
    accounts.register("slow@example.com")
    token = mailbox.last_token("slow@example.com")
    with time_machine.travel(utcnow() + timedelta(hours=24, minutes=1)):
        expire_and_clean_up(app)
        body = assert_problem(client.post("/auth/activate", json={"token": token}), 400)
    assert body["detail"] == (
        f"{EXPIRED_OR_USED} Ask for a new activation link with POST /auth/activate/resend."
    )
    page = client.get(f"/auth/activate?token={token}").get_data(as_text=True)
    assert EXPIRED_OR_USED in page  # what the page shows when its button gets that 400
    assert "Send me a new link" in page


def test_a_reset_link_expired_and_cleaned_up_says_links_expire_and_offers_a_new_one(
    app: Flask, client: FlaskClient, accounts: Accounts, mailbox: Mailbox
) -> None:
    accounts.active_user("forgetful@example.com")
    sent = client.post("/auth/password/forgot", json={"email": "forgetful@example.com"})
    assert sent.status_code == 202
    token = mailbox.last_token("forgetful@example.com")
    with time_machine.travel(utcnow() + timedelta(hours=24, minutes=1)):
        expire_and_clean_up(app)
        response = client.post(
            "/auth/password/reset", json={"token": token, "new_password": "quiet harbour velvet"}
        )
    body = assert_problem(response, 400)
    assert body["detail"] == (
        f"{EXPIRED_OR_USED} Ask for a new reset link with POST /auth/password/forgot."
    )
    page = client.get(f"/auth/password/reset?token={token}").get_data(as_text=True)
    assert EXPIRED_OR_USED in page
    assert "Send me a new reset link" in page


def test_a_spent_link_says_the_same(client: FlaskClient, accounts: Accounts) -> None:
    accounts.register("twice@example.com")
    token = accounts.mailbox.last_token("twice@example.com")
    assert client.post("/auth/activate", json={"token": token}).status_code == 200
    body = assert_problem(client.post("/auth/activate", json={"token": token}), 400)
    assert body["detail"].startswith(EXPIRED_OR_USED)


# --- /docs ---------------------------------------------------------------------------------


def test_docs_say_who_gets_a_reset_link(client: FlaskClient) -> None:
    forgot = client.get("/openapi.json").json["paths"]["/auth/password/forgot"]["post"]
    words = f"{forgot['summary']} {forgot.get('description', '')}"
    assert "to an active account" not in words
    assert "never activated" in words  # they get a link too, and using it activates them
    assert "deactivated" in words  # an account an admin deactivated gets none


# --- the manual ---------------------------------------------------------------------------

README = (ROOT / "README.md").read_text()
HISTORY = (
    "the old 40-megapixel cap",
    "Upgrading from the HS256 release",
    'the old "20 an hour per email"',
    "the old development constants",
)


def test_the_manual_describes_the_service_and_the_changelog_keeps_its_history() -> None:
    changelog = (ROOT / "CHANGELOG.md").read_text()
    for words in HISTORY:
        assert words.lower() not in README.lower(), words
    for subject in ("40-megapixel", "HS256", "20 an hour per email", "development constants"):
        assert subject in changelog, subject
    assert "CHANGELOG.md" in README


def readme_tests_section() -> str:
    return README.split("\n## Tests\n", 1)[1].split("\n## ", 1)[0]


def collected(*args: str) -> set[str]:
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "--collect-only", "-q", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    return {line for line in result.stdout.splitlines() if "::" in line}


def test_the_manual_says_how_long_the_tests_take_and_how_to_run_the_sqlite_half() -> None:
    section = readme_tests_section()
    assert "about 5 minutes on 2 cores" in section
    (expression,) = re.findall(r"`make test PYTEST_ARGS='-k ([^']+)'`", section)
    selected = collected("-k", expression)
    everything = collected()
    sqlite_half = {test for test in everything if re.search(r"\[(.*-)?sqlite(-.*)?\]$", test)}
    assert selected == sqlite_half
    # The other half is the same tests on PostgreSQL.
    assert {test.replace("[sqlite", "[postgresql", 1) for test in selected} <= everything


def test_the_manual_says_a_non_root_user_gets_skips_instead_of_installs() -> None:
    section = " ".join(readme_tests_section().split())
    assert "Run as a user other than root, `make test` installs nothing" in section
    assert "skipped, saying why" in section
