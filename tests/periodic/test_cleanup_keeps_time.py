"""The scheduled cleanup keeps time at any size: batches found through the index on the
column rows age by, a cursor so no batch walks what an earlier one deleted, a time limit it
stops before (handing the rest to a continuation, without runs piling up), and two runs at
once deleting and counting each row once. Rows age on a travelled clock.

The time limit is driven by a fake monotonic clock that moves on by STEP seconds with each
batch that deleted something, so "the time is up after two batches" is exact."""

from __future__ import annotations

import logging
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa
import time_machine
from flask import Flask
from rq.job import Job, JobStatus

from app.core import batches as batches_module
from app.core.batches import Aged, Batches, Position
from app.core.config import ConfigError
from app.core.db import db
from app.core.redis import redis_connection
from app.courier.models import EmailOutbox
from app.courier.outbox import KEEP_FINISHED, sweep_outbox
from app.courier.queue import get_queue
from app.identity.models import GroupName, User, UserProfile
from app.identity.users import get_group
from app.periodic.cleanup import CONTINUATION_JOB_IDS, clean_up, delete_expired_tokens
from app.periodic.scheduler import CLEANUP_JOB_ID, make_scheduler
from app.sessions.models import LoginSession
from tests.support.apps import make_app, run_worker, twice_at_once

HOUR = timedelta(hours=1)
STEP = 15.0  # fake seconds a batch that deleted rows takes


# --- rows ---------------------------------------------------------------------------------


def make_user(app: Flask) -> int:
    with app.app_context():
        user = User(
            email=f"{secrets.token_hex(6)}@example.com",
            password_hash="not-a-hash",
            group=get_group(GroupName.USER),
            profile=UserProfile(),
        )
        db.session.add(user)
        db.session.commit()
        return int(user.id)


def make_logins(
    app: Flask, *, expired: int, live: int, same_end: bool = False
) -> dict[str, list[int]]:
    """Logins (each row holds its refresh token) made now, interleaved by id (a live row
    before each expired one, as in production): the expired ones end within the hour, each a
    second after the one before (all at once with `same_end`), the live ones in a week.
    Returns the ids of the expired and the live logins."""
    user_id = make_user(app)
    now = datetime.now(UTC)
    ids: dict[str, list[int]] = {"expired": [], "live": []}
    with app.app_context():
        for n in range(max(expired, live) * 2):
            kind = "live" if n % 2 == 0 else "expired"
            if len(ids[kind]) == (live if kind == "live" else expired):
                continue
            ends = (
                now + timedelta(days=7)
                if kind == "live"
                else now
                + timedelta(minutes=10)
                + (timedelta(0) if same_end else n * timedelta(seconds=1))
            )
            login = LoginSession(
                user_id=user_id,
                family_id=secrets.token_hex(16),
                expires_at=ends,
                refresh_hash=secrets.token_hex(32),
            )
            db.session.add(login)
            db.session.flush()
            ids[kind].append(login.id)
        db.session.commit()
    return ids


def left(app: Flask, model: Any) -> list[int]:
    with app.app_context():
        return list(db.session.scalars(sa.select(model.id).order_by(model.id)))


def later() -> Any:
    """Two hours on: what `make_logins` made to expire has expired, the live rows have not."""
    return time_machine.travel(datetime.now(UTC) + 2 * HOUR, tick=True)


@dataclass
class FakeClock:
    """Stands for `time` in app/core/batches.py: its monotonic clock moves on only by STEP
    with each batch that deleted rows; its sleep takes no time."""

    now: float = 0.0

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        pass


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> FakeClock:
    fake = FakeClock()
    monkeypatch.setattr(batches_module, "time", fake)
    delete_batch = Batches._delete_batch

    def timed(self: Batches, aged: Aged, after: Position | None) -> list[Position]:
        rows = delete_batch(self, aged, after)
        if rows:
            fake.now += STEP
        return rows

    monkeypatch.setattr(Batches, "_delete_batch", timed)
    return fake


def deletes_of(statements: list[tuple[str, Any]]) -> Any:
    """Record every DELETE the app runs, with its parameters, into `statements`."""

    def record(conn: Any, cursor: Any, statement: str, parameters: Any, *args: Any) -> None:
        if statement.lstrip().upper().startswith("DELETE"):
            statements.append((statement, parameters))

    return record


# --- batches through the index, from a cursor ---------------------------------------------


