"""Requests and assertions the tests make against the API, and the accounts they make."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import jwt
import time_machine
from flask import Flask
from flask.testing import FlaskClient

from app.core.db import db, utcnow
from tests.support.mail import Mailbox

PASSWORD = "violet tangerine submarine orbit"
PROBLEM_KEYS = {"type", "title", "status", "detail"}

# --- responses ----------------------------------------------------------------------------


def assert_problem(response: Any, status: int) -> dict[str, Any]:
    """An RFC 9457 problem body with this status; returns the body."""
    assert response.status_code == status, response.get_data(as_text=True)
    assert response.mimetype == "application/problem+json"
    body: dict[str, Any] = response.json
    assert set(body) >= PROBLEM_KEYS
    assert body["status"] == status
    return body


def assert_401(response: Any) -> dict[str, Any]:
    body = assert_problem(response, 401)
    assert response.headers["WWW-Authenticate"] == "Bearer"
    return body


# --- requests -----------------------------------------------------------------------------


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def login(client: FlaskClient, email: str, password: str = PASSWORD) -> Any:
    return client.post("/auth/login", json={"email": email, "password": password})


def refresh(client: FlaskClient, token: str) -> Any:
    return client.post("/auth/refresh", json={"refresh_token": token})


def logout(client: FlaskClient, refresh_token: str, access_token: str | None = None) -> Any:
    headers = bearer(access_token) if access_token else {}
    return client.post("/auth/logout", json={"refresh_token": refresh_token}, headers=headers)


def me(client: FlaskClient, access_token: str) -> Any:
    return client.get("/auth/me", headers=bearer(access_token))


# The test apps run with the default REFRESH_REUSE_GRACE: within it a just-rotated refresh
# token presented again continues its login.
REFRESH_REUSE_GRACE = 10


def past_the_refresh_grace() -> Any:
    """The clock moved past REFRESH_REUSE_GRACE: a spent refresh token presented now is
    reuse, not a request that raced its rotation. Issue no token inside: it would be dated
    in the future once the clock comes back."""
    return time_machine.travel(utcnow() + timedelta(seconds=REFRESH_REUSE_GRACE + 1))


def claims(token: str) -> dict[str, Any]:
    """A JWT's claims, read without the key (the tests forge and inspect tokens)."""
    decoded: dict[str, Any] = jwt.decode(token, options={"verify_signature": False})
    return decoded


USER_KEYS = {
    *("id", "email", "is_active", "group", "mfa_enabled", "created_at", "updated_at", "profile"),
}


def at_once(app: Flask, requests: list[Callable[[Any], Any]]) -> list[int]:
    """Start every request at the same moment, each from its own client; return the statuses."""
    barrier = threading.Barrier(len(requests))
    statuses: list[int] = []
    lock = threading.Lock()

    def run(request: Callable[[Any], Any]) -> None:
        client = app.test_client()
        barrier.wait()
        status = request(client).status_code
        with lock:
            statuses.append(status)

    threads = [threading.Thread(target=run, args=(r,)) for r in requests]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    return sorted(statuses)


@dataclass
class Accounts:
    client: FlaskClient
    mailbox: Mailbox

    def register(self, email_address: str, password: str = PASSWORD) -> dict[str, Any]:
        response = self.client.post(
            "/auth/register", json={"email": email_address, "password": password}
        )
        assert response.status_code == 201, response.json
        return response.json  # type: ignore[return-value]

    def activate(self, email_address: str) -> None:
        response = self.client.post(
            "/auth/activate", json={"token": self.mailbox.last_token(email_address)}
        )
        assert response.status_code == 200, response.json

    def login(self, email_address: str, password: str = PASSWORD) -> dict[str, Any]:
        response = login(self.client, email_address, password)
        assert response.status_code == 200, response.json
        return response.json  # type: ignore[return-value]

    def active_user(self, email_address: str, password: str = PASSWORD) -> dict[str, Any]:
        """Register, activate through the emailed link, log in; returns the token pair."""
        self.register(email_address, password)
        self.activate(email_address)
        return self.login(email_address, password)

    def set_group(self, app: Flask, email_address: str, group: str) -> None:
        from app.identity.models import GroupName
        from app.identity.users import find_user_by_email, get_group

        with app.app_context():
            user = find_user_by_email(email_address)
            assert user is not None
            user.group = get_group(GroupName(group))
            db.session.commit()
