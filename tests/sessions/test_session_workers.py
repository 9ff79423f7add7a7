"""Checklist item 27 under attack on the deployed shape: a session ended through one gunicorn
worker stops its access token at once on every worker, though each had verified the token
and kept it among its verified tokens (which remember a signature, never that a login lives).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from flask import Flask

from tests.support.gunicorn import gunicorn
from tests.support.http import Accounts, bearer

WORKERS = 2


@pytest.mark.postgres("gunicorn workers share a PostgreSQL database")
def test_an_ended_sessions_access_token_is_refused_at_once_by_every_worker(
    app: Flask, accounts: Accounts, database_url: str, tmp_path: Path
) -> None:
    phone = accounts.active_user("stolen-phone@example.com")
    laptop = accounts.login("stolen-phone@example.com")
    with gunicorn(database_url, tmp_path, workers=WORKERS) as server:
        # Every worker verifies the phone's token and keeps it.
        before = server.until_every_worker_answered(
            WORKERS, "GET", "/auth/me", bearer(phone["access_token"])
        )
        assert {answer.status for answer in before} == {200}

        status, listed = server.call(
            "GET", "/auth/sessions", headers=bearer(laptop["access_token"])
        )
        assert status == 200
        (phone_session,) = [item for item in listed["items"] if not item["current"]]
        status, body = server.call(
            "DELETE",
            f"/auth/sessions/{phone_session['id']}",
            headers=bearer(laptop["access_token"]),
        )
        assert (status, body) == (204, None)

        # From the next request on, every worker refuses it: not one more 200 anywhere.
        after = server.until_every_worker_answered(
            WORKERS, "GET", "/auth/me", bearer(phone["access_token"])
        )
        assert {answer.worker for answer in after} == {answer.worker for answer in before}
        assert {answer.status for answer in after} == {401}
        assert all("revoked" in answer.body["detail"] for answer in after)
        status, _ = server.call("POST", "/auth/refresh", {"refresh_token": phone["refresh_token"]})
        assert status == 401
        still = server.until_every_worker_answered(
            WORKERS, "GET", "/auth/me", bearer(laptop["access_token"])
        )
        assert {answer.status for answer in still} == {200}
