"""A rotated-in key is published before it signs (issue 21, item 5).

The JWKS is served `public, max-age=300`, so a sister service may verify with a copy fetched
up to five minutes ago. `flask keys rotate` lists the new key at once and signs with it only
once every such copy has expired (its max-age, plus the time a process may serve a JWKS
from its key cache); `--now` signs with it at once, for a compromised key. The clock is
travelled; the sister service holds the JWKS it fetched and verifies with PyJWT alone.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import jwt
import pytest
import sqlalchemy as sa
import time_machine
from flask import Flask
from flask.testing import FlaskClient
from flask_migrate import upgrade

from app.core.db import db, utcnow
from app.core.errors import Conflict
from app.keys.models import SigningKey
from app.keys.service import new_signing_key, retention, rotate_key
from tests.support.apps import make_app
from tests.support.http import PASSWORD, Accounts, claims, me
from tests.support.mail import Mailbox, SMTPServer

JWKS = "/.well-known/jwks.json"
EMAIL = "rotating@example.com"
ISSUER = "http://cinema.test"  # PUBLIC_BASE_URL of the test apps


def kid_of(token: str) -> str:
    return str(jwt.get_unverified_header(token)["kid"])


def fetch_jwks(client: FlaskClient) -> tuple[dict[str, Any], int]:
    """The JWKS as another service fetches it, and how long it may keep it (max-age)."""
    response = client.get(JWKS)
    assert response.status_code == 200
    max_age = re.fullmatch(r"public, max-age=(\d+)", response.headers["Cache-Control"])
    assert max_age is not None, response.headers["Cache-Control"]
    return response.json, int(max_age.group(1))


def kids(jwks: dict[str, Any]) -> set[str]:
    return {key["kid"] for key in jwks["keys"]}


def sister_verifies(jwks: dict[str, Any], token: str) -> dict[str, Any]:
    """What a sister service does with the JWKS it holds: PyJWT, no call to us."""
    key = jwt.PyJWKSet.from_dict(jwks)[kid_of(token)]  # KeyError: a kid it does not know
    verified: dict[str, Any] = jwt.decode(
        token, key.key, algorithms=["EdDSA"], audience="cinema", issuer=ISSUER
    )
    return verified


def keys_command(app: Flask, *args: str) -> str:
    result = app.test_cli_runner().invoke(args=["keys", *args])
    assert result.exit_code == 0, result.output
    return result.output


def listed(app: Flask) -> dict[str, str]:
    """`flask keys list`, as {kid: the rest of its line}."""
    lines = keys_command(app, "list").splitlines()
    return dict(line.split("  ", 1) for line in lines)


def iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def test_a_rotation_publishes_the_new_key_at_once_and_signs_once_cached_jwks_expired(
    app: Flask, client: FlaskClient, accounts: Accounts
) -> None:
    before = accounts.active_user(EMAIL)
    # A sister service fetches the JWKS just before the rotation and keeps it for max-age.
    held, max_age = fetch_jwks(client)
    old_kid = kid_of(before["access_token"])
    assert old_kid in kids(held)
    rotated_at = utcnow()
    output = keys_command(app, "rotate")
    switch = max_age + app.config["SIGNING_KEY_CACHE_SECONDS"]
    assert switch == 300 + 30

    published, _ = fetch_jwks(client)
    (new_kid,) = kids(published) - kids(held)
    assert old_kid in kids(published)

    # Every token issued while a copy fetched before the rotation may be in use is signed
    # with a key that copy holds.
    for offset in (1, 60, max_age - 1, max_age + 1, switch - 2):
        with time_machine.travel(rotated_at + timedelta(seconds=offset)):
            token = accounts.login(EMAIL)["access_token"]
            assert kid_of(token) == old_kid, f"{offset} s after the rotation"
            assert sister_verifies(held, token)["sub"] == claims(before["access_token"])["sub"]
            assert me(client, token).status_code == 200
            assert new_kid in kids(fetch_jwks(client)[0])
    assert new_kid in output and "signs from" in output

    # Once every such copy has expired, the new key signs; the old one stays published.
    with time_machine.travel(rotated_at + timedelta(seconds=switch + 1)):
        token = accounts.login(EMAIL)["access_token"]
        assert kid_of(token) == new_kid
        fresh, _ = fetch_jwks(client)
        assert sister_verifies(fresh, token)["sub"] == claims(before["access_token"])["sub"]
        assert old_kid in kids(fresh)
        refreshed = client.post("/auth/refresh", json={"refresh_token": before["refresh_token"]})
        assert kid_of(refreshed.json["access_token"]) == new_kid

    # The old key's last tokens (signed just before the switch) expire; then it goes.
    with app.app_context():
        keep_for = retention()
    with time_machine.travel(
        rotated_at + timedelta(seconds=switch) + keep_for - timedelta(seconds=5)
    ):
        assert old_kid in kids(fetch_jwks(client)[0])
    with time_machine.travel(
        rotated_at + timedelta(seconds=switch) + keep_for + timedelta(seconds=5)
    ):
        assert old_kid not in kids(fetch_jwks(client)[0])
        assert new_kid in kids(fetch_jwks(client)[0])


def test_keys_list_says_which_key_signs_next_and_from_when(
    app: Flask, client: FlaskClient, accounts: Accounts
) -> None:
    old_kid = kid_of(accounts.active_user(EMAIL)["access_token"])
    assert listed(app)[old_kid].split("  ")[1].startswith("current")  # perhaps "signs until"
    before = set(listed(app))
    rotated_at = utcnow().replace(microsecond=0)
    keys_command(app, "rotate")
    switch = fetch_jwks(client)[1] + app.config["SIGNING_KEY_CACHE_SECONDS"]
    with app.app_context():
        keep_for = retention()

    states = listed(app)
    (new_kid,) = set(states) - before
    signs_from = re.search(r"next, signs from (\S+)$", states[new_kid])
    assert signs_from is not None, states[new_kid]
    starts = datetime.strptime(signs_from.group(1), "%Y-%m-%dT%H:%M:%S%z")
    assert timedelta(0) <= starts - rotated_at - timedelta(seconds=switch) <= timedelta(seconds=5)
    assert states[old_kid].endswith(f"current, signs until {iso(starts)}")

    with time_machine.travel(starts + timedelta(seconds=1)):
        states = listed(app)
        assert states[new_kid].endswith("current")
        assert states[old_kid].endswith(
            f"retired {iso(starts)}, published until {iso(starts + keep_for)}"
        )


def test_rotate_now_signs_with_the_new_key_at_once(
    app: Flask, client: FlaskClient, accounts: Accounts
) -> None:
    before = accounts.active_user(EMAIL)
    old_kid = kid_of(before["access_token"])
    output = keys_command(app, "rotate", "--now")
    assert "401" in output  # it says what it costs the sister services

    token = accounts.login(EMAIL)["access_token"]
    new_kid = kid_of(token)
    assert new_kid != old_kid
    published, _ = fetch_jwks(client)
    assert {old_kid, new_kid} <= kids(published)
    assert sister_verifies(published, token)["sub"] == claims(before["access_token"])["sub"]
    # Tokens the old key signed live on until they expire.
    assert me(client, before["access_token"]).status_code == 200
    states = listed(app)
    assert states[new_kid].endswith("current")
    assert re.search(r"retired \S+, published until \S+$", states[old_kid]), states[old_kid]


def test_rotate_now_after_a_rotation_signs_with_the_newest_key_at_once(
    app: Flask, client: FlaskClient, accounts: Accounts
) -> None:
    # A rotation is pending when the key turns out to be compromised.
    old_kid = kid_of(accounts.active_user(EMAIL)["access_token"])
    published = kids(fetch_jwks(client)[0])
    keys_command(app, "rotate")
    (pending_kid,) = kids(fetch_jwks(client)[0]) - published
    keys_command(app, "rotate", "--now")
    token = accounts.login(EMAIL)["access_token"]
    assert kid_of(token) not in {old_kid, pending_kid}
    # The pending key never signed anything: it is withdrawn, and no longer published.
    assert pending_kid not in kids(fetch_jwks(client)[0])
    assert pending_kid not in listed(app)
    for offset in (1, 400, 3600):  # and it keeps signing: the pending key never takes over
        with time_machine.travel(utcnow() + timedelta(seconds=offset)):
            assert kid_of(accounts.login(EMAIL)["access_token"]) == kid_of(token)


def test_keys_ensure_makes_a_key_that_signs_at_once(
    tmp_path: Path, smtp_server: SMTPServer, mailbox: Mailbox
) -> None:
    app = make_app(f"sqlite:///{tmp_path / 'fresh.sqlite3'}", tmp_path, smtp_server.port)
    try:
        with app.app_context():
            upgrade()
        created = keys_command(app, "ensure")
        (kid,) = listed(app)
        assert kid in created
        assert listed(app)[kid].endswith("current")
        admin = app.test_cli_runner().invoke(
            args=["create-admin", "--email", "first@example.com", "--password", PASSWORD]
        )
        assert admin.exit_code == 0, admin.output
        token = Accounts(app.test_client(), mailbox).login("first@example.com")["access_token"]
        assert kid_of(token) == kid
    finally:
        with app.app_context():
            db.engine.dispose()


def waiting_on_a_lock() -> int:
    """How many sessions of the database wait for a lock (a fresh statistics snapshot: a
    transaction would keep seeing its first one)."""
    query = sa.text(
        "SELECT count(*) FROM pg_stat_activity "
        "WHERE datname = current_database() AND wait_event_type = 'Lock'"
    )
    with db.engine.connect() as conn:
        return int(conn.scalar(query) or 0)


@pytest.mark.postgres("concurrent transactions need PostgreSQL")
def test_two_rotations_at_once_leave_one_current_key_and_one_next(
    app_factory: Callable[..., Flask], mailbox: Mailbox
) -> None:
    # No key cache: after the travelled clock below, this process reads what the two
    # rotations (other processes) wrote, as a process would 30 s after them.
    app = app_factory(SIGNING_KEY_CACHE_SECONDS=0)
    accounts = Accounts(app.test_client(), mailbox)
    accounts.active_user(EMAIL)
    keys_command(app, "rotate")  # the two replace a key still waiting to sign

    def rotation() -> str:
        with app.app_context():
            try:
                return rotate_key().kid
            except Conflict:
                return "conflict"

    # Both rotations start while a transaction holds the keys, so both are under way at
    # once when it lets go.
    with app.app_context(), db.engine.connect() as blocker:
        blocker.execute(sa.text("SELECT kid FROM signing_keys FOR UPDATE"))
        with ThreadPoolExecutor(max_workers=2) as pool:
            rotations = [pool.submit(rotation) for _ in range(2)]
            deadline = time.monotonic() + 30
            while waiting_on_a_lock() != 2:
                assert time.monotonic() < deadline, "the rotations never met the lock"
                time.sleep(0.05)
            blocker.rollback()
            made = [kid for kid in (r.result() for r in rotations) if kid != "conflict"]
    assert made

    states = listed(app)
    assert (
        sum(
            state.endswith("current") or "current, signs until" in state
            for state in states.values()
        )
        == 1
    )
    (upcoming,) = [kid for kid, state in states.items() if "next, signs from" in state]
    assert upcoming in made
    with app.app_context():
        unretired = db.session.scalars(sa.select(SigningKey).where(SigningKey.retired_at.is_(None)))
        assert [key.kid for key in unretired] == [upcoming]
    # And once its time comes, it is the one that signs.
    with time_machine.travel(utcnow() + timedelta(seconds=3600)):
        assert kid_of(accounts.login(EMAIL)["access_token"]) == upcoming


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_a_key_made_before_the_migration_goes_on_signing(
    backend: str,
    tmp_path: Path,
    make_postgres_database: Callable[[str], str],
    smtp_server: SMTPServer,
    mailbox: Mailbox,
) -> None:
    if backend == "sqlite":
        url = f"sqlite:///{tmp_path / 'before.sqlite3'}"
    else:
        url = make_postgres_database("signs_from")
    app = make_app(url, tmp_path, smtp_server.port)
    try:
        with app.app_context():
            upgrade(revision="0004_signing_keys")
            key = new_signing_key()
            db.session.execute(
                sa.text(
                    "INSERT INTO signing_keys (kid, alg, public_jwk, private_key_encrypted, "
                    "created_at) VALUES (:kid, :alg, :jwk, :private, :created)"
                ),
                {
                    "kid": key.kid,
                    "alg": key.alg,
                    "jwk": json.dumps(key.public_jwk),
                    "private": key.private_key_encrypted,
                    "created": utcnow() - timedelta(days=30),
                },
            )
            db.session.commit()
            upgrade()
        admin = app.test_cli_runner().invoke(
            args=["create-admin", "--email", "kept@example.com", "--password", PASSWORD]
        )
        assert admin.exit_code == 0, admin.output
        token = Accounts(app.test_client(), mailbox).login("kept@example.com")["access_token"]
        assert kid_of(token) == key.kid
        assert listed(app)[key.kid].endswith("current")
    finally:
        with app.app_context():
            db.engine.dispose()
