"""The scheduled cleanup at production size, on PostgreSQL, as the scheduler runs it.

    .venv/bin/python bench/cleanup_at_scale.py seed      # once: the template database
    .venv/bin/python bench/cleanup_at_scale.py run refresh_tokens
    .venv/bin/python bench/cleanup_at_scale.py run sessions
    .venv/bin/python bench/cleanup_at_scale.py run both        # 3,000,000 expired rows
    .venv/bin/python bench/cleanup_at_scale.py drop      # both databases

`seed` migrates a database of its own (`accounts_scratch_cleanup_seed`) with `flask db
upgrade` and fills it with INSERT … SELECT generate_series: 1,000,000 users, 3,000,000
refresh tokens and 3,000,000 login records (`sessions`), half of each expired. Ids are
interleaved (even ids expired, odd ids live), so every expired row has live rows before it in
the primary key, as in production, where a login's tokens expire at its absolute end and not
in the order they were made. The expired rows spread over the last week.

`run TABLE` copies the template into `accounts_scratch_cleanup` (CREATE DATABASE … TEMPLATE),
empties the other of the two big tables (`both` keeps both), and has the job run as it runs
in production: the periodic scheduler registers and enqueues it (with its job timeout) into
a Redis database of the run's own, and a real `flask rq worker --burst` process runs it, and
every continuation it enqueues, until the queue is empty. It prints the wall time, what
each job deleted, and how many expired rows are left. `--code DIR` runs another checkout's
code against the same data (the figure before a change); `--time-limit` sets
TOKEN_CLEANUP_TIMEOUT.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

import psycopg2
import redis

ROOT = Path(__file__).resolve().parent.parent
SERVER = os.environ.get("BENCH_PG", "postgresql://postgres@127.0.0.1:5432")
SEED_DB = "accounts_scratch_cleanup_seed"
RUN_DB = "accounts_scratch_cleanup"
REDIS_SERVER = os.environ.get("BENCH_REDIS", "redis://127.0.0.1:6379")
USERS = 1_000_000
ROWS = 3_000_000
BIG_TABLES = ("refresh_tokens", "sessions")


def log(message: str) -> None:
    print(f"[cleanup {time.strftime('%H:%M:%S')}] {message}", flush=True)


def server_command(statement: str) -> None:
    """CREATE or DROP DATABASE: outside any transaction."""
    conn = psycopg2.connect(f"{SERVER}/postgres")
    conn.autocommit = True
    try:
        with conn.cursor() as cur:
            cur.execute(statement)
    finally:
        conn.close()


def drop(name: str) -> None:
    server_command(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def flask(code: Path, env: dict[str, str], *args: str, **kwargs: object) -> None:
    subprocess.run([str(ROOT / ".venv/bin/flask"), *args], cwd=code, env=env, check=True, **kwargs)


def app_env(database: str, redis_url: str | None = None, **extra: str) -> dict[str, str]:
    env = {
        **os.environ,
        "FLASK_APP": "wsgi",
        "FLASK_SKIP_DOTENV": "1",
        "APP_ENV": "development",
        "DATABASE_URL": f"{SERVER}/{database}",
        **extra,
    }
    env.pop("REDIS_URL", None)
    if redis_url:
        env["REDIS_URL"] = redis_url
    return env


SEED = """
INSERT INTO users (email, password_hash, is_active, mfa_enabled, group_id, created_at, updated_at)
SELECT 'user' || g || '@example.com', 'not-a-hash', true, false,
       (SELECT id FROM user_groups WHERE name = 'USER'), now(), now()
FROM generate_series(1, %(users)s) g;

INSERT INTO refresh_tokens (id, token_hash, user_id, family_id, expires_at, created_at)
SELECT g, md5('t' || g) || md5('u' || g), (SELECT min(id) FROM users) + g %% %(users)s,
       md5('f' || g),
       CASE WHEN g %% 2 = 0 THEN now() - interval '1 hour' - (%(rows)s - g) * interval '200 ms'
            ELSE now() + interval '1 hour' + g * interval '200 ms' END,
       now() - interval '8 days'
FROM generate_series(1, %(rows)s) g;
SELECT setval(pg_get_serial_sequence('refresh_tokens', 'id'), %(rows)s);

INSERT INTO sessions (id, user_id, family_id, created_at, last_used_at, expires_at,
                      user_agent, ip)
SELECT g, (SELECT min(id) FROM users) + g %% %(users)s, md5('f' || g),
       now() - interval '8 days', now() - interval '1 day',
       CASE WHEN g %% 2 = 0 THEN now() - interval '1 hour' - (%(rows)s - g) * interval '200 ms'
            ELSE now() + interval '1 hour' + g * interval '200 ms' END,
       'Mozilla/5.0 (X11; Linux x86_64) Firefox/140.0', '203.0.113.7'
