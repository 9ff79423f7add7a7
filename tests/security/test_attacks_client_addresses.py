"""Issue 21, item 1: per-address limits count clients, not addresses.

A client is normally given a whole IPv6 /64, so an attacker behind one trusted proxy took a
new address per request: 24 of 24 login attempts from one /64 passed the 20-a-minute
anti-spraying limit, 23 of 23 registrations the 20-an-hour one. And a proxy that writes the
port (`203.0.113.9:40001`) made every connection a new client. Each test sends what the
attacker sent, through the proxy path (`TRUSTED_PROXIES=1`, `X-Forwarded-For`), to the app
with its limits counted in a real Redis, on SQLite and on PostgreSQL.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
import time_machine
from flask import Flask
from flask.testing import FlaskClient

from app.core.config import ConfigError, derive_settings, load_config
from app.core.db import db
from app.identity.models import User
from tests.support.apps import run_worker
from tests.support.http import PASSWORD, Accounts, assert_problem
from tests.support.mail import Mailbox

WRONG = "a wrong password for sure"
NEW_PASSWORD = "quartz heron lantern meadow"


@pytest.fixture
def proxied_app(app_factory: Callable[..., Flask], redis_url: str) -> Flask:
    """The service behind one trusted proxy, its limits counted in Redis."""
    return app_factory(RATELIMIT_ENABLED=True, REDIS_URL=redis_url, TRUSTED_PROXIES=1)


def in_64(prefix: str, count: int) -> list[str]:
    """`count` different addresses of the /64 `prefix` (four groups), as an attacker picks
    them: every interface id new."""
    return [f"{prefix}:{n + 1:x}:{n * 7 + 3:x}:beef:{n:x}" for n in range(count)]


def post_from(client: FlaskClient, address: str, path: str, body: dict[str, Any]) -> Any:
    """A request as the trusted proxy hands it on: the client's address in X-Forwarded-For."""
    return client.post(path, json=body, headers={"X-Forwarded-For": address})


def login_from(client: FlaskClient, address: str, email: str, password: str = WRONG) -> Any:
    return post_from(client, address, "/auth/login", {"email": email, "password": password})


def users(app: Flask) -> int:
    with app.app_context():
        return db.session.scalar(sa.select(sa.func.count()).select_from(User)) or 0


def test_login_attempts_from_one_64_share_the_anti_spraying_limit(proxied_app: Flask) -> None:
    """The attack: 24 logins, each for another account, each from another address of one /64."""
    client = proxied_app.test_client()
    statuses = [
        login_from(client, address, f"spray{n}@example.com").status_code
        for n, address in enumerate(in_64("2001:db8:1:2", 24))
    ]
    assert statuses == [401] * 20 + [429] * 4
    # The next /64 is another client (another household, another server).
    assert login_from(client, "2001:db8:1:3::1", "spray@example.com").status_code == 401


def test_registrations_from_one_64_share_the_per_address_limit(
    proxied_app: Flask, mailbox: Mailbox
) -> None:
    """The attack: 23 registrations from one /64, each an activation email to an address of
    the attacker's choosing."""
    client = proxied_app.test_client()
    statuses = [
        post_from(
            client,
            address,
            "/auth/register",
            {"email": f"victim{n}@example.com", "password": PASSWORD},
        ).status_code
        for n, address in enumerate(in_64("2001:db8:aa:bb", 23))
    ]
    assert statuses == [201] * 20 + [429] * 3
    refused = post_from(
        client,
        "2001:db8:aa:bb::1",
        "/auth/register",
        {"email": "x@example.com", "password": PASSWORD},
    )
    assert_problem(refused, 429)
    assert int(refused.headers["Retry-After"]) > 0
    run_worker(proxied_app)
    assert users(proxied_app) == 20
    assert len(mailbox.messages) == 20
    other = {"email": "neighbour@example.com", "password": PASSWORD}
    assert post_from(client, "2001:db8:aa:bc::1", "/auth/register", other).status_code == 201


@pytest.mark.parametrize(
    ("path", "body", "allowed"),
    [
        ("/auth/activate/resend", {"email": "someone@example.com"}, 20),
        ("/auth/password/forgot", {"email": "someone@example.com"}, 20),
        ("/auth/activate", {"token": "not-a-token"}, 10),
        ("/auth/password/reset", {"token": "not-a-token", "new_password": NEW_PASSWORD}, 10),
        ("/auth/refresh", {"refresh_token": "not-a-token"}, 60),
        ("/auth/logout", {"refresh_token": "not-a-token"}, 60),
    ],
)
def test_every_per_address_limit_counts_a_64_as_one_client(
    proxied_app: Flask, path: str, body: dict[str, str], allowed: int
) -> None:
    client = proxied_app.test_client()
    *addresses, last = in_64("2001:db8:cc:dd", allowed + 1)
    for address in addresses:
        response = post_from(client, address, path, body)
        assert response.status_code != 429, response.json
    assert_problem(post_from(client, last, path, body), 429)
    assert post_from(client, "2001:db8:cc:de::1", path, body).status_code != 429


