"""The attacks of issue 10 on secrets, binding, limits and request bodies, each replayed
against the real stack (PostgreSQL and SQLite, Redis for the limiter, a real SMTP server,
gunicorn where the server matters). Each test sends what the attacker sent and asserts what
the service now promises instead."""

from __future__ import annotations

import contextlib
import io
import json
import os
import runpy
import secrets
import socket
import stat
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import jwt
import pytest
import time_machine
import yaml
from flask import Flask
from flask.testing import FlaskClient
from PIL import Image
from redis import Redis

from app import create_app
from app.core.config import ConfigError
from app.core.defaults import development_keys
from app.core.production import PUBLISHED_EXAMPLE_KEYS
from app.web.bodies import MAX_JSON_BODY
from app.web.problems import MAX_FIELD_ERRORS
from tests.support.apps import ROOT, run_worker
from tests.support.http import PASSWORD, Accounts, assert_problem, at_once, bearer
from tests.support.mail import Mailbox
from tests.support.services import free_port

NEW_PASSWORD = "quartz heron lantern meadow"


def re_signed(token: str, key: str) -> str:
    """The genuine claims of `token`, signed with `key`: what a holder of that key can forge."""
    claims = jwt.decode(token, options={"verify_signature": False})
    return jwt.encode(claims, key, algorithm="HS256")


def admin_pair(app: Flask, accounts: Accounts, address: str = "boss@example.com") -> dict:
    accounts.register(address)
    accounts.activate(address)
    accounts.set_group(app, address, "ADMIN")
    return accounts.login(address)


# --- 1, 14: production refuses published, shared and weak keys, and a missing SMTP server --


def production_env(**overrides: str) -> dict[str, str]:
    env = {
        "APP_ENV": "production",
        "SECRET_KEY": secrets.token_urlsafe(48),
        "JWT_SECRET_KEY": secrets.token_urlsafe(48),
        "DATABASE_URL": "postgresql://user@db.invalid/accounts",
        "REDIS_URL": "redis://redis.invalid:6379/0",
        "MAIL_SERVER": "smtp.invalid",
    }
    env.update(overrides)
    return env


def start_production(monkeypatch: pytest.MonkeyPatch, **overrides: str) -> Flask:
    for name, value in production_env(**overrides).items():
        monkeypatch.setenv(name, value)
    return create_app()


@pytest.mark.parametrize("published", sorted(PUBLISHED_EXAMPLE_KEYS))
@pytest.mark.parametrize("setting", ["SECRET_KEY", "JWT_SECRET_KEY"])
def test_a_published_example_key_is_refused_by_name(
    monkeypatch: pytest.MonkeyPatch, setting: str, published: str
) -> None:
    with pytest.raises(ConfigError) as refused:
        start_production(monkeypatch, **{setting: published})
    assert setting in str(refused.value)
    assert "secrets.token_urlsafe" in str(refused.value)  # says how to make a good one


def test_the_env_example_holds_no_key_at_all() -> None:
    lines = (ROOT / ".env.example").read_text().splitlines()
    values = dict(line.split("=", 1) for line in lines if line and not line.startswith("#"))
    assert values["SECRET_KEY"] == "" and values["JWT_SECRET_KEY"] == ""
    assert 'python -c "import secrets; print(secrets.token_urlsafe(48))"' in "\n".join(lines)


@pytest.mark.parametrize(
    "weak",
    [
        "a" * 32,
        "ab" * 32,
        "password" * 5,  # seven different characters
        "0000000000000000000000000000000000000000000000000123456789",  # ten, mostly one
        "short-but-random-Xq9",
    ],
)
def test_a_low_variety_key_is_refused_by_name(monkeypatch: pytest.MonkeyPatch, weak: str) -> None:
    with pytest.raises(ConfigError) as refused:
        start_production(monkeypatch, JWT_SECRET_KEY=weak)
    assert "JWT_SECRET_KEY" in str(refused.value)
    assert "SECRET_KEY " not in str(refused.value).replace("JWT_SECRET_KEY", "")


