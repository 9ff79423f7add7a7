"""What the benchmark does in its own process with the app's code: seeding users and tokens,
filling the token tables with expired rows, timing argon2 and the strength check, watching
the job queue, and (for bench/scale.py) reading the settings and queueing the scheduled
clean-up the way the scheduler does.

This is the only bench module that imports `app`, so an app refactor (for instance `db`
moving from `app.db` to `app.core.db`) is fixed here and nowhere else.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import statistics
import time
import uuid
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from flask import Flask
from rq import Queue
from rq.job import Job, JobStatus
from rq.registry import StartedJobRegistry

from app import create_app
from app.core.config import INSTANCE_DIR, derive_settings, load_config
from app.core.db import db, utcnow
from app.core.redis import redis_connection
from app.courier.queue import QUEUE_NAME, get_queue
from app.identity.models import GroupName, User, UserGroup, UserProfile
from app.passwords.hashing import hash_password, verify_password
from app.passwords.strength import check_password_strength
from app.periodic.scheduler import CLEANUP_JOB_ID, PeriodicScheduler, periodic_jobs
from app.sessions.refresh_tokens import issue_token_pair
from bench.common import BenchError

BENCH_PASSWORD = "orbit lantern quietly seventeen"  # one strong password for the seeded users
USER_EMAIL = "bench-{}@example.com"
# One address per state forgot and resend must not tell apart; "unknown" has no account.
STATE_EMAIL = "bench-state-{}@example.com"
ACCOUNT_STATES = ("active", "pending", "deactivated", "unknown")


def make_app(env: dict[str, str]) -> Flask:
    """The app on the benchmark's database, Redis and signing key, for seeding only.

    Configured through the same environment variables as gunicorn, so this process signs
    tokens exactly as the service will verify them. Seeding inserts up to a million rows in
    one statement, so the API's statement limit is off here."""
    os.environ.update(env)
    return create_app({"DATABASE_STATEMENT_TIMEOUT": 0})


def dispose(app: Flask) -> None:
    """Close the pooled connections, so the database can be dropped."""
    with app.app_context():
        db.engine.dispose()


@dataclass
class Seed:
    user_ids: list[int]
    access_file: Path
    refresh_files: list[Path]
    login_file: Path
    password_hash: str
    seconds: float


def seed(app: Flask, users: int, refresh_tokens: int, work_dir: Path, slices: int) -> Seed:
    started = time.perf_counter()
    with app.app_context():
        group = db.session.scalar(sa.select(UserGroup).where(UserGroup.name == GroupName.USER))
        # One hash for everyone: hashing 200 passwords would only slow the set-up down.
        password_hash = hash_password(BENCH_PASSWORD)
        accounts = [
            User(
                email=USER_EMAIL.format(i),
                password_hash=password_hash,
                is_active=True,
                group=group,
                profile=UserProfile(first_name="Bench", last_name=f"User {i}"),
            )
            for i in range(users)
        ]
        db.session.add_all(accounts)
        db.session.commit()
        access = [issue_token_pair(user)["access_token"] for user in accounts]
        refresh = [
            issue_token_pair(accounts[i % users])["refresh_token"] for i in range(refresh_tokens)
        ]
        db.session.commit()
        user_ids = [user.id for user in accounts]
        db.session.remove()

    access_file = work_dir / "access_tokens.txt"
    access_file.write_text("\n".join(access) + "\n")
    # One file per wrk run, as every run starts its file from the top and a refresh token
    # works once.
    refresh_files = []
    for k in range(slices):
        path = work_dir / f"refresh_bodies_{k}.txt"
        path.write_text("\n".join(json.dumps({"refresh_token": t}) for t in refresh[k::slices]))
        refresh_files.append(path)
    login_file = work_dir / "login_bodies.txt"
    login_file.write_text(
        "\n".join(
            json.dumps({"email": USER_EMAIL.format(i), "password": BENCH_PASSWORD})
            for i in range(users)
        )
        + "\n"
    )
    return Seed(
        user_ids,
        access_file,
        refresh_files,
        login_file,
        password_hash,
        time.perf_counter() - started,
    )


# The floor's logins (bench/floor.py, POST /refresh): one row per login holding its current
# refresh token's hash, in a table of the floor's own, so the service's schema may change
# under it.
FLOOR_LOGINS = (
    "CREATE TABLE bench_floor_logins ("
    " id bigserial PRIMARY KEY,"
    " user_id integer NOT NULL,"
    " family_id varchar(64) NOT NULL,"
    " token_hash varchar(64) NOT NULL UNIQUE,"
    " generation integer NOT NULL DEFAULT 0,"
    " expires_at timestamptz NOT NULL)"
)