FROM generate_series(1, %(rows)s) g;
SELECT setval(pg_get_serial_sequence('sessions', 'id'), %(rows)s);
"""


def seed() -> None:
    drop(SEED_DB)
    server_command(f'CREATE DATABASE "{SEED_DB}"')
    env = app_env(SEED_DB)
    flask(ROOT, env, "db", "upgrade")
    flask(ROOT, env, "seed-groups")
    started = time.monotonic()
    with psycopg2.connect(f"{SERVER}/{SEED_DB}") as conn, conn.cursor() as cur:
        cur.execute(SEED, {"users": USERS, "rows": ROWS})
    log(f"seeded in {time.monotonic() - started:.0f} s")
    conn = psycopg2.connect(f"{SERVER}/{SEED_DB}")
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute("VACUUM ANALYZE")  # as a table that has lived: visibility map, statistics
        for table in ("users", *BIG_TABLES):
            cur.execute(
                f"SELECT count(*), pg_size_pretty(pg_total_relation_size('{table}')) FROM {table}"  # noqa: S608
            )
            log(f"{table}: {cur.fetchone()}")
    conn.close()


def claim_redis() -> str:
    """An empty Redis database of the run's own (1-14: 0 is everybody's, 15 the tests')."""
    for number in range(14, 0, -1):
        conn = redis.Redis.from_url(f"{REDIS_SERVER}/{number}")
        if conn.set("accounts_scratch_cleanup:claim", 1, nx=True) and conn.dbsize() == 1:
            return f"{REDIS_SERVER}/{number}"
    sys.exit("no empty Redis database among 1-14")


def expired_left(table: str) -> int:
    with psycopg2.connect(f"{SERVER}/{RUN_DB}") as conn, conn.cursor() as cur:
        cur.execute(f"SELECT count(*) FROM {table} WHERE expires_at <= now()")  # noqa: S608
        return int(cur.fetchone()[0])


SCHEDULE = """
from rq.job import Job
from app import create_app
from app.periodic.scheduler import make_scheduler
app = create_app()
scheduler = make_scheduler(app)
scheduler.register_all()
scheduler.enqueue_jobs()
for job in scheduler.get_queue_for_job(Job.fetch("accounts-cleanup-expired-tokens",
        connection=scheduler.connection)).jobs:
    print("queued", job.id, "timeout", job.timeout)
"""

RESULTS = """
import sys
from rq import Queue
from rq.job import Job
from rq.registry import FinishedJobRegistry, FailedJobRegistry
from app import create_app
from app.core.redis import redis_connection
app = create_app()
conn = redis_connection(app)
queue = Queue("accounts", connection=conn)
for registry in (FinishedJobRegistry(queue=queue), FailedJobRegistry(queue=queue)):
    for job_id in registry.get_job_ids():
        job = Job.fetch(job_id, connection=conn)
        if "cleanup" in job.id:
            took = (job.ended_at - job.started_at).total_seconds() if job.ended_at else None
            print(job.id, job.get_status(), f"{took:.1f} s" if took else "",
                  job.return_value() if job.get_status() == "finished" else job.exc_info)
"""


def run(table: str, code: Path, time_limit: int | None) -> None:
    drop(RUN_DB)
    started = time.monotonic()
    server_command(f'CREATE DATABASE "{RUN_DB}" TEMPLATE "{SEED_DB}"')
    tables = BIG_TABLES if table == "both" else (table,)
    for other in BIG_TABLES:
        if other not in tables:
            with psycopg2.connect(f"{SERVER}/{RUN_DB}") as conn, conn.cursor() as cur:
                cur.execute(f"TRUNCATE {other}")
    for one in tables:
        log(
            f"copied the template in {time.monotonic() - started:.0f} s;"
            f" {one}: {expired_left(one):,} expired rows"
        )
    redis_url = claim_redis()
    extra = {} if time_limit is None else {"TOKEN_CLEANUP_TIMEOUT": str(time_limit)}
    env = app_env(RUN_DB, redis_url, **extra)
    try:
        subprocess.run(
            [str(ROOT / ".venv/bin/python"), "-c", SCHEDULE], cwd=code, env=env, check=True
        )
        started = time.monotonic()
        flask(code, env, "rq", "worker", "--burst")
        wall = time.monotonic() - started
        subprocess.run(
            [str(ROOT / ".venv/bin/python"), "-c", RESULTS], cwd=code, env=env, check=True
        )
        left = {one: f"{expired_left(one):,}" for one in tables}
        log(
            f"{table}: worker ran the cleanup in {wall:.1f} s (incl. the worker's start);"
            f" expired rows left: {left}"
        )
    finally:
        redis.Redis.from_url(redis_url).flushdb()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("seed")
    sub.add_parser("drop")
    running = sub.add_parser("run")
    running.add_argument("table", choices=[*BIG_TABLES, "both"])
    running.add_argument("--code", type=Path, default=ROOT, help="the checkout to run")
    running.add_argument("--time-limit", type=int, help="TOKEN_CLEANUP_TIMEOUT")
    args = parser.parse_args()
    if args.command == "seed":
        seed()
    elif args.command == "drop":
        drop(RUN_DB)
        drop(SEED_DB)
    else:
        run(args.table, args.code.resolve(), args.time_limit)


if __name__ == "__main__":
    main()