def test_each_batch_starts_after_the_last_row_deleted(app: Flask) -> None:
    ids = make_logins(app, expired=7, live=7)
    statements: list[tuple[str, Any]] = []
    record = deletes_of(statements)
    with later(), app.app_context():
        sa.event.listen(db.engine, "after_cursor_execute", record)
        try:
            batches = Batches(batch_size=2, pause_seconds=0)
            deleted = batches.delete(LoginSession, LoginSession.expires_at, up_to=datetime.now(UTC))
        finally:
            sa.event.remove(db.engine, "after_cursor_execute", record)

    assert deleted == 7
    assert left(app, LoginSession) == ids["live"]
    # 2 + 2 + 2 + 1: four batches, each one statement, oldest first by the expiry column.
    assert len(statements) == 4
    first, *rest = [statement for statement, _ in statements]
    assert "ORDER BY sessions.expires_at, sessions.id" in first
    assert "sessions.expires_at >=" not in first  # the first starts at the oldest row
    for statement in rest:  # the others from where the one before stopped
        assert "sessions.expires_at >=" in statement
        assert "sessions.id >" in statement


def test_rows_that_expire_at_the_same_instant_are_each_deleted_once(app: Flask) -> None:
    ids = make_logins(app, expired=7, live=3, same_end=True)
    with later(), app.app_context():
        batches = Batches(batch_size=2, pause_seconds=0)
        now = datetime.now(UTC)
        assert batches.delete(LoginSession, LoginSession.expires_at, up_to=now) == 7
    assert left(app, LoginSession) == ids["live"]


def test_a_continuation_takes_up_after_its_resume_point(app: Flask) -> None:
    """The cursor is the run's only memory: rows before it are not walked again (the next
    fresh run deletes what a continuation leaves behind it)."""
    ids = make_logins(app, expired=6, live=2)
    with later(), app.app_context():
        fourth = db.session.get(LoginSession, ids["expired"][3])
        assert fourth is not None
        resume = {"sessions": Position(fourth.expires_at, fourth.id).to_json()}
        counts = clean_up(datetime.now(UTC), Batches(2, 0, resume=resume))
    assert counts["sessions"] == 2  # the fifth and the sixth
    assert counts["activation"] == 0  # finished before
    assert left(app, LoginSession) == sorted(ids["live"] + ids["expired"][:4])


@pytest.mark.postgres("EXPLAIN is PostgreSQL's")
def test_every_batch_is_served_by_the_index_of_its_column(app: Flask) -> None:
    """Each table's batch, as PostgreSQL plans it with sequential scans priced out (as on a
    big table): its rows are found through the index on the column they age by, the run's
    cursor bounding the index range. (At 3 M rows the plan is an Index Scan on that index
    under an Incremental Sort and LIMIT: README, "Expired rows".)"""
    aged: list[Aged] = []

    class Explaining(Batches):
        def _delete_batch(self, one: Aged, after: Position | None) -> list[Position]:
            aged.append(one)
            return []

    with app.app_context():
        clean_up(datetime.now(UTC), Explaining())
        plans = {}
        with db.engine.connect() as conn:
            conn.execute(sa.text("SET enable_seqscan = off"))
            for one in aged:
                for after in (None, Position(datetime.now(UTC) - HOUR, 1)):
                    # EXPLAIN alone plans the DELETE without running it.
                    batch = one.delete_batch(after, 2000).compile(dialect=conn.dialect)
                    plan = conn.exec_driver_sql(f"EXPLAIN {batch}", batch.params).scalars()
                    plans[(one.name, after is None)] = "\n".join(plan)

    assert {one.name for one in aged} >= {
        "activation_tokens",
        "password_reset_tokens",
        "email_change_tokens",
        "sessions",
        "mfa_challenges",
        "webauthn_challenges",
        "oidc_pending_sign_ins",
        "oidc_sign_in_codes",
        "security_events",
        "email_outbox",
    }
    for one in aged:
        index = f"ix_{one.name}_{one.column.key}"
        assert index in {i.name for i in one.model.__table__.indexes}, f"{index} is missing"
        for fresh in (True, False):
            plan = plans[(one.name, fresh)]
            found_by = [
                line
                for line in plan.splitlines()
                if "Index Cond" in line and f"({one.column.key} <" in line
            ]
            assert index in plan and found_by, plan
            if not fresh:  # the cursor bounds the index range, not a filter
                assert f"({one.column.key} >= " in found_by[0], plan


# --- the time limit -----------------------------------------------------------------------


