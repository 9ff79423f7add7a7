"""Issue 21, item 7: notices could be made to pile up.

The attack: whoever holds an account's password logs in and changes it, again and again.
Every change queued a "password changed" notice, about 20 outbox rows and emails a minute
per address. Now one account gets at most one notice of a kind per few minutes; the changes
themselves still happen. Against the real stack: limits counted in Redis, the emails sent
by the RQ worker to the SMTP server.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable

import time_machine
from flask import Flask
from flask.testing import FlaskClient

from app.courier.outbox import SWEEP_AFTER, sweep_outbox
from app.courier.quota import NOTICE_INTERVAL
from tests.support.apps import run_worker
from tests.support.http import PASSWORD, Accounts, bearer, login
from tests.support.mail import Mailbox

VICTIM = "changed-often@example.com"
NOTICE_SUBJECT = "Your cinema password was changed"


def change_password(client: FlaskClient, current: str, new: str) -> None:
    """Log in with `current` and change it to `new`: one cycle of the attack."""
    response = login(client, VICTIM, current)
    assert response.status_code == 200, response.json
    response = client.post(
        "/auth/password/change",
        json={"old_password": current, "new_password": new},
        headers=bearer(response.json["access_token"]),
    )
    assert response.status_code == 204, response.json


def notices(mailbox: Mailbox) -> int:
    return [message["Subject"] for message in mailbox.to(VICTIM)].count(NOTICE_SUBJECT)


def test_item_7_password_changes_in_a_row_send_one_notice_per_interval(
    app_factory: Callable[..., Flask], redis_url: str, mailbox: Mailbox
) -> None:
    app = app_factory(RATELIMIT_ENABLED=True, REDIS_URL=redis_url)
    client = app.test_client()
    with time_machine.travel(time.time(), tick=False) as clock:
        response = client.post("/auth/register", json={"email": VICTIM, "password": PASSWORD})
        assert response.status_code == 201
        run_worker(app)
        Accounts(client, mailbox).activate(VICTIM)

        passwords = [PASSWORD] + [f"{PASSWORD} {n}" for n in range(1, 11)]
        for current, new in itertools.pairwise(passwords):
            change_password(client, current, new)
            clock.shift(5)  # ten cycles in 50 seconds
        run_worker(app)
        assert notices(mailbox) == 1
        # Every change took effect: the last password is the one that works.
        assert login(client, VICTIM, passwords[-2]).status_code == 401
        assert login(client, VICTIM, passwords[-1]).status_code == 200

        clock.shift(NOTICE_INTERVAL.get_expiry())  # the interval has passed
        change_password(client, passwords[-1], PASSWORD + " once more")
        run_worker(app)
        assert notices(mailbox) == 2


def test_item_7_an_uncounted_notice_still_goes_and_the_change_still_happens(
    app_factory: Callable[..., Flask], mailbox: Mailbox
) -> None:
    """The cap counts in Redis. When a change is made where Redis is away and the limiter has
    not noticed (here `flask create-admin --password`), the notice is not counted but sent:
    the password is set and the owner is told, as before the cap."""
    embedded = app_factory()
    Accounts(embedded.test_client(), mailbox).active_user(VICTIM)
    mailbox.clear()
    # Nothing listens on port 1: Redis is down for the queue and for the limits.
    down = app_factory(REDIS_URL="redis://127.0.0.1:1/0", RATELIMIT_ENABLED=True)
    new_password = "marble lantern exquisite harbour"
    result = down.test_cli_runner().invoke(
        args=["create-admin", "--email", VICTIM, "--password", new_password]
    )
    assert result.exit_code == 0, result.output
    assert login(embedded.test_client(), VICTIM, new_password).status_code == 200
    # The queue was down too: the outbox sweep sends the recorded notice.
    with time_machine.travel(time.time() + SWEEP_AFTER + 1), embedded.app_context():
        assert sweep_outbox() == 1
    assert notices(mailbox) == 1
