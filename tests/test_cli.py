"""The flask commands: seed-groups, create-admin, cleanup-tokens."""

from __future__ import annotations

from datetime import timedelta

import sqlalchemy as sa
from flask import Flask
from flask.testing import FlaskClient

from app.core.db import db, utcnow
from app.identity.models import UserGroup
from app.identity.users import find_user_by_email
from app.links.models import ActivationToken
from app.sessions.models import LoginSession
from tests.support.http import PASSWORD, Accounts, bearer


class TestCommandLine:
    def test_seed_groups_is_idempotent(self, app: Flask) -> None:
        runner = app.test_cli_runner()
        first = runner.invoke(args=["seed-groups"])
        second = runner.invoke(args=["seed-groups"])
        assert first.exit_code == 0 and second.exit_code == 0
        assert "already present" in second.output
        with app.app_context():
            assert sorted(db.session.scalars(sa.select(UserGroup.name))) == [
                "ADMIN",
                "MODERATOR",
                "USER",
            ]

    def test_create_admin_creates_an_active_admin_who_can_log_in(
        self, app: Flask, client: FlaskClient
    ) -> None:
        result = app.test_cli_runner().invoke(
            args=["create-admin", "--email", "Boss@Example.com", "--password", PASSWORD]
        )
        assert result.exit_code == 0, result.output
        tokens = client.post(
            "/auth/login", json={"email": "boss@example.com", "password": PASSWORD}
        ).json
        me = client.get("/auth/me", headers=bearer(tokens["access_token"])).json
        assert me["group"] == "ADMIN" and me["is_active"] is True

    def test_create_admin_prompts_for_the_password(self, app: Flask) -> None:
        result = app.test_cli_runner().invoke(
            args=["create-admin", "--email", "prompted@example.com"],
            input=f"{PASSWORD}\n{PASSWORD}\n",
        )
        assert result.exit_code == 0, result.output
        assert "created admin prompted@example.com" in result.output

    def test_create_admin_promotes_and_activates_an_existing_user(
        self, app: Flask, accounts: Accounts
    ) -> None:
        accounts.register("member@example.com")
        # No --password: the user keeps theirs, and nothing asks for one it would not use.
        result = app.test_cli_runner().invoke(
            args=["create-admin", "--email", "member@example.com"], input=""
        )
        assert result.exit_code == 0, result.output
        assert "promoted" in result.output
        assert "Password" not in result.output
        me = accounts.client.get(
            "/auth/me", headers=bearer(accounts.login("member@example.com")["access_token"])
        ).json
        assert me["group"] == "ADMIN"

    def test_create_admin_with_password_sets_it_on_an_existing_user_and_ends_its_logins(
        self, app: Flask, accounts: Accounts
    ) -> None:
        before = accounts.active_user("member@example.com")
        new_password = "marble lantern exquisite harbour"
        result = app.test_cli_runner().invoke(
            args=["create-admin", "--email", "member@example.com", "--password", new_password]
        )
        assert result.exit_code == 0, result.output
        assert "password set" in result.output
        client = accounts.client
        old = client.post("/auth/login", json={"email": "member@example.com", "password": PASSWORD})
        assert old.status_code == 401
        accounts.login("member@example.com", new_password)
        assert client.get("/auth/me", headers=bearer(before["access_token"])).status_code == 401
        refreshed = client.post("/auth/refresh", json={"refresh_token": before["refresh_token"]})
        assert refreshed.status_code == 401

    def test_create_admin_with_password_spends_a_reset_link_sent_before(
        self, app: Flask, accounts: Accounts
    ) -> None:
        # A reset link already in someone's mailbox must not undo the password an operator set.
        accounts.active_user("member@example.com")
        sent = accounts.client.post("/auth/password/forgot", json={"email": "member@example.com"})
        assert sent.status_code == 202
        link = accounts.mailbox.last_token("member@example.com")
        new_password = "marble lantern exquisite harbour"
        result = app.test_cli_runner().invoke(
            args=["create-admin", "--email", "member@example.com", "--password", new_password]
        )
        assert result.exit_code == 0, result.output
        undone = accounts.client.post(
            "/auth/password/reset", json={"token": link, "new_password": "quiet harbour velvet"}
        )
        assert undone.status_code == 400
        accounts.login("member@example.com", new_password)

    def test_create_admin_refuses_a_weak_password_for_an_existing_user_saying_why(
        self, app: Flask, accounts: Accounts
    ) -> None:
        accounts.active_user("member@example.com")
        result = app.test_cli_runner().invoke(
            args=["create-admin", "--email", "member@example.com", "--password", "password"]
        )
        assert result.exit_code != 0
        assert "--password" in result.output and "guess" in result.output
        tokens = accounts.login("member@example.com")  # the old password still works
        me = accounts.client.get("/auth/me", headers=bearer(tokens["access_token"])).json
        assert me["group"] == "USER"  # and nothing else changed

    def test_create_admin_refuses_a_weak_password(self, app: Flask) -> None:
        result = app.test_cli_runner().invoke(
            args=["create-admin", "--email", "weak@example.com", "--password", "password"]
        )
        assert result.exit_code != 0
        assert "guess" in result.output

    def test_cleanup_tokens_deletes_only_expired_ones(self, app: Flask, accounts: Accounts) -> None:
        accounts.register("old@example.com")
        accounts.register("new@example.com")
        with app.app_context():
            old = find_user_by_email("old@example.com")
            token = db.session.scalar(
                sa.select(ActivationToken).where(ActivationToken.user_id == old.id)
            )
            token.expires_at = utcnow() - timedelta(seconds=1)
            # A login (and so its refresh token) that expired yesterday.
            db.session.add(
                LoginSession(
                    user_id=old.id,
                    family_id="f",
                    refresh_hash="x",
                    expires_at=utcnow() - timedelta(days=1),
                )
            )
            db.session.commit()
        result = app.test_cli_runner().invoke(args=["cleanup-tokens"])
        assert result.exit_code == 0
        assert "activation: 1 deleted" in result.output
        assert "sessions: 1 deleted" in result.output
        with app.app_context():
            assert db.session.scalar(sa.select(sa.func.count()).select_from(ActivationToken)) == 1