def test_a_run_stops_at_its_time_limit_and_logs_what_is_left(
    app: Flask, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    ids = make_logins(app, expired=9, live=3)
    with later(), app.app_context(), caplog.at_level(logging.INFO):
        counts = delete_expired_tokens(batch_size=2, pause_seconds=0, time_limit=2 * STEP)

    assert counts["sessions"] == 4  # two batches, then the time was up
    assert len(left(app, LoginSession)) == 3 + 5
    (stop,) = [r for r in caplog.records if r.getMessage() == "cleanup_stopped_at_time_limit"]
    facts: dict[str, Any] = stop.__dict__
    assert facts["left"] == {"sessions": 5}
    # The tables not finished are resumed, the logins after the fourth, the tables not
    # reached from their start; the emailed links were done with.
    resume = facts["resume"]
    assert resume["sessions"][1] == ids["expired"][3]
    assert resume["email_outbox"] is None
    assert "activation_tokens" not in resume
    assert facts["continued_by"] is None  # not a job: nobody to hand over to

    # The next run (here: without a limit) finishes.
    with later(), app.app_context():
        counts = delete_expired_tokens(batch_size=2, pause_seconds=0)
    assert counts["sessions"] == 5
    assert left(app, LoginSession) == ids["live"]


def test_a_run_always_gets_on_even_past_its_time_limit(app: Flask) -> None:
    """A continuation that starts late still deletes one batch: no chain of runs that each
    stop at once."""
    make_logins(app, expired=5, live=1)
    with later(), app.app_context():
        counts = delete_expired_tokens(batch_size=2, pause_seconds=0, time_limit=0)
    assert sum(counts.values()) == 2


def cleanup_app(app_factory: Any, redis_url: str) -> Flask:
    return app_factory(REDIS_URL=redis_url, TOKEN_CLEANUP_TIMEOUT=60)


def test_the_scheduled_job_stops_before_its_timeout_and_continues_at_once(
    app_factory: Any,
    redis_url: str,
    clock: FakeClock,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Through RQ as in production: the scheduler queues the job with its timeout (60 s: a
    run stops 30 s before it, i.e. after two batches of the fake clock); each run enqueues
    its continuation, which the worker runs next, until nothing is left."""
    monkeypatch.setattr(batches_module, "DELETE_BATCH", 2)
    monkeypatch.setattr(batches_module, "DELETE_PAUSE", 0)
    app = cleanup_app(app_factory, redis_url)
    ids = make_logins(app, expired=9, live=3)
    scheduler = make_scheduler(app)
    scheduler.register_all()
    with time_machine.travel(datetime.now(UTC) + 2 * HOUR, tick=True):
        scheduler.enqueue_jobs()
        job = Job.fetch(CLEANUP_JOB_ID, connection=redis_connection(app))
        assert job.timeout == 60
        with caplog.at_level(logging.INFO):
            run_worker(app)

    conn = redis_connection(app)
    first, second = (Job.fetch(i, connection=conn) for i in CONTINUATION_JOB_IDS)
    runs = [Job.fetch(CLEANUP_JOB_ID, connection=conn), first, second]
    assert [run.get_status() for run in runs] == [JobStatus.FINISHED] * 3
    assert [run.return_value()["sessions"] for run in runs] == [4, 4, 1]
    assert first.timeout == second.timeout == 60
    stops = [r for r in caplog.records if r.getMessage() == "cleanup_stopped_at_time_limit"]
    assert [stop.__dict__["continued_by"] for stop in stops] == list(CONTINUATION_JOB_IDS)
    assert left(app, LoginSession) == ids["live"]


def test_no_scheduled_run_is_queued_while_a_continuation_is_pending(
    app_factory: Any, redis_url: str
) -> None:
    app = cleanup_app(app_factory, redis_url)
    scheduler = make_scheduler(app)
    scheduler.register_all()
    queue = get_queue(app)
    queue.enqueue(delete_expired_tokens, job_id=CONTINUATION_JOB_IDS[1], job_timeout=60)

    scheduler.enqueue_jobs()

    assert CLEANUP_JOB_ID not in queue.job_ids  # its slot was skipped
    run_worker(app)
    # The next slot, now that nothing is pending.
    scheduler.connection.zadd(scheduler.scheduled_jobs_key, {CLEANUP_JOB_ID: 0}, xx=True)
    scheduler.enqueue_jobs()
    assert queue.job_ids == [CLEANUP_JOB_ID]


def test_the_cleanup_is_registered_with_its_timeout_and_again_when_it_changes(
    app_factory: Any, redis_url: str
) -> None:
    scheduler = make_scheduler(cleanup_app(app_factory, redis_url))
    assert [p.job_id for p in scheduler.register_all()] == [
        CLEANUP_JOB_ID,
        "accounts-sweep-email-outbox",
    ]
    assert make_scheduler(cleanup_app(app_factory, redis_url)).register_all() == []
    longer = make_scheduler(app_factory(REDIS_URL=redis_url, TOKEN_CLEANUP_TIMEOUT=300))
    assert [p.job_id for p in longer.register_all()] == [CLEANUP_JOB_ID]
    assert Job.fetch(CLEANUP_JOB_ID, connection=longer.connection).timeout == 300


def test_a_cleanup_timeout_that_leaves_no_time_is_refused(database_url: str, tmp_path: Any) -> None:
    with pytest.raises(ConfigError, match="TOKEN_CLEANUP_TIMEOUT"):
        make_app(database_url, tmp_path, 25, TOKEN_CLEANUP_TIMEOUT=45)


# --- two runs at once ---------------------------------------------------------------------


def test_two_runs_at_once_delete_and_count_each_row_once(app: Flask) -> None:
    ids = make_logins(app, expired=60, live=10)
    with later():
        results, errors = twice_at_once(
            app, lambda: delete_expired_tokens(batch_size=4, pause_seconds=0)
        )

    assert errors == []
    assert results[0]["sessions"] + results[1]["sessions"] == 60
    assert left(app, LoginSession) == ids["live"]


@pytest.mark.postgres("row locks are PostgreSQL's; SQLite has one writer at a time")
def test_a_run_never_waits_for_rows_another_holds(app: Flask) -> None:
    """Rows locked by another transaction (another run's batch, a request) are skipped, not
    waited for; the next run deletes them."""
    ids = make_logins(app, expired=6, live=2)
    held = ids["expired"][1:3]
    with later(), app.app_context():
        with db.engine.connect() as other:
            other.execute(sa.text("SET lock_timeout = '5s'"))
            other.execute(
                sa.select(LoginSession.id).where(LoginSession.id.in_(held)).with_for_update()
            ).all()
            counts = delete_expired_tokens(batch_size=2, pause_seconds=0)
            other.rollback()
        assert counts["sessions"] == 4
        assert left(app, LoginSession) == sorted(ids["live"] + held)
        assert delete_expired_tokens(batch_size=2, pause_seconds=0)["sessions"] == 2
    assert left(app, LoginSession) == ids["live"]


# --- the outbox's retention ---------------------------------------------------------------


def test_finished_outbox_rows_go_with_the_cleanup_and_no_longer_with_the_sweep(
    app: Flask,
) -> None:
    now = datetime.now(UTC)
    with app.app_context():
        rows = {
            name: EmailOutbox(
                message_id=f"<{name}@cinema.test>",
                payload=payload,
                created_at=now - age,
                next_attempt_at=now + timedelta(days=30),  # the sweep leaves them alone
                sent_at=now - age if payload is None else None,
            )
            for name, payload, age in (
                ("old_sent", None, KEEP_FINISHED + HOUR),
                ("young_sent", None, KEEP_FINISHED - HOUR),
                ("old_unsent", "still encrypted", KEEP_FINISHED + HOUR),
            )
        }
        db.session.add_all(rows.values())
        db.session.commit()
        ids = {name: row.id for name, row in rows.items()}

        sweep_outbox()
        assert left(app, EmailOutbox) == sorted(ids.values())

        assert delete_expired_tokens()["email_outbox"] == 1
    assert left(app, EmailOutbox) == sorted([ids["young_sent"], ids["old_unsent"]])

    with time_machine.travel(now + 2 * HOUR, tick=True), app.app_context():
        assert delete_expired_tokens()["email_outbox"] == 1  # the young one, grown old
    assert left(app, EmailOutbox) == [ids["old_unsent"]]


def test_the_command_prints_how_many_of_each_kind_it_deleted(app: Flask) -> None:
    make_logins(app, expired=3, live=1)
    with time_machine.travel(datetime.now(UTC) + 2 * HOUR, tick=True):
        result = app.test_cli_runner().invoke(args=["cleanup-tokens"])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert "sessions: 3 deleted" in lines
    assert not any(line.startswith("refresh:") for line in lines)  # a login holds its token
    assert "email_outbox: 0 deleted" in lines
    assert "activation: 0 deleted" in lines
