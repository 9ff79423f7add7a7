"""What account deletion leaves to background work, against the real services: the avatar
object (local folder and S3, storage down at the moment of deletion), and emails queued for
the person just before (Redis, a real RQ worker, the SMTP server)."""

from __future__ import annotations

import io
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import pytest
import time_machine
from flask import Flask
from flask.testing import FlaskClient
from moto.server import ThreadedMotoServer
from rq.registry import FailedJobRegistry, ScheduledJobRegistry

from app.courier.outbox import sweep_outbox
from app.courier.queue import RETRY_INTERVALS, get_queue
from tests.support.account import delete_me
from tests.support.apps import run_worker
from tests.support.http import PASSWORD, bearer, login
from tests.support.images import Uploader, image_bytes, only_key
from tests.support.mail import Mailbox
from tests.support.services import free_port

EMAIL = "leaving@example.com"


def active_user_through_the_worker(app: Flask, client: FlaskClient, mailbox: Mailbox) -> str:
    """Register, let the worker send the link, activate, log in; the access token."""
    assert (
        client.post("/auth/register", json={"email": EMAIL, "password": PASSWORD}).status_code
        == 201
    )
    run_worker(app)
    activation = client.post("/auth/activate", json={"token": mailbox.last_token(EMAIL)})
    assert activation.status_code == 200
    response = login(client, EMAIL)
    assert response.status_code == 200
    return str(response.json["access_token"])


def test_the_avatar_object_is_deleted_with_the_account(uploader: Uploader) -> None:
    """Without Redis the job runs in-process right after the commit, on either storage."""
    assert uploader.put(image_bytes("PNG")).status_code == 200
    key = only_key(uploader)
    url = uploader.profile()["avatar_url"]
    token = uploader.headers["Authorization"].split()[1]

    assert delete_me(uploader.client, token).status_code == 204

    assert uploader.backend.keys() == set()
    assert uploader.backend.fetch(url).status == 404, key


@dataclass
class StoppableS3:
    """moto's S3 server on a port of its own, which a test stops (storage down: connections
    are refused) and starts again, holding what it held."""

    port: int = field(default_factory=free_port)
    server: ThreadedMotoServer | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        self.server = ThreadedMotoServer(ip_address="127.0.0.1", port=self.port, verbose=False)
        self.server.start()

    def stop(self) -> None:
        if self.server is not None:
            self.server.stop()
            # stop() ends the serving loop but keeps the socket listening: connections would
            # hang until the client's timeout instead of being refused, as by a stopped server.
            self.server._server.server_close()  # type: ignore[union-attr]
            self.server = None


@pytest.fixture
def stoppable_s3(s3_credentials: None) -> Iterator[StoppableS3]:
    s3 = StoppableS3()
    s3.start()
    yield s3
    s3.stop()


def test_storage_down_at_deletion_the_object_goes_once_it_is_back(
    app_factory: Callable[..., Flask], redis_url: str, stoppable_s3: StoppableS3, mailbox: Mailbox
) -> None:
    s3: Any = boto3.client("s3", endpoint_url=stoppable_s3.url)
    bucket = f"avatars-{uuid.uuid4().hex[:16]}"
    s3.create_bucket(Bucket=bucket)
    app = app_factory(REDIS_URL=redis_url, S3_ENDPOINT_URL=stoppable_s3.url, S3_BUCKET=bucket)
    client = app.test_client()
    token = active_user_through_the_worker(app, client, mailbox)
    upload = {"avatar": (io.BytesIO(image_bytes("PNG")), "me.png", "image/png")}
    assert client.put("/auth/me/avatar", data=upload, headers=bearer(token)).status_code == 200

    def stored() -> list[str]:
        return [item["Key"] for item in s3.list_objects_v2(Bucket=bucket).get("Contents", [])]

    assert len(stored()) == 1
    scheduled = ScheduledJobRegistry(queue=get_queue(app))
    with time_machine.travel(datetime.now(UTC), tick=True) as clock:
        stoppable_s3.stop()
        assert delete_me(client, token).status_code == 204  # the account does not wait
        run_worker(app)  # the job meets storage down, and RQ schedules it again
        assert len(scheduled) == 1

        stoppable_s3.start()
        assert len(stored()) == 1
        clock.shift(RETRY_INTERVALS[0] + 1)
        run_worker(app)

    assert stored() == []
    assert len(scheduled) == 0
    assert len(FailedJobRegistry(queue=get_queue(app))) == 0


def test_no_email_reaches_the_address_after_deletion_not_even_one_queued_just_before(
    redis_app: Flask, mailbox: Mailbox
) -> None:
    client = redis_app.test_client()
    token = active_user_through_the_worker(redis_app, client, mailbox)
    assert len(mailbox.to(EMAIL)) == 1  # the activation link
    # A reset link is queued, and its job waits in Redis for the worker.
    assert client.post("/auth/password/forgot", json={"email": EMAIL}).status_code == 202
    assert len(get_queue(redis_app)) == 1

    assert delete_me(client, token).status_code == 204
    run_worker(redis_app)
    with redis_app.app_context(), time_machine.travel(datetime.now(UTC) + timedelta(hours=1)):
        assert sweep_outbox() == 0  # nothing left to send again either
    run_worker(redis_app)

    assert len(mailbox.to(EMAIL)) == 1
    assert len(FailedJobRegistry(queue=get_queue(redis_app))) == 0
