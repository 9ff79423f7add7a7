"""Issue 21, item 3 (checklist item 8): addresses that route mail inside the network.

`a@localhost`, `a@[127.0.0.1]` and `a%b@example.org` were accepted, and the relay carried
activation mail wherever they pointed: to the relay's own host, to a machine of the internal
network, or on to another server named in the local part. Each test sends such an address
where the service takes an email (register, resend, forgot, login, create-admin), with the
emails going through Redis, a real RQ worker and a real SMTP server, on SQLite and on
PostgreSQL.
"""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from flask import Flask

from app.core.db import db
from app.courier.models import EmailOutbox
from app.identity.models import User
from tests.support.apps import run_worker
from tests.support.http import PASSWORD, assert_problem
from tests.support.mail import Mailbox

LOCAL_PART_ROUTING = [
    "a%b@example.org",  # "%-hack": the relay at example.org passes it on to b
    "a!b@x.org",  # a UUCP bang path: b, by way of a
    "b%internal.corp@example.org",
    '"a@intranet"@example.org',  # a quoted local part: read as another address by some parsers
]
NO_PUBLIC_DOMAIN = [
    "a@localhost",
    "a@LocalHost",
    "a@mail.localhost",  # RFC 6761: every name under localhost is this machine
    "a@[127.0.0.1]",
    "a@[IPv6:::1]",
    "a@[10.0.0.5]",
    "a@127.0.0.10",  # an IPv4 address without brackets: the relay resolves it to itself
    "a@0x7f.0x01",  # 127.0.0.1 to inet_aton
    "a@intranet",  # any domain without a dot
    "a@printer.local",  # mDNS, RFC 6762
    "a@db.internal",  # ICANN's name for private networks
    "a@router.home.arpa",  # RFC 8375
    "a@mailhost.localdomain",
]
ENDPOINTS = [
    ("/auth/register", {"password": PASSWORD}),
    ("/auth/activate/resend", {}),
    ("/auth/password/forgot", {}),
    ("/auth/login", {"password": PASSWORD}),
]


def nothing_stored_or_sent(app: Flask, mailbox: Mailbox) -> None:
    run_worker(app)
    assert mailbox.messages == []
    with app.app_context():
        for model in (User, EmailOutbox):
            assert db.session.scalar(sa.select(sa.func.count()).select_from(model)) == 0


@pytest.mark.parametrize("address", LOCAL_PART_ROUTING)
def test_an_address_that_routes_through_another_server_is_422_everywhere(
    redis_app: Flask, mailbox: Mailbox, address: str
) -> None:
    client = redis_app.test_client()
    for path, rest in ENDPOINTS:
        body = assert_problem(client.post(path, json={"email": address, **rest}), 422)
        (message,) = body["errors"]["email"]
        assert "quotes, % or !" in message, message
    nothing_stored_or_sent(redis_app, mailbox)


@pytest.mark.parametrize("address", NO_PUBLIC_DOMAIN)
def test_an_address_off_the_public_internet_is_422_everywhere(
    redis_app: Flask, mailbox: Mailbox, address: str
) -> None:
    client = redis_app.test_client()
    for path, rest in ENDPOINTS:
        body = assert_problem(client.post(path, json={"email": address, **rest}), 422)
        (message,) = body["errors"]["email"]
        assert "public domain name" in message, message
    nothing_stored_or_sent(redis_app, mailbox)


@pytest.mark.parametrize(
    "address",
    [
        "ada+films@mail.example.org",
        "o'brien@example.co.uk",
        "ada.lovelace@sub.domain-with-dash.io",
        "ada@xn--80ak6aa92e.com",  # an internationalised domain, in its xn-- form
        "ada@example.xn--p1ai",  # and an internationalised top-level domain
        "local@localhost-films.com",  # "localhost" inside a public name is just a name
    ],
)
def test_public_addresses_still_register_and_get_their_link(
    redis_app: Flask, mailbox: Mailbox, address: str
) -> None:
    client = redis_app.test_client()
    response = client.post("/auth/register", json={"email": address, "password": PASSWORD})
    assert response.status_code == 201, response.json
    run_worker(redis_app)
    assert mailbox.last_token(address)


def test_create_admin_refuses_an_internal_address_and_says_why(app: Flask) -> None:
    result = app.test_cli_runner().invoke(
        args=["create-admin", "--email", "admin@localhost", "--password", PASSWORD]
    )
    assert result.exit_code == 2
    assert "public domain name" in result.output
    with app.app_context():
        assert db.session.scalar(sa.select(sa.func.count()).select_from(User)) == 0
