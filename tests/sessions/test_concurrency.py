"""Races the database must decide: one email, one refresh token (PostgreSQL only).

SQLite serialises writers on a file lock, so only PostgreSQL shows what concurrent
transactions do. Each thread has its own test client of the same app, as each gunicorn
thread would have its own request.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
import sqlalchemy as sa
from flask import Flask

from app.core.db import db
from app.identity.models import User
from tests.support.http import PASSWORD, Accounts, at_once
from tests.support.mail import Mailbox

pytestmark = pytest.mark.postgres("concurrent transactions need PostgreSQL")


@pytest.mark.parametrize("attempt", range(3))
def test_two_registrations_of_one_email_give_one_account(app: Flask, attempt: int) -> None:
    email = f"race{attempt}@example.com"
    statuses = at_once(
        app,
        [
            lambda c: c.post("/auth/register", json={"email": email, "password": PASSWORD}),
            lambda c: c.post("/auth/register", json={"email": email.upper(), "password": PASSWORD}),
        ],
    )
    # The unique index lets one insert; the other registers again over the pending account.
    assert statuses == [201, 201]
    with app.app_context():
        count = db.session.scalar(
            sa.select(sa.func.count()).select_from(User).where(User.email == email)
        )
    assert count == 1


@pytest.mark.parametrize("attempt", range(3))
def test_two_refreshes_with_one_token_let_at_most_one_through(
    app_factory: Callable[..., Flask], mailbox: Mailbox, attempt: int
) -> None:
    # With the grace off: within it both continue the login (test_refresh_grace.py).
    app = app_factory(REFRESH_REUSE_GRACE=0)
    pair = Accounts(app.test_client(), mailbox).active_user(f"twin{attempt}@example.com")
    token = pair["refresh_token"]
    statuses = at_once(
        app,
        [lambda c: c.post("/auth/refresh", json={"refresh_token": token})] * 2,
    )
    assert statuses.count(200) <= 1
    assert set(statuses) <= {200, 401}