def test_one_key_for_both_settings_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    shared = secrets.token_urlsafe(48)
    with pytest.raises(ConfigError, match="SECRET_KEY and JWT_SECRET_KEY must differ"):
        start_production(monkeypatch, SECRET_KEY=shared, JWT_SECRET_KEY=shared)


def test_random_keys_start(monkeypatch: pytest.MonkeyPatch) -> None:
    app = start_production(monkeypatch, JWT_SECRET_KEY=secrets.token_hex(16))
    assert app.config["APP_ENV"] == "production"


def test_a_token_signed_with_the_published_key_is_refused(
    app: Flask, client: FlaskClient, accounts: Accounts
) -> None:
    """The attack: an ADMIN token signed with the `.env.example` key. Production no longer
    starts with that key (above); an app running with any other key refuses the token."""
    pair = admin_pair(app, accounts)
    assert client.get("/admin/users", headers=bearer(pair["access_token"])).status_code == 200
    for key in PUBLISHED_EXAMPLE_KEYS:
        forged = re_signed(pair["access_token"], key)
        assert_problem(client.get("/admin/users", headers=bearer(forged)), 401)


def test_production_refuses_to_start_without_an_smtp_server(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("MAIL_SERVER", raising=False)
    with pytest.raises(ConfigError, match="MAIL_SERVER"):
        start_production(monkeypatch, MAIL_SERVER="")


# --- 2: the embedded default binds this machine and signs with keys of its own -------------


def test_the_embedded_default_signs_with_keys_made_for_this_checkout(
    app: Flask, client: FlaskClient, accounts: Accounts
) -> None:
    """The attack: an ADMIN token signed with the development key published in the code."""
    pair = admin_pair(app, accounts)
    for published in ("dev-jwt-secret-key-not-for-production", "dev-secret-key-not-for-production"):
        forged = re_signed(pair["access_token"], published)
        assert_problem(client.get("/admin/users", headers=bearer(forged)), 401)
    keys_file = Path(app.instance_path) / "dev-secrets.json"
    assert stat.S_IMODE(keys_file.stat().st_mode) == 0o600
    assert app.config["JWT_SECRET_KEY"] not in (ROOT / "app" / "core" / "config.py").read_text()
    ignored = subprocess.run(["git", "check-ignore", "-q", str(keys_file)], cwd=ROOT, check=False)
    assert ignored.returncode == 0, "instance/dev-secrets.json must never be committed"


def test_the_keys_are_made_once_and_kept(tmp_path: Path) -> None:
    first = development_keys(tmp_path)
    assert first == development_keys(tmp_path)
    assert first["SECRET_KEY"] != first["JWT_SECRET_KEY"]
    assert all(len(key) >= 48 for key in first.values())
    assert development_keys(tmp_path / "another-checkout") != first


def test_production_never_uses_the_development_keys(
    monkeypatch: pytest.MonkeyPatch, app: Flask
) -> None:
    assert (Path(app.instance_path) / "dev-secrets.json").exists()
    monkeypatch.delenv("SECRET_KEY", raising=False)
    monkeypatch.delenv("JWT_SECRET_KEY", raising=False)
    for name, value in production_env().items():
        if name not in {"SECRET_KEY", "JWT_SECRET_KEY"}:
            monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError) as refused:
        create_app()
    assert "SECRET_KEY is not set" in str(refused.value)
    assert "JWT_SECRET_KEY is not set" in str(refused.value)


