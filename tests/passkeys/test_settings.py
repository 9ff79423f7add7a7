"""The passkeys' settings: by default the RP id and the one origin follow PUBLIC_BASE_URL;
WEBAUTHN_ORIGINS is a comma-separated list."""

from __future__ import annotations

from typing import Any

from app.core.config import derive_settings, load_config


def settings(tmp_path: Any, **env: str) -> dict[str, Any]:
    return derive_settings(load_config(str(tmp_path), env={"APP_ENV": "development", **env}))


def test_the_defaults_follow_the_public_address(tmp_path: Any) -> None:
    config = settings(tmp_path, PUBLIC_BASE_URL="https://accounts.cinema.example:8443/")
    assert config["WEBAUTHN_RP_ID"] == "accounts.cinema.example"
    assert config["WEBAUTHN_ORIGINS"] == ["https://accounts.cinema.example:8443"]
    assert config["WEBAUTHN_RP_NAME"] == "Cinema"


def test_the_settings_are_read(tmp_path: Any) -> None:
    config = settings(
        tmp_path,
        PUBLIC_BASE_URL="https://accounts.cinema.example",
        WEBAUTHN_RP_ID="cinema.example",
        WEBAUTHN_RP_NAME="Cinema Club",
        WEBAUTHN_ORIGINS="https://cinema.example, https://accounts.cinema.example/",
    )
    assert config["WEBAUTHN_RP_ID"] == "cinema.example"
    assert config["WEBAUTHN_RP_NAME"] == "Cinema Club"
    assert config["WEBAUTHN_ORIGINS"] == [
        "https://cinema.example",
        "https://accounts.cinema.example",
    ]
