"""One passkey registered and used in a real browser: Playwright driving Debian's chromium
with its virtual authenticator (the DevTools WebAuthn domain: CTAP2, internal, resident keys,
user verification), on a page of this service's own origin, calling `navigator.credentials`
with the options exactly as the API serves them (parse*OptionsFromJSON) and posting back
`credential.toJSON()`.

The page is a test-only one, added to the test's app: the service serves no passkey page of
its own (front ends do). Without chromium the test is skipped, saying so.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from flask import Flask
from werkzeug.serving import make_server

from tests.support.http import Accounts, bearer, me
from tests.support.mail import Mailbox
from tests.support.services import free_port

EMAIL = "viewer@example.com"

REGISTER = """async (token) => {
  const post = (path) => fetch(path, {method: "POST", headers: {Authorization: `Bearer ${token}`}});
  const options = await (await post("/auth/passkeys/register/options")).json();
  const credential = await navigator.credentials.create(
    {publicKey: PublicKeyCredential.parseCreationOptionsFromJSON(options)});
  const response = await fetch("/auth/passkeys", {
    method: "POST",
    headers: {Authorization: `Bearer ${token}`, "Content-Type": "application/json"},
    body: JSON.stringify({credential: credential.toJSON(), name: "Chromium"}),
  });
  return {status: response.status, body: await response.json()};
}"""

SIGN_IN = """async () => {
  const json = {"Content-Type": "application/json"};
  const asked = await fetch("/auth/passkeys/login/options",
    {method: "POST", headers: json, body: "{}"});
  const options = await asked.json();
  const credential = await navigator.credentials.get(
    {publicKey: PublicKeyCredential.parseRequestOptionsFromJSON(options)});
  const response = await fetch("/auth/passkeys/login", {
    method: "POST", headers: json, body: JSON.stringify({credential: credential.toJSON()}),
  });
  return {status: response.status, body: await response.json()};
}"""


@pytest.fixture
def served(app_factory: Callable[..., Flask]) -> Iterator[tuple[Flask, str]]:
    """The app on a real HTTP server at http://localhost:<port>, its public address, with
    a blank test page at /passkey-test."""
    port = free_port()
    url = f"http://localhost:{port}"
    app = app_factory(PUBLIC_BASE_URL=url)
    app.add_url_rule("/passkey-test", "passkey_test", lambda: "<!doctype html><title>t</title>")
    server = make_server("127.0.0.1", port, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield app, url
    server.shutdown()
    thread.join(timeout=10)


def test_a_passkey_registers_and_signs_in_in_chromium(
    chromium: Any, served: tuple[Flask, str], mailbox: Mailbox
) -> None:
    app, url = served
    client = app.test_client()
    token = Accounts(client, mailbox).active_user(EMAIL)["access_token"]
    context = chromium.new_context()
    page = context.new_page()
    page.goto(f"{url}/passkey-test")
    cdp = context.new_cdp_session(page)
    cdp.send("WebAuthn.enable")
    options = {
        "protocol": "ctap2",
        "transport": "internal",
        "hasResidentKey": True,
        "hasUserVerification": True,
        "isUserVerified": True,
    }
    authenticator = cdp.send("WebAuthn.addVirtualAuthenticator", {"options": options})

    registered = page.evaluate(REGISTER, token)
    assert registered["status"] == 201, registered
    assert registered["body"]["name"] == "Chromium"
    assert registered["body"]["transports"] == ["internal"]
    held = cdp.send("WebAuthn.getCredentials", authenticator)["credentials"]
    assert len(held) == 1 and held[0]["isResidentCredential"]

    signed_in = page.evaluate(SIGN_IN)
    assert signed_in["status"] == 200, signed_in
    assert me(client, signed_in["body"]["access_token"]).json["email"] == EMAIL
    listed = client.get("/auth/passkeys", headers=bearer(token)).json["items"]
    assert listed[0]["last_used_at"] is not None
    context.close()