def gunicorn_bind(monkeypatch: pytest.MonkeyPatch, **env: str) -> str:
    monkeypatch.delenv("GUNICORN_BIND", raising=False)
    monkeypatch.delenv("APP_ENV", raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return str(runpy.run_path(str(ROOT / "gunicorn.conf.py"))["bind"])


def test_gunicorn_serves_this_machine_only_unless_told_otherwise(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert gunicorn_bind(monkeypatch) == "127.0.0.1:8000"
    assert gunicorn_bind(monkeypatch, GUNICORN_BIND="0.0.0.0:8000") == "0.0.0.0:8000"
    # The contract's `gunicorn wsgi:app` in production: every interface, port 8000.
    production = {
        "APP_ENV": "production",
        "SECRET_KEY": secrets.token_urlsafe(48),
        "JWT_SECRET_KEY": secrets.token_urlsafe(48),
        "DATABASE_URL": "postgresql://accounts@db.invalid/accounts",
        "REDIS_URL": "redis://redis.invalid:6379/0",
        "MAIL_SERVER": "smtp.invalid",
    }
    assert gunicorn_bind(monkeypatch, **production) == "0.0.0.0:8000"
    # In the container 127.0.0.1 would be unreachable: the image and compose open it there.
    assert "GUNICORN_BIND=0.0.0.0:8000" in (ROOT / "Dockerfile").read_text()
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    assert compose["services"]["backend"]["environment"]["GUNICORN_BIND"] == "0.0.0.0:8000"


# --- 6, 10: request bodies ---------------------------------------------------------------


def test_a_megabyte_json_body_is_refused_unread(client: FlaskClient) -> None:
    """The attack: 600,000 unknown keys to an unauthenticated route (7.8 s, a 16 MB 422)."""
    body = json.dumps({"token": "x", **{f"k{n}": 1 for n in range(600_000)}})
    body_problem = assert_problem(
        client.post("/auth/activate", data=body, content_type="application/json"), 413
    )
    assert len(json.dumps(body_problem)) < 500


def test_a_422_names_a_bounded_number_of_fields(client: FlaskClient) -> None:
    body = {"token": "x", **{f"k{n}": 1 for n in range(1000)}}
    assert len(json.dumps(body)) < MAX_JSON_BODY  # under the cap: the schema sees every key
    response = client.post("/auth/activate", json=body)
    problem = assert_problem(response, 422)
    assert len(problem["errors"]) == MAX_FIELD_ERRORS
    assert f"The first {MAX_FIELD_ERRORS} of 1000" in problem["detail"]
    assert len(response.get_data()) < 4096


def test_the_avatar_upload_keeps_its_own_cap(
    app: Flask, client: FlaskClient, accounts: Accounts
) -> None:
    pair = accounts.active_user("pictures@example.com")
    image = io.BytesIO()
    # Noise does not compress: a PNG of some hundred KiB, far over the JSON cap.
    Image.frombytes("RGB", (256, 256), secrets.token_bytes(256 * 256 * 3)).save(image, "PNG")
    assert image.tell() > 10 * MAX_JSON_BODY
    image.seek(0)
    response = client.put(
        "/auth/me/avatar",
        data={"avatar": (image, "me.png")},
        headers=bearer(pair["access_token"]),
        content_type="multipart/form-data",
    )
    assert response.status_code == 200, response.json


def chunked(client: FlaskClient, path: str, payload: bytes) -> Any:
    """A body without Content-Length, as a server that undoes chunked encoding hands it over
    (gunicorn sets `wsgi.input_terminated`)."""
    return client.post(
        path,
        input_stream=io.BytesIO(payload),
        headers={"Content-Type": "application/json", "Transfer-Encoding": "chunked"},
        environ_overrides={"wsgi.input_terminated": True},
    )


def test_a_chunked_body_over_the_cap_is_413_not_truncated(client: FlaskClient) -> None:
    """The attack: a chunked body whose first bytes are valid JSON on their own, padded past
    the cap. Read only up to the cap, it was handled as the short body."""
    head = b'{"token": "x"}'
    padded = head + b" " * (MAX_JSON_BODY + 1024)
    assert_problem(chunked(client, "/auth/activate", padded), 413)
    exactly = head + b" " * (MAX_JSON_BODY - len(head))
    assert_problem(chunked(client, "/auth/activate", exactly), 400)  # read whole: token unknown


@pytest.fixture
def gunicorn_url(database_url: str, tmp_path: Path) -> Iterator[str]:
    """The service under a real gunicorn, which undoes chunked encoding itself."""
    port = free_port()
    env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "RATELIMIT_ENABLED": "false",
        "GUNICORN_BIND": f"127.0.0.1:{port}",
        "WEB_CONCURRENCY": "1",
        "PYTHONPATH": str(ROOT),
    }
    for name in ("REDIS_URL", "MAIL_SERVER", "APP_ENV"):
        env.pop(name, None)
    log = (tmp_path / "gunicorn.log").open("w")
    process = subprocess.Popen(
        [str(Path(sys.executable).parent / "gunicorn"), "wsgi:app"],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        for _ in range(300):
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.1):
                break
            assert process.poll() is None, (tmp_path / "gunicorn.log").read_text()
            time.sleep(0.05)  # waiting for the server to listen, not timing anything
        yield f"127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(timeout=30)
        log.close()


def send_chunked(address: str, path: str, payload: bytes) -> int:
    """POST `payload` in chunked transfer encoding over a plain socket; the status code."""
    host, port = address.split(":")
    chunks = b"".join(
        b"%x\r\n%s\r\n" % (len(payload[i : i + 4096]), payload[i : i + 4096])
        for i in range(0, len(payload), 4096)
    )
    request = (
        (
            f"POST {path} HTTP/1.1\r\nHost: {address}\r\nContent-Type: application/json\r\n"
            "Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
        ).encode()
        + chunks
        + b"0\r\n\r\n"
    )
    with socket.create_connection((host, int(port)), timeout=30) as conn:
        with contextlib.suppress(ConnectionResetError, BrokenPipeError):
            conn.sendall(request)
        answer = conn.recv(64)
    return int(answer.split()[1])


def test_a_real_gunicorn_answers_413_to_a_long_chunked_body(gunicorn_url: str) -> None:
    head = b'{"token": "x"}'
    assert send_chunked(gunicorn_url, "/auth/activate", head + b" " * 200_000) == 413
    assert send_chunked(gunicorn_url, "/auth/activate", head) == 400  # read and judged


# --- 15, 16: caching and redirects -------------------------------------------------------


def test_token_responses_are_never_cached(
    app: Flask, client: FlaskClient, accounts: Accounts
) -> None:
    pair = accounts.active_user("cached@example.com")
    accounts.set_group(app, "cached@example.com", "ADMIN")
    caller = bearer(pair["access_token"])
    responses = [
        client.post(
            "/auth/login",
            json={"email": "cached@example.com", "password": PASSWORD},
        ),
        client.post("/auth/refresh", json={"refresh_token": pair["refresh_token"]}),
        client.get("/auth/me", headers=caller),
        # Personal data outside /auth too: the profile and the admin's view of the users.
        client.patch("/auth/me/profile", json={"first_name": "Ada"}, headers=caller),
        client.get("/admin/users", headers=caller),
    ]
    for response in responses:
        assert response.status_code == 200
        assert response.headers["Cache-Control"] == "no-store"
        assert response.headers["Pragma"] == "no-cache"


@pytest.mark.parametrize(
    "path", ["//admin//users", "/admin//users", "//auth/me", "/auth//login", "/health/", "//docs"]
)
def test_no_redirect_is_built_from_the_host_header(client: FlaskClient, path: str) -> None:
    """The attack: `GET //admin//users` with `Host: evil.example` answered 308 to
    `http://evil.example/admin/users`."""
    response = client.get(
        "/", environ_overrides={"PATH_INFO": path}, headers={"Host": "evil.example"}
    )
    assert "Location" not in response.headers
    assert not 300 <= response.status_code < 400
    if response.status_code >= 400:
        assert response.mimetype == "application/problem+json"


# --- 3, 7, 11, 12: limits, on Redis ------------------------------------------------------

WRONG = "a wrong password for sure"
# Spellings the schema turns into kate@example.com: no-break space, KELVIN SIGN, case.
KATE_SPELLINGS = [
    "\u00a0kate@example.com",
    "\u212aate@example.com",
    "KATE@Example.com ",
    "kate@example.com",
]


@pytest.fixture
def limited_app(app_factory: Callable[..., Flask], redis_url: str) -> Flask:
    """Rate limits on, counted in a real Redis shared as by every gunicorn process; emails are
    RQ jobs (`run_worker`)."""
    return app_factory(RATELIMIT_ENABLED=True, REDIS_URL=redis_url)


def from_address(address: str) -> dict[str, Any]:
    return {"environ_base": {"REMOTE_ADDR": address}}


def login_as(client: FlaskClient, email: str, password: str, address: str) -> Any:
    return client.post(
        "/auth/login", json={"email": email, "password": password}, **from_address(address)
    )


def active_account(app: Flask, mailbox: Mailbox, email: str) -> None:
    """Register and activate through the emailed link; log in once from 127.0.0.1."""
    client = app.test_client()
    client.post("/auth/register", json={"email": email, "password": PASSWORD})
    run_worker(app)
    Accounts(client, mailbox).activate(email)
    assert login_as(client, email, PASSWORD, "127.0.0.1").status_code == 200


def limiter_keys(redis_url: str) -> list[bytes]:
    return list(Redis.from_url(redis_url).scan_iter("*"))


def test_unicode_spellings_of_one_email_share_one_login_limit(
    limited_app: Flask, mailbox: Mailbox
) -> None:
    """The attack: 30 guesses against a limit of 5, each email spelt another way."""
    active_account(limited_app, mailbox, "kate@example.com")
    client = limited_app.test_client()
    statuses = [
        login_as(client, KATE_SPELLINGS[n % 4], f"{WRONG} {n}", "10.3.3.3").status_code
        for n in range(12)
    ]
    assert statuses == [401] * 5 + [429] * 7


def test_unicode_spellings_of_one_email_share_one_email_quota(
    limited_app: Flask, mailbox: Mailbox
) -> None:
    """The attack: 15 reset emails delivered against 3 an hour."""
    active_account(limited_app, mailbox, "kate@example.com")
    client = limited_app.test_client()
    mailbox.clear()
    for n in range(15):
        response = client.post(
            "/auth/password/forgot",
            json={"email": KATE_SPELLINGS[n % 4]},
            **from_address(f"10.4.0.{n}"),
        )
        assert response.status_code == 202
    run_worker(limited_app)
    assert len(mailbox.to("kate@example.com")) == 3


def test_a_value_that_is_no_email_counts_against_the_address_only(
    limited_app: Flask, redis_url: str
) -> None:
    client = limited_app.test_client()
    for value in ["not an email", "\u212aate@", "kate@example.com\u0000"]:
        response = client.post(
            "/auth/register",
            json={"email": value, "password": PASSWORD},
            **from_address("10.5.5.5"),
        )
        assert_problem(response, 422)
    keys = b" ".join(limiter_keys(redis_url))
    assert b"email:" not in keys
    assert b"10.5.5.5" in keys


def test_limiter_keys_stay_small_whatever_the_body_holds(
    limited_app: Flask, redis_url: str
) -> None:
    """The attack: `{"email": "a" * 5_242_880}` stored a 5 MB key for an hour."""
    client = limited_app.test_client()
    huge = client.post("/auth/password/forgot", json={"email": "a" * 5_242_880})
    assert_problem(huge, 413)
    for email in ["a" * 10_000 + "@example.com", "b" * 64 + "@" + "c" * 180 + ".com"]:
        for path in ("/auth/register", "/auth/login"):
            client.post(path, json={"email": email, "password": WRONG})
        client.post("/auth/password/forgot", json={"email": email})
    keys = limiter_keys(redis_url)
    assert keys
    assert max(len(key) for key in keys) < 200
    assert not any(b"bbbb" in key or b"aaaa" in key for key in keys)


def test_concurrent_guesses_from_one_address_get_the_limit_and_no_more(
    limited_app: Flask, mailbox: Mailbox
) -> None:
    active_account(limited_app, mailbox, "burst@example.com")
    statuses = at_once(
        limited_app,
        [
            lambda c, n=n: login_as(c, "burst@example.com", f"{WRONG} {n}", "10.11.0.1")
            for n in range(30)
        ],
    )
    assert sorted(statuses) == [401] * 5 + [429] * 25


def test_concurrent_guesses_from_thirty_addresses_get_the_free_five_and_one_turn(
    limited_app: Flask, mailbox: Mailbox
) -> None:
    """The attack: 30 concurrent wrong logins from 30 addresses got 9 password checks against
    a limit of 5. Counted before the check, five are free and one more takes the first turn
    of the account's delay; the rest wait."""
    active_account(limited_app, mailbox, "spread@example.com")
    statuses = at_once(
        limited_app,
        [
            lambda c, n=n: login_as(c, "spread@example.com", f"{WRONG} {n}", f"10.11.1.{n}")
            for n in range(30)
        ],
    )
    assert sorted(statuses) == [401] * 6 + [429] * 24


def test_concurrent_sprays_from_one_address_get_its_limit_and_no_more(
    limited_app: Flask,
) -> None:
    statuses = at_once(
        limited_app,
        [
            lambda c, n=n: login_as(c, f"spray{n}@example.com", WRONG, "10.11.2.2")
            for n in range(30)
        ],
    )
    assert sorted(statuses) == [401] * 20 + [429] * 10


def test_a_stranger_cannot_lock_the_owner_out_of_login(
    limited_app: Flask, mailbox: Mailbox
) -> None:
    """The attack: 20 wrong passwords from one address locked the owner out for an hour from
    anywhere (`Retry-After: 3355`)."""
    active_account(limited_app, mailbox, "owner@example.com")  # from 127.0.0.1
    client = limited_app.test_client()
    with time_machine.travel(time.time(), tick=False) as clock:
        statuses = [
            login_as(client, "owner@example.com", f"{WRONG} {n}", "10.12.0.1").status_code
            for n in range(20)
        ]
        assert statuses == [401] * 5 + [429] * 15  # the guessing address is stopped
        # The owner: from where they logged in before, and from a new address.
        assert login_as(client, "owner@example.com", PASSWORD, "127.0.0.1").status_code == 200
        assert login_as(client, "owner@example.com", PASSWORD, "10.12.9.9").status_code == 200
        # Guesses spread over many addresses slow the account down, for a short while only.
        for n in range(12):
            login_as(client, "owner@example.com", f"{WRONG} {n}", f"10.12.1.{n}")
        held = login_as(client, "owner@example.com", PASSWORD, "10.12.8.8")
        assert_problem(held, 429)
        assert 1 <= int(held.headers["Retry-After"]) <= 60
        assert login_as(client, "owner@example.com", PASSWORD, "127.0.0.1").status_code == 200
        clock.shift(61)
        assert login_as(client, "owner@example.com", PASSWORD, "10.12.8.8").status_code == 200


def test_a_stranger_cannot_lock_the_owner_out_of_reset(
    limited_app: Flask, mailbox: Mailbox
) -> None:
    """The attack: 3 forgot requests locked the owner out of reset for an hour. Requests that
    send nothing (unknown or inactive addresses) no longer count at all; the emails that did
    go out reached the owner, and the newest link works."""
    active_account(limited_app, mailbox, "forgetful@example.com")
    client = limited_app.test_client()
    for n in range(10):
        client.post(
            "/auth/password/forgot",
            json={"email": f"nobody{n}@example.com"},
            **from_address(f"10.13.0.{n}"),
        )
    mailbox.clear()
    for n in range(4):  # three by a stranger, then the owner's own
        response = client.post(
            "/auth/password/forgot",
            json={"email": "forgetful@example.com"},
            **from_address(f"10.13.1.{n}"),
        )
        assert response.status_code == 202
    run_worker(limited_app)
    assert len(mailbox.to("forgetful@example.com")) == 3
    reset = client.post(
        "/auth/password/reset",
        json={"token": mailbox.last_token("forgetful@example.com"), "new_password": NEW_PASSWORD},
    )
    assert reset.status_code == 204, reset.json
    assert login_as(client, "forgetful@example.com", NEW_PASSWORD, "127.0.0.1").status_code == 200


@pytest.mark.parametrize(
    ("path", "body", "allowed"),
    [
        ("/auth/activate", {"token": "not-a-token"}, 10),
        ("/auth/password/reset", {"token": "not-a-token", "new_password": NEW_PASSWORD}, 10),
        ("/auth/refresh", {"refresh_token": "not.a.token"}, 60),
        ("/auth/logout", {"refresh_token": "not.a.token"}, 60),
    ],
)
def test_the_unauthenticated_token_endpoints_are_limited_per_address(
    limited_app: Flask, path: str, body: dict[str, str], allowed: int
) -> None:
    client = limited_app.test_client()
    for _ in range(allowed):
        response = client.post(path, json=body, **from_address("10.6.6.6"))
        assert response.status_code in (400, 401, 422), response.json
    assert_problem(client.post(path, json=body, **from_address("10.6.6.6")), 429)
    assert client.post(path, json=body, **from_address("10.6.6.7")).status_code != 429


def test_with_redis_down_login_still_counts_in_memory(
    app_factory: Callable[..., Flask], mailbox: Mailbox, redis_url: str
) -> None:
    """The guards count through the limiter, so they fall back with it: a Redis outage neither
    turns login into a 500 nor lifts the limits; once Redis answers, counts go back to it."""
    up = app_factory()
    Accounts(up.test_client(), mailbox).active_user("steady@example.com")
    down = app_factory(REDIS_URL="redis://127.0.0.1:1/0", RATELIMIT_ENABLED=True).test_client()
    statuses = [
        login_as(down, "steady@example.com", f"{WRONG} {n}", "10.14.0.1").status_code
        for n in range(6)
    ]
    assert statuses == [401] * 5 + [429]
    assert login_as(down, "steady@example.com", PASSWORD, "10.14.0.2").status_code == 200
    # The limiter retries Redis with a back-off of seconds, on a later request.
    with time_machine.travel(time.time() + 60):
        back = app_factory(RATELIMIT_ENABLED=True, REDIS_URL=redis_url).test_client()
        login_as(back, "steady@example.com", WRONG, "10.14.0.3")
        login_as(back, "steady@example.com", WRONG, "10.14.0.3")
    assert any(b"10.14.0.3" in key for key in limiter_keys(redis_url))


def test_concurrent_wrong_current_passwords_get_the_limit_and_no_more(
    limited_app: Flask, mailbox: Mailbox
) -> None:
    """A stolen access token made password change a guessing oracle, checked then counted."""
    active_account(limited_app, mailbox, "changer@example.com")
    token = (
        limited_app.test_client()
        .post("/auth/login", json={"email": "changer@example.com", "password": PASSWORD})
        .json["access_token"]
    )
    statuses = at_once(
        limited_app,
        [
            lambda c, n=n: c.post(
                "/auth/password/change",
                json={"old_password": f"{WRONG} {n}", "new_password": NEW_PASSWORD},
                headers=bearer(token),
            )
            for n in range(30)
        ],
    )
    assert sorted(statuses) == [400] * 5 + [429] * 25
