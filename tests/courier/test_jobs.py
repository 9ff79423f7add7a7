"""Jobs are enqueued after the commit: in-process without Redis, through RQ with it."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from flask import Flask

from app.core.db import db
from app.courier.outbox import queue_email
from tests.support.apps import run_worker
from tests.support.mail import Mailbox


class TestJobsRunAfterCommit:
    def _queue_and(self, app: Flask, finish: str) -> None:
        with app.app_context():
            queue_email("someone@example.com", "Hello", "text", "<p>html</p>")
            getattr(db.session, finish)()

    def test_committed_job_is_sent_in_process(self, app: Flask, mailbox: Mailbox) -> None:
        self._queue_and(app, "commit")
        assert [m["Subject"] for m in mailbox.to("someone@example.com")] == ["Hello"]

    def test_rolled_back_job_is_never_sent(self, app: Flask, mailbox: Mailbox) -> None:
        self._queue_and(app, "rollback")
        with app.app_context():
            db.session.commit()  # a later commit must not send what was rolled back
        assert mailbox.to("someone@example.com") == []

    def test_committed_job_goes_through_rq(self, redis_app: Flask, mailbox: Mailbox) -> None:
        self._queue_and(redis_app, "commit")
        assert mailbox.to("someone@example.com") == []  # queued, not sent by the request
        run_worker(redis_app)
        assert [m["Subject"] for m in mailbox.to("someone@example.com")] == ["Hello"]

    def test_rolled_back_job_never_reaches_rq(self, redis_app: Flask, mailbox: Mailbox) -> None:
        self._queue_and(redis_app, "rollback")
        run_worker(redis_app)
        assert mailbox.to("someone@example.com") == []

    def test_without_mail_server_the_email_is_printed_and_kept(
        self, app_factory: Callable[..., Flask], capsys: pytest.CaptureFixture[str], tmp_path
    ) -> None:
        app = app_factory(MAIL_SERVER=None, MAIL_OUTBOX_DIR=str(tmp_path / "box"))
        self._queue_and(app, "commit")
        assert "Hello" in capsys.readouterr().out
        saved = list((tmp_path / "box").glob("*.eml"))
        assert len(saved) == 1
        assert b"someone@example.com" in saved[0].read_bytes()