def seed_floor_logins(app: Flask, user_ids: list[int], count: int) -> list[str]:
    """`count` logins of the floor, each with a refresh token that works once; returns them."""
    tokens = [secrets.token_urlsafe(32) for _ in range(count)]
    with app.app_context():
        db.session.execute(sa.text(FLOOR_LOGINS))
        db.session.execute(
            sa.text(
                "INSERT INTO bench_floor_logins (user_id, family_id, token_hash, expires_at)"
                " VALUES (:user_id, :family_id, :token_hash, now() + interval '7 days')"
            ),
            [
                {
                    "user_id": user_ids[i % len(user_ids)],
                    "family_id": uuid.uuid4().hex,
                    "token_hash": hashlib.sha256(token.encode()).hexdigest(),
                }
                for i, token in enumerate(tokens)
            ],
        )
        db.session.commit()
        with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(sa.text("ANALYZE bench_floor_logins"))
        db.session.remove()
    return tokens


def insert_expired_tokens(app: Flask, total: int, user_ids: list[int], password_hash: str) -> float:
    """Fill the token tables with `total` expired rows, the way months of traffic would:
    90 % expired logins of the seeded users (each holds its refresh token), 10 % activation
    tokens of accounts that were never activated. Returns the seconds the inserts took."""
    activation = total // 10
    refresh = total - activation
    started = time.perf_counter()
    with app.app_context():
        group_id = db.session.scalar(
            sa.select(UserGroup.id).where(UserGroup.name == GroupName.USER)
        )
        db.session.execute(
            sa.text(
                "INSERT INTO users"
                " (email, password_hash, is_active, group_id, created_at, updated_at)"
                " SELECT 'dormant-' || g || '@example.com', :hash, false, :group_id,"
                "        now() - interval '40 days', now() - interval '40 days'"
                " FROM generate_series(1, :n) AS g"
            ),
            {"hash": password_hash, "group_id": group_id, "n": activation},
        )
        db.session.execute(
            sa.text(
                "INSERT INTO activation_tokens (user_id, token_hash, expires_at, created_at)"
                " SELECT id, encode(sha256(('activation' || id)::bytea), 'hex'),"
                "        now() - interval '39 days', now() - interval '40 days'"
                " FROM users WHERE email LIKE 'dormant-%'"
            )
        )
        db.session.execute(
            sa.text(
                "INSERT INTO sessions (user_id, family_id, created_at, last_used_at, expires_at,"
                "                      ended_at, refresh_generation, refresh_hash)"
                " SELECT (:ids)[1 + g % :users], md5('family' || g),"
                "        now() - interval '8 days', now() - interval '7 days',"
                "        now() - (g % 10000) * interval '1 minute' - interval '1 minute',"
                "        CASE WHEN g % 20 = 0 THEN now() - interval '8 days' END,"
                "        g % 700, encode(sha256(('refresh' || g)::bytea), 'hex')"
                " FROM generate_series(1, :n) AS g"
            ),
            {"ids": user_ids, "users": len(user_ids), "n": refresh},
        )
        db.session.commit()
        inserted = time.perf_counter() - started
        # What autovacuum would have done long before a table grew to this size.
        with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(sa.text("ANALYZE users, activation_tokens, sessions"))
        db.session.remove()
    return inserted


@dataclass
class Argon2Timing:
    wall_s: float
    cpu_s: float


def time_argon2_verify(password_hash: str, rounds: int = 7) -> Argon2Timing:
    """Median wall and CPU time of one verify on the idle stack. CPU time is what a login's
    CPU per request is compared with: it does not grow when the machine is busy."""
    verify_password(password_hash, BENCH_PASSWORD)  # warm-up
    walls, cpus = [], []
    for _ in range(rounds):
        wall, cpu = time.perf_counter(), time.process_time()
        if not verify_password(password_hash, BENCH_PASSWORD):
            raise BenchError("verify_password refused the seeded password")
        cpus.append(time.process_time() - cpu)
        walls.append(time.perf_counter() - wall)
    return Argon2Timing(statistics.median(walls), statistics.median(cpus))


def time_strength_check(rounds: int = 7) -> float:
    """The contract: checking a 128-character password takes well under 50 ms."""
    password = ("Zq8 vortex ember kayak lagoon thistle saffron meteor quilt " * 3)[:128]
    check_password_strength(password, "bench@example.com")  # zxcvbn loads its lists once
    timings = []
    for _ in range(rounds):
        started = time.perf_counter()
        check_password_strength(password, "bench@example.com")
        timings.append(time.perf_counter() - started)
    return statistics.median(timings)


