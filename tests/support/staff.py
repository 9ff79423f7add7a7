"""Three logged-in staff-and-user accounts for the admin tests, and reading the user list."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from flask import Flask
from flask.testing import FlaskClient

from app.core.db import db
from app.identity.models import GroupName, User, UserGroup, UserProfile
from app.identity.users import find_user_by_email
from app.sessions.refresh_tokens import issue_token_pair
from tests.support.http import Accounts, bearer

ADMIN, MODERATOR, USER = "admin@example.com", "mod@example.com", "user@example.com"


@dataclass
class Staff:
    """Three logged-in accounts, one per group, and the app they live in."""

    app: Flask
    client: FlaskClient
    accounts: Accounts
    tokens: dict[str, dict[str, Any]]

    def headers(self, email: str) -> dict[str, str]:
        return bearer(self.tokens[email]["access_token"])

    def id_of(self, email: str) -> int:
        with self.app.app_context():
            user_id = db.session.scalar(sa.select(User.id).where(User.email == email))
        assert user_id is not None
        return int(user_id)

    def stored(self, email: str) -> User:
        with self.app.app_context():
            user = find_user_by_email(email)
            assert user is not None
            db.session.expunge(user)
            return user


def make_staff(app: Flask, client: FlaskClient, accounts: Accounts, password_hash: str) -> Staff:
    """Logged in through the token code itself: a register/activate/login per account would
    hash three passwords per test and make the suite slow without testing anything more."""
    tokens = {}
    with app.app_context():
        groups = {g.name: g for g in db.session.scalars(sa.select(UserGroup))}
        for email, group in ((ADMIN, "ADMIN"), (MODERATOR, "MODERATOR"), (USER, "USER")):
            user = User(
                email=email,
                password_hash=password_hash,
                is_active=True,
                group=groups[GroupName(group)],
                profile=UserProfile(),
            )
            db.session.add(user)
            db.session.flush()
            tokens[email] = issue_token_pair(user)
        db.session.commit()
    return Staff(app, client, accounts, tokens)


def listing(staff: Staff, caller: str = MODERATOR, **query: Any) -> Any:
    return staff.client.get("/admin/users", query_string=query, headers=staff.headers(caller))


def emails(response: Any) -> list[str]:
    assert response.status_code == 200, response.json
    return [item["email"] for item in response.json["items"]]
