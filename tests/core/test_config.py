"""Configuration from the environment: production's refusals, bad values, trusted proxies."""

from __future__ import annotations

import secrets
from collections.abc import Callable

import pytest
from flask import Flask

from app.core.config import ConfigError
from tests.support.http import PASSWORD


class TestConfiguration:
    def test_production_refuses_default_secrets_sqlite_and_no_redis(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        from app import create_app

        monkeypatch.setenv("APP_ENV", "production")
        for name in ("SECRET_KEY", "JWT_SECRET_KEY", "DATABASE_URL", "REDIS_URL"):
            monkeypatch.delenv(name, raising=False)
        with pytest.raises(ConfigError) as info:
            create_app()
        message = str(info.value)
        for name in ("SECRET_KEY", "JWT_SECRET_KEY", "DATABASE_URL", "REDIS_URL"):
            assert name in message

    def test_production_starts_with_safe_settings(self, monkeypatch: pytest.MonkeyPatch) -> None:
        from app import create_app

        monkeypatch.setenv("APP_ENV", "production")
        monkeypatch.setenv("SECRET_KEY", secrets.token_urlsafe(48))
        monkeypatch.setenv("JWT_SECRET_KEY", secrets.token_hex(16))
        monkeypatch.setenv("DATABASE_URL", "postgresql://user@db.invalid/accounts")
        monkeypatch.setenv("REDIS_URL", "redis://redis.invalid:6379/0")
        monkeypatch.setenv("MAIL_SERVER", "smtp.invalid")
        app = create_app()
        assert app.config["SQLALCHEMY_DATABASE_URI"].startswith("postgresql+psycopg2://")

    def test_bad_number_names_the_setting(self, monkeypatch: pytest.MonkeyPatch) -> None:
        from app import create_app

        monkeypatch.setenv("ACTIVATION_TOKEN_TTL", "a day")
        with pytest.raises(ConfigError, match="ACTIVATION_TOKEN_TTL"):
            create_app()

    @pytest.mark.parametrize("value", ["sixty a minute", "0/minute", "-5/minute", "60/fortnight"])
    def test_a_bad_admin_list_limit_names_the_setting(
        self, monkeypatch: pytest.MonkeyPatch, value: str
    ) -> None:
        from app import create_app

        monkeypatch.setenv("ADMIN_LIST_RATE_LIMIT", value)
        with pytest.raises(ConfigError, match="ADMIN_LIST_RATE_LIMIT"):
            create_app()

    def test_the_admin_list_limit_takes_flask_limiters_notation(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        from app import create_app

        assert create_app().config["ADMIN_LIST_RATE_LIMIT"] == "60/minute"
        monkeypatch.setenv("ADMIN_LIST_RATE_LIMIT", "30/minute;600/hour")
        assert create_app().config["ADMIN_LIST_RATE_LIMIT"] == "30/minute;600/hour"


@pytest.mark.parametrize(("proxies", "seen"), [(0, "127.0.0.1"), (1, "203.0.113.7")])
def test_the_client_address_comes_from_x_forwarded_for_only_behind_trusted_proxies(
    app_factory: Callable[..., Flask], caplog: pytest.LogCaptureFixture, proxies: int, seen: str
) -> None:
    client = app_factory(TRUSTED_PROXIES=proxies).test_client()
    with caplog.at_level("INFO", logger="app.audit"):
        client.post(
            "/auth/login",
            json={"email": "nobody@example.com", "password": PASSWORD},
            headers={"X-Forwarded-For": "203.0.113.7"},
        )
    (record,) = [r for r in caplog.records if r.getMessage() == "login_failed"]
    assert record.ip == seen  # type: ignore[attr-defined]