def seed_account_states(app: Flask) -> dict[str, str]:
    """An active, a never-activated and an admin-deactivated account; returns the address of
    each state, "unknown" included (an address with no account)."""
    with app.app_context():
        group = db.session.scalar(sa.select(UserGroup).where(UserGroup.name == GroupName.USER))
        password_hash = hash_password(BENCH_PASSWORD)
        for state in ("active", "pending", "deactivated"):
            db.session.add(
                User(
                    email=STATE_EMAIL.format(state),
                    password_hash=password_hash,
                    is_active=state == "active",
                    deactivated_at=utcnow() if state == "deactivated" else None,
                    group=group,
                    profile=UserProfile(),
                )
            )
        db.session.commit()
        db.session.remove()
    return {state: STATE_EMAIL.format(state) for state in ACCOUNT_STATES}


def jobs_idle(app: Flask) -> bool:
    """No job waits in the service's queue and none is running."""
    with app.app_context():
        queue = get_queue(app)
        return queue.count == 0 and StartedJobRegistry(queue=queue).count == 0


def queue_emails(app: Flask, tag: str, count: int, batch: int = 500) -> set[bytes]:
    """Record `count` emails the way the use cases do (a row each, its job queued after the
    commit), `batch` to a transaction; return their Message-IDs as the SMTP server sees them."""
    from app.courier.models import EmailOutbox
    from app.courier.outbox import queue_email

    with app.app_context():
        before = db.session.scalar(sa.select(sa.func.coalesce(sa.func.max(EmailOutbox.id), 0)))
        for start in range(0, count, batch):
            for i in range(start, min(count, start + batch)):
                queue_email(f"{tag}-{i}@example.com", "Bench", "plain body", "<p>html body</p>")
            db.session.commit()
        found = db.session.scalars(
            sa.select(EmailOutbox.message_id).where(EmailOutbox.id > before)
        ).all()
    if len(found) != count:
        raise BenchError(f"{count} emails queued, {len(found)} rows found")
    return {message_id.encode() for message_id in found}


# --- bench/scale.py ------------------------------------------------------------------------


def settings(env: dict[str, str]) -> dict[str, Any]:
    """The settings the app would run with in `env`, read as create_app reads them; nothing
    is connected to."""
    return derive_settings(load_config(str(INSTANCE_DIR), env))


def seed_password_hash() -> str:
    """One argon2 hash of BENCH_PASSWORD, as the service stores it, for every seeded user."""
    return hash_password(BENCH_PASSWORD)


@dataclass
class JobState:
    status: str
    timeout: int  # seconds the worker gives it before killing its work horse
    started_at: datetime | None
    ended_at: datetime | None
    result: Any
    error: str | None

    @property
    def done(self) -> bool:
        ended = (JobStatus.FINISHED, JobStatus.FAILED, JobStatus.STOPPED, JobStatus.CANCELED)
        return self.status in {status.value for status in ended}

    @property
    def seconds(self) -> float | None:
        """From the work horse's start to its end, as RQ recorded them."""
        if self.started_at is None or self.ended_at is None:
            return None
        return (self.ended_at - self.started_at).total_seconds()


def enqueue_cleanup_as_scheduled(app: Flask, timeout: float = 30) -> str:
    """Queue the scheduled clean-up exactly as `flask rq scheduler` does: the scheduler's own
    class registers the app's cleanup entry (its function, interval and job options, a job
    timeout included if the schedule sets one) and hands the due job to its queue with its
    `enqueue_job`. Returns the job's id."""
    cleanup = [p for p in periodic_jobs(app) if p.job_id == CLEANUP_JOB_ID]
    scheduler = PeriodicScheduler(cleanup, queue_name=QUEUE_NAME, connection=redis_connection(app))
    scheduler.register(cleanup[0])
    deadline = time.monotonic() + timeout
    # Registered for "now": due at the scheduler's next look, which this is.
    while True:
        scheduler.enqueue_jobs()
        job = Job.fetch(CLEANUP_JOB_ID, connection=scheduler.connection)
        if job.get_status(refresh=True) != JobStatus.SCHEDULED:
            return CLEANUP_JOB_ID
        if time.monotonic() > deadline:
            raise BenchError(f"the scheduler did not queue {CLEANUP_JOB_ID} in {timeout:g} s")
        time.sleep(0.05)


def job_state(app: Flask, job_id: str) -> JobState:
    job = Job.fetch(job_id, connection=redis_connection(app))
    status = job.get_status(refresh=True)
    result = job.return_value() if status == JobStatus.FINISHED else None
    error = None
    if status == JobStatus.FAILED:
        lines = (job.exc_info or "").strip().splitlines()
        error = lines[-1] if lines else "failed"
    return JobState(
        status=str(status.value if status is not None else "unknown"),
        timeout=int(job.timeout or Queue.DEFAULT_TIMEOUT),
        started_at=job.started_at,
        ended_at=job.ended_at,
        result=result,
        error=error,
    )