# How proxies write one client: with a port, bracketed with a port, IPv4-mapped IPv6.
ONE_IPV4_CLIENT = [
    "203.0.113.9",
    "203.0.113.9:{port}",
    "::ffff:203.0.113.9",
    "[::ffff:203.0.113.9]:{port}",
    "::ffff:cb00:7109",  # the same mapped address, in hexadecimal
]
ONE_IPV6_CLIENT = [
    "2001:db8:77:1::1",
    "[2001:db8:77:1::2]:{port}",
    "[2001:db8:77:1:abcd::3]",
    "2001:DB8:77:1:0:0:0:4",
]


@pytest.mark.parametrize("spellings", [ONE_IPV4_CLIENT, ONE_IPV6_CLIENT], ids=["ipv4", "ipv6"])
def test_the_form_the_proxy_writes_does_not_make_a_new_client(
    proxied_app: Flask, spellings: list[str]
) -> None:
    """The attack: a proxy that appends the client's port made every connection a client."""
    client = proxied_app.test_client()
    written = [spellings[n % len(spellings)].format(port=40000 + n) for n in range(21)]
    statuses = [
        login_from(client, address, f"spray{n}@example.com").status_code
        for n, address in enumerate(written)
    ]
    assert statuses == [401] * 20 + [429]


def test_an_address_that_does_not_parse_is_one_client_as_written(proxied_app: Flask) -> None:
    """What is no address (`unknown`, as some proxies write for a hidden client) is kept as it
    is: counted, never a 500."""
    client = proxied_app.test_client()
    statuses = [login_from(client, "unknown", f"who{n}@example.com").status_code for n in range(21)]
    assert statuses == [401] * 20 + [429]
    assert login_from(client, "unknown:80", "who@example.com").status_code == 401


def test_a_new_address_in_the_owners_64_is_still_an_address_they_logged_in_from(
    proxied_app: Flask, mailbox: Mailbox
) -> None:
    """IPv6 privacy addresses change daily inside the /64: the owner's new one is still theirs,
    so guesses spread over many addresses never hold the owner up."""
    client = proxied_app.test_client()
    post_from(
        client,
        "2001:db8:5:5::10",
        "/auth/register",
        {"email": "owner@example.com", "password": PASSWORD},
    )
    run_worker(proxied_app)
    Accounts(client, mailbox).activate("owner@example.com")
    assert login_from(client, "2001:db8:5:5::10", "owner@example.com", PASSWORD).status_code == 200
    with time_machine.travel(time.time(), tick=False):
        for n in range(12):
            login_from(client, f"198.51.100.{n}", "owner@example.com", f"{WRONG} {n}")
        assert_problem(login_from(client, "198.51.100.99", "owner@example.com", PASSWORD), 429)
        privacy_address = "2001:db8:5:5:c0ff:ee:1234:5678"
        assert login_from(client, privacy_address, "owner@example.com", PASSWORD).status_code == 200


def test_a_wider_prefix_counts_a_48_as_one_client(
    app_factory: Callable[..., Flask], redis_url: str
) -> None:
    """RATELIMIT_IPV6_PREFIX=48 for networks that hand each client a /48."""
    app = app_factory(
        RATELIMIT_ENABLED=True, REDIS_URL=redis_url, TRUSTED_PROXIES=1, RATELIMIT_IPV6_PREFIX=48
    )
    client = app.test_client()
    statuses = [
        login_from(client, f"2001:db8:48:{n:x}::1", f"spray{n}@example.com").status_code
        for n in range(21)
    ]
    assert statuses == [401] * 20 + [429]
    assert login_from(client, "2001:db8:49::1", "spray@example.com").status_code == 401


# --- the setting ---------------------------------------------------------------------------


def settings(tmp_path: Path, **env: str) -> dict[str, Any]:
    """The settings a process would start with, given this environment."""
    return derive_settings(load_config(str(tmp_path), env))


def test_the_prefix_is_64_unless_set(tmp_path: Path) -> None:
    assert settings(tmp_path)["RATELIMIT_IPV6_PREFIX"] == 64
    assert settings(tmp_path, RATELIMIT_IPV6_PREFIX="56")["RATELIMIT_IPV6_PREFIX"] == 56


@pytest.mark.parametrize("value", ["0", "31", "129", "-64", "/64", "sixty-four"])
def test_a_prefix_that_cannot_count_clients_is_refused_by_name(tmp_path: Path, value: str) -> None:
    with pytest.raises(ConfigError, match="RATELIMIT_IPV6_PREFIX"):
        settings(tmp_path, RATELIMIT_IPV6_PREFIX=value)
