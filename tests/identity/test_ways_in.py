"""The last way in (app/identity/ways_in.py): a password and every registered kind count, and
removing the last one is a 409."""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from flask import Flask

from app.core.db import db
from app.core.errors import Conflict
from app.identity import ways_in as registry
from app.identity.models import User
from app.identity.ways_in import keep_a_way_in, register_way_in, ways_in
from tests.support.http import Accounts


@pytest.fixture
def user(app: Flask, accounts: Accounts) -> User:
    accounts.register("owner@example.com")
    with app.app_context():
        found = db.session.scalar(sa.select(User))
        assert found is not None
        return found


def test_a_password_and_each_registered_kind_count(
    app: Flask, user: User, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(registry, "_COUNTERS", dict(registry._COUNTERS))
    with app.app_context():
        assert ways_in(user) == 1  # the password; the passkeys' counter says 0
        register_way_in("identities", lambda user_id: 2 if user_id == user.id else 0)
        assert ways_in(user) == 3
        keep_a_way_in(user)


def test_the_last_way_in_stays(app: Flask, user: User) -> None:
    with app.app_context():
        assert "passkeys" in registry._COUNTERS  # registered when app.passkeys is imported
        with pytest.raises(Conflict):
            keep_a_way_in(user)
        user.password_hash = None  # type: ignore[assignment]  # an account with no password
        assert ways_in(user) == 0
        with pytest.raises(Conflict):
            keep_a_way_in(user)
