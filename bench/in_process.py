"""What the benchmark does in its own process with the app's code: seeding users and tokens,
filling the token tables with expired rows, timing argon2 and the strength check, and
watching the job queue.

This is the only bench module that imports `app`, so an app refactor (for instance `db`
moving from `app.db` to `app.core.db`) is fixed here and nowhere else.
"""

from __future__ import annotations

import json
import os
import statistics
import time
from dataclasses import dataclass
from pathlib import Path

import sqlalchemy as sa
from flask import Flask
from rq.registry import StartedJobRegistry

from app import create_app
from app.core.db import db, utcnow
from app.courier.queue import get_queue
from app.identity.models import GroupName, User, UserGroup, UserProfile
from app.passwords.hashing import hash_password, verify_password
from app.passwords.strength import check_password_strength
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
