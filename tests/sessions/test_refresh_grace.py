"""Concurrent refresh is not theft (checklist item 25): within REFRESH_REUSE_GRACE seconds of
a rotation, the token just spent continues its login with a fresh access token and the
refresh token that rotation made (a login has one live refresh token: no second branch);
after the window, or when it is not the token spent last, it is reuse and ends the login."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
import time_machine
from flask import Flask
from flask.testing import FlaskClient

from app.core.config import ConfigError, derive_settings, load_config
from app.core.db import utcnow
from tests.support.http import (
    REFRESH_REUSE_GRACE,
    Accounts,
    assert_401,
    assert_problem,
    at_once,
    claims,
    logout,
    me,
    past_the_refresh_grace,
    refresh,
)
from tests.support.mail import Mailbox
from tests.support.sessions import assert_ended, event_types, list_sessions


def family(pair: dict[str, Any]) -> str:
    return str(claims(pair["access_token"])["fam"])


@pytest.fixture
def start() -> Iterator[datetime]:
    """A stopped clock: each step of a test travels to its own second."""
    now = utcnow()
    with time_machine.travel(now, tick=False):
        yield now


def at(moment: datetime) -> Any:
    return time_machine.travel(moment, tick=False)


def test_the_token_just_spent_continues_its_login_within_the_grace(
    client: FlaskClient, accounts: Accounts, start: datetime
) -> None:
    first = accounts.active_user("tabs@example.com")
    tab_a = refresh(client, first["refresh_token"]).json
    with at(start + timedelta(seconds=10)):  # the last second of the window
        response = refresh(client, first["refresh_token"])
        assert response.status_code == 200
        tab_b = response.json
        assert set(tab_b) == {"access_token", "refresh_token", "token_type", "expires_in"}
        # A fresh access token of the same login, and the one refresh token the login has:
        # whichever tab's answer a shared storage keeps, it works.
        assert family(tab_b) == family(tab_a) == family(first)
        assert tab_b["access_token"] != tab_a["access_token"]
        assert tab_b["refresh_token"] == tab_a["refresh_token"]
        assert len(list_sessions(client, tab_b["access_token"])) == 1
        for pair in (tab_a, tab_b):
            assert me(client, pair["access_token"]).status_code == 200
        tab_a = refresh(client, tab_a["refresh_token"]).json
        tab_b = refresh(client, tab_b["refresh_token"]).json
        assert family(tab_a) == family(tab_b) == family(first)
        assert "refresh_reuse_detected" not in event_types(client, tab_a["access_token"])


def test_after_the_grace_the_token_is_reuse_and_ends_the_whole_login(
    client: FlaskClient, accounts: Accounts, start: datetime
) -> None:
    first = accounts.active_user("late@example.com")
    other_device = accounts.login("late@example.com")
    tab_a = refresh(client, first["refresh_token"]).json
    with at(start + timedelta(seconds=5)):
        tab_b = refresh(client, first["refresh_token"]).json
    with at(start + timedelta(seconds=11)):
        body = assert_401(refresh(client, first["refresh_token"]))
        assert "already used" in body["detail"]
        assert_ended(client, first, tab_a, tab_b)
        assert me(client, other_device["access_token"]).status_code == 200
        assert "refresh_reuse_detected" in event_types(client, other_device["access_token"])


def test_a_token_two_rotations_back_is_reuse_at_once(
    client: FlaskClient, accounts: Accounts
) -> None:
    first = accounts.active_user("chain@example.com")
    second = refresh(client, first["refresh_token"]).json
    third = refresh(client, second["refresh_token"]).json
    body = assert_401(refresh(client, first["refresh_token"]))  # a second after its rotation
    assert "already used" in body["detail"]
    assert_ended(client, second, third)


def test_once_a_sibling_has_rotated_the_token_before_it_is_reuse(
    client: FlaskClient, accounts: Accounts
) -> None:
    first = accounts.active_user("siblings@example.com")
    tab_a = refresh(client, first["refresh_token"]).json
    tab_b = refresh(client, first["refresh_token"]).json  # within the grace: a sibling
    tab_b = refresh(client, tab_b["refresh_token"]).json  # the login moved on
    assert_401(refresh(client, first["refresh_token"]))
    assert_ended(client, tab_a, tab_b)


def test_a_grace_of_zero_turns_it_off(app_factory: Callable[..., Flask], mailbox: Mailbox) -> None:
    app = app_factory(REFRESH_REUSE_GRACE=0)
    client = app.test_client()
    first = Accounts(client, mailbox).active_user("strict@example.com")
    second = refresh(client, first["refresh_token"]).json
    assert "already used" in assert_401(refresh(client, first["refresh_token"]))["detail"]
    assert_ended(client, second)


def test_the_window_follows_the_setting(
    app_factory: Callable[..., Flask], mailbox: Mailbox, start: datetime
) -> None:
    app = app_factory(REFRESH_REUSE_GRACE=30)
    client = app.test_client()
    first = Accounts(client, mailbox).active_user("slow-network@example.com")
    refresh(client, first["refresh_token"])
    with at(start + timedelta(seconds=30)):
        assert refresh(client, first["refresh_token"]).status_code == 200
    with at(start + timedelta(seconds=31)):
        assert_401(refresh(client, first["refresh_token"]))


def test_logout_with_the_token_just_spent_ends_the_login_as_a_logout(
    client: FlaskClient, accounts: Accounts
) -> None:
    """A tab logs out with the token another tab has just rotated: the person asked for the
    login to end, and it does, with no theft alarm in their security activity."""
    first = accounts.active_user("leaving@example.com")
    rotated = refresh(client, first["refresh_token"]).json
    assert logout(client, first["refresh_token"], first["access_token"]).status_code == 204
    assert_ended(client, rotated)
    after = accounts.login("leaving@example.com")
    types = event_types(client, after["access_token"])
    assert "logged_out" in types
    assert "refresh_reuse_detected" not in types


def test_no_token_of_the_grace_reaches_a_log_line(
    client: FlaskClient, accounts: Accounts, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.DEBUG):
        first = accounts.active_user("quiet@example.com")
        second = refresh(client, first["refresh_token"]).json
        third = refresh(client, first["refresh_token"]).json
        with past_the_refresh_grace():
            assert_401(refresh(client, first["refresh_token"]))
    lines = [record for record in caplog.records if record.name == "app.audit"]
    assert "refresh_token_presented_within_grace" in [line.getMessage() for line in lines]
    secrets = [
        pair[k] for pair in (first, second, third) for k in ("access_token", "refresh_token")
    ]
    for record in caplog.records:
        rendered = f"{record.getMessage()} {record.__dict__!r}"
        for secret in secrets:
            assert secret not in rendered


@pytest.mark.parametrize("value", ["-1", "61", "3600", "ten"])
def test_a_grace_outside_0_to_60_seconds_stops_the_process(tmp_path: Path, value: str) -> None:
    with pytest.raises(ConfigError, match="REFRESH_REUSE_GRACE"):
        derive_settings(load_config(str(tmp_path), env={"REFRESH_REUSE_GRACE": value}))


def test_the_grace_defaults_to_ten_seconds_and_zero_is_allowed(tmp_path: Path) -> None:
    assert derive_settings(load_config(str(tmp_path), env={}))["REFRESH_REUSE_GRACE"] == 10
    off = derive_settings(load_config(str(tmp_path), env={"REFRESH_REUSE_GRACE": "0"}))
    assert off["REFRESH_REUSE_GRACE"] == 0


@pytest.mark.postgres("concurrent transactions need PostgreSQL")
def test_twenty_concurrent_refreshes_with_one_token_continue_one_login(
    app: Flask, client: FlaskClient, accounts: Accounts
) -> None:
    """Twenty tabs wake up and refresh with the same token at once: every one keeps the
    person signed in, in one login; the same token presented after the window ends it all."""
    first = accounts.active_user("twenty@example.com")
    answers: list[dict[str, Any]] = []

    def refresh_and_keep(c: FlaskClient) -> Any:
        response = refresh(c, first["refresh_token"])
        answers.append(response.json)
        return response

    statuses = at_once(app, [refresh_and_keep] * 20)
    assert statuses == [200] * 20
    assert {family(pair) for pair in answers} == {family(first)}
    # One rotation won; the other nineteen were given the token it made: one generation.
    (rotated,) = {pair["refresh_token"] for pair in answers}
    assert rotated.split(".")[1] == "1"
    assert len({pair["access_token"] for pair in answers}) == 20
    for pair in answers:
        assert me(client, pair["access_token"]).status_code == 200
    assert len(list_sessions(client, answers[0]["access_token"])) == 1
    with past_the_refresh_grace():
        assert "already used" in assert_401(refresh(client, first["refresh_token"]))["detail"]
    assert_ended(client, *answers)


@pytest.mark.postgres("a lock held past statement_timeout is PostgreSQL's")
def test_a_refresh_that_fails_after_its_rotation_spends_nothing(
    app_factory: Callable[..., Flask], mailbox: Mailbox, database_url: str, start: datetime
) -> None:
    """The new pair cannot be signed after the rotation ran (the signing keys cannot be
    read: another transaction holds their table past the statement timeout). The refresh
    answers 503 and spends nothing: the same token presented well after the grace still
    continues its login, where a token spent without an answer would end it as reuse."""
    app = app_factory(DATABASE_STATEMENT_TIMEOUT=1, SIGNING_KEY_CACHE_SECONDS=0)
    client = app.test_client()
    first = Accounts(client, mailbox).active_user("unsigned@example.com")
    blocker = sa.create_engine(database_url)
    try:
        with blocker.connect() as conn:
            conn.execute(sa.text("LOCK TABLE signing_keys IN ACCESS EXCLUSIVE MODE"))
            failed = refresh(client, first["refresh_token"])
            conn.rollback()
    finally:
        blocker.dispose()
    assert_problem(failed, 503)
    with at(start + timedelta(seconds=REFRESH_REUSE_GRACE + 5)):
        again = refresh(client, first["refresh_token"])
        assert again.status_code == 200, again.json
        assert family(again.json) == family(first)
        assert again.json["refresh_token"].split(".")[1] == "1"  # the first rotation
        assert me(client, again.json["access_token"]).status_code == 200
        assert "refresh_reuse_detected" not in event_types(client, again.json["access_token"])
