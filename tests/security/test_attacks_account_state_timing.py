"""Issue 21, item 2: forgot and resend told account states apart by their time.

The attack: time POST /auth/password/forgot and /auth/activate/resend for an address. The
request looked the account up and, for some states only, issued a link, rendered and
encrypted an email and committed: 15.7 ms for an active account against 6.1 ms for an
unknown address and 5.5 ms for a deactivated one. The figures are the benchmark's
(`make bench`); these tests check the cause, against the real stack: the request now does
the same database work and hands the same job to RQ whatever the address, and the real
worker then sends what the account's state calls for.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import pytest
import sqlalchemy as sa
from flask import Flask
from flask.testing import FlaskClient
from rq.job import Job

from app.core.db import db
from app.courier.models import EmailOutbox
from app.courier.queue import get_queue
from tests.support.apps import run_worker
from tests.support.http import PASSWORD, Accounts, bearer
from tests.support.mail import Mailbox
from tests.support.statements import recorded_statements

FORGOT, RESEND = "/auth/password/forgot", "/auth/activate/resend"
ADDRESSES = {
    "unknown": "nobody@example.com",
    "active": "active@example.com",
    "pending": "pending@example.com",
    "deactivated": "deactivated@example.com",
}
BOSS = "boss@example.com"
RESET_SUBJECT = "Reset your cinema password"
ACTIVATION_SUBJECT = "Activate your cinema account"
NEW_PASSWORD = "copper falcon drizzle atlas"


@pytest.fixture
def limited_redis_app(app_factory: Callable[..., Flask], redis_url: str) -> Flask:
    """As in production: limits on and counted in Redis, emails sent by the RQ worker."""
    return app_factory(RATELIMIT_ENABLED=True, REDIS_URL=redis_url)


def make_accounts(app: Flask, mailbox: Mailbox) -> None:
    """An active, a pending (never activated) and an admin-deactivated account, through the
    API; the unknown address has none."""
    client = app.test_client()
    accounts = Accounts(client, mailbox)
    ids = {}
    for address in (ADDRESSES["active"], ADDRESSES["pending"], ADDRESSES["deactivated"], BOSS):
        response = client.post("/auth/register", json={"email": address, "password": PASSWORD})
        assert response.status_code == 201, response.json
        ids[address] = response.json["id"]
    run_worker(app)
    for address in (ADDRESSES["active"], ADDRESSES["deactivated"], BOSS):
        accounts.activate(address)
    accounts.set_group(app, BOSS, "ADMIN")
    admin = bearer(accounts.login(BOSS)["access_token"])
    path = f"/admin/users/{ids[ADDRESSES['deactivated']]}/deactivate"
    assert client.post(path, headers=admin).status_code == 200
    run_worker(app)
    mailbox.clear()


def subjects(mailbox: Mailbox, address: str) -> list[str]:
    return [str(message["Subject"]) for message in mailbox.to(address)]


def test_item_2_the_request_does_the_same_work_whatever_the_account(
    limited_redis_app: Flask, mailbox: Mailbox
) -> None:
    app = limited_redis_app
    make_accounts(app, mailbox)
    client = app.test_client()
    queue = get_queue(app)
    for path in (FORGOT, RESEND):
        work: dict[str, list[str]] = {}
        jobs: dict[str, list[Job]] = {}
        for state, address in ADDRESSES.items():
            queued_before = set(queue.job_ids)
            with recorded_statements(app) as statements:
                response = client.post(path, json={"email": address})
            assert response.status_code == 202
            assert response.json == {
                "detail": "If the address belongs to an account that needs it, "
                "an email is on its way."
            }
            work[state] = [sql for sql, _parameters in statements]
            jobs[state] = [job for job in queue.get_jobs() if job.id not in queued_before]
        assert all(statements == work["unknown"] for statements in work.values()), (
            f"{path} sends the database different work by account state: {work}"
        )
        # One job of the same function for every address, carrying the address (and the
        # requester's IP, for the log line) and never a link: the job makes the link.
        assert len({job.func_name for queued in jobs.values() for job in queued}) == 1
        for state, queued in jobs.items():
            assert [(job.args, job.kwargs) for job in queued] == [
                ((ADDRESSES[state], "127.0.0.1"), {})
            ]
        assert all(not mailbox.to(address) for address in ADDRESSES.values())

    run_worker(app)
    # forgot: an active or never-activated account gets a reset link (a reset activates);
    # resend: a never-activated account gets a new activation link; nobody else gets anything.
    assert subjects(mailbox, ADDRESSES["active"]) == [RESET_SUBJECT]
    assert sorted(subjects(mailbox, ADDRESSES["pending"])) == [ACTIVATION_SUBJECT, RESET_SUBJECT]
    assert subjects(mailbox, ADDRESSES["deactivated"]) == []
    assert subjects(mailbox, ADDRESSES["unknown"]) == []
    # The links work.
    response = client.post(
        "/auth/password/reset",
        json={"token": mailbox.last_token(ADDRESSES["active"]), "new_password": NEW_PASSWORD},
    )
    assert response.status_code == 204
    response = client.post(
        "/auth/activate", json={"token": mailbox.last_token(ADDRESSES["pending"])}
    )
    assert response.status_code == 200


def outbox_count(app: Flask) -> int:
    with app.app_context():
        return db.session.scalar(sa.select(sa.func.count()).select_from(EmailOutbox)) or 0


def test_item_2_with_redis_down_the_answer_is_the_same_and_asking_again_works(
    app_factory: Callable[..., Flask],
    redis_url: str,
    mailbox: Mailbox,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The request promises nothing but to look: when Redis cannot take the job, the answer
    is still the same 202, nothing is stored or sent, and the person asks again."""
    embedded = app_factory()
    accounts = Accounts(embedded.test_client(), mailbox)
    accounts.active_user(ADDRESSES["active"])
    accounts.register(ADDRESSES["pending"])
    rows_before = outbox_count(embedded)
    mailbox.clear()

    # Nothing listens on port 1: Redis is down for the queue and for the rate limits.
    down: FlaskClient = app_factory(
        REDIS_URL="redis://127.0.0.1:1/0", RATELIMIT_ENABLED=True
    ).test_client()
    with caplog.at_level(logging.WARNING, logger="app.courier.queue"):
        for path, state in ((FORGOT, "active"), (RESEND, "pending"), (FORGOT, "unknown")):
            response = down.post(path, json={"email": ADDRESSES[state]})
            assert response.status_code == 202, response.json
    assert [r.getMessage() for r in caplog.records].count("job_enqueue_failed") == 3
    assert outbox_count(embedded) == rows_before
    assert mailbox.messages == []

    back = app_factory(REDIS_URL=redis_url, RATELIMIT_ENABLED=True)
    client = back.test_client()
    assert client.post(FORGOT, json={"email": ADDRESSES["active"]}).status_code == 202
    assert client.post(RESEND, json={"email": ADDRESSES["pending"]}).status_code == 202
    run_worker(back)
    assert subjects(mailbox, ADDRESSES["active"]) == [RESET_SUBJECT]
    assert subjects(mailbox, ADDRESSES["pending"]) == [ACTIVATION_SUBJECT]
