"""Requests about a person's sessions (logins), and what the service stored of them."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from flask import Flask
from flask.testing import FlaskClient

from app.core.db import db
from app.sessions.models import LoginSession
from tests.support.http import PASSWORD, assert_401, bearer, me, refresh

SESSION_KEYS = {"id", "created_at", "last_used_at", "expires_at", "user_agent", "ip", "current"}


def list_sessions(client: FlaskClient, access_token: str) -> list[dict[str, Any]]:
    """GET /auth/sessions, which must answer 200; its items."""
    response = client.get("/auth/sessions", headers=bearer(access_token))
    assert response.status_code == 200, response.get_data(as_text=True)
    items: list[dict[str, Any]] = response.json["items"]
    for item in items:
        assert set(item) == SESSION_KEYS
    return items


def current_session(client: FlaskClient, access_token: str) -> dict[str, Any]:
    """The item of the login of `access_token` in its own session list."""
    (current,) = [item for item in list_sessions(client, access_token) if item["current"]]
    return current


def end_session(client: FlaskClient, access_token: str, session_id: int) -> Any:
    return client.delete(f"/auth/sessions/{session_id}", headers=bearer(access_token))


def end_other_sessions(client: FlaskClient, access_token: str) -> Any:
    return client.delete("/auth/sessions", headers=bearer(access_token))


def stored_sessions(app: Flask) -> list[LoginSession]:
    """Every login record, in id order, detached from the database."""
    with app.app_context():
        rows = list(db.session.scalars(sa.select(LoginSession).order_by(LoginSession.id)))
        db.session.expunge_all()
    return rows


def login_as(client: FlaskClient, email: str, **headers: str) -> dict[str, Any]:
    """Log in with these request headers (User-Agent, X-Forwarded-For); the token pair."""
    response = client.post(
        "/auth/login", json={"email": email, "password": PASSWORD}, headers=headers
    )
    assert response.status_code == 200, response.json
    return response.json  # type: ignore[no-any-return]


def event_types(client: FlaskClient, access_token: str) -> list[str]:
    """The types of the caller's security events, newest first."""
    response = client.get("/auth/me/events", headers=bearer(access_token))
    assert response.status_code == 200, response.json
    return [item["type"] for item in response.json["items"]]


def works(client: FlaskClient, pair: dict[str, Any]) -> bool:
    """Whether the access token of the pair is accepted."""
    return bool(me(client, pair["access_token"]).status_code == 200)


def assert_ended(client: FlaskClient, *pairs: dict[str, Any]) -> None:
    """Both tokens of each login are refused, at once."""
    for pair in pairs:
        assert "revoked" in assert_401(me(client, pair["access_token"]))["detail"]
        assert_401(refresh(client, pair["refresh_token"]))
