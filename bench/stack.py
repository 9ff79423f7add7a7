"""Start and stop what the benchmark measures: a database and a Redis database of the run's
own, an SMTP server in this process, the service under gunicorn with an RQ worker, and the
floor app under the same gunicorn settings."""

from __future__ import annotations

import argparse
import contextlib
import http.client
import os
import secrets
import signal
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlsplit, urlunsplit

import psycopg2
from aiosmtpd.controller import Controller
from psycopg2 import errors, sql
from redis import Redis
from rq import Worker

from bench.common import BIN, ROOT, BenchError, free_port, log
from bench.cpu import Subject

# Redis databases a run may claim: 0 is what `make run` and most tools use by default, and the
# test suite uses 15 (TEST_REDIS_URL).
REDIS_DBS = range(1, 15)

# application_name of each kind of connection, so that CPU is charged to the right subject.
SERVICE_DB_APP = "bench-service"
FLOOR_DB_APP = "bench-floor"
JOBS_DB_APP = "bench-jobs"  # the RQ worker and the flask CLI
SEED_DB_APP = "bench-seed"  # this process


def add_stack_arguments(parser: argparse.ArgumentParser, database_prefix: str) -> None:
    """The options every bench script has for the stack it starts: where PostgreSQL and
    Redis are, the run's database and Redis database, and whether to keep the logs."""
    parser.add_argument(
        "--pg-admin-url",
        default="postgresql://postgres@127.0.0.1:5432/postgres",
        help="a database to connect to for CREATE/DROP DATABASE and pg_stat_activity",
    )
    parser.add_argument(
        "--db-name",
        help=f"the run's database, created and dropped (default {database_prefix}_PID)",
    )
    parser.add_argument(
        "--redis-url", default="redis://127.0.0.1:6379", help="the Redis server (no database)"
    )
    parser.add_argument(
        "--redis-db",
        type=int,
        help="the Redis database to use, if empty (default: the first empty one of 1-14)",
    )
    parser.add_argument("--keep-logs", action="store_true")


def with_path_and_query(url: str, path: str, **query: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path=path, query=urlencode(query)))


class ArrivalHandler:
    """aiosmtpd handler: the monotonic time at which each recipient's messages arrived."""

    def __init__(self) -> None:
        self.arrivals: dict[str, list[float]] = {}
        self.lock = threading.Lock()

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        now = time.monotonic()
        with self.lock:
            for rcpt in envelope.rcpt_tos:
                self.arrivals.setdefault(rcpt.lower(), []).append(now)
        return "250 Message accepted"

    def first_arrival(self, rcpt: str) -> float | None:
        with self.lock:
            times = self.arrivals.get(rcpt)
            return times[0] if times else None


def stop_process_group(name: str, proc: subprocess.Popen[bytes], grace: float = 10) -> None:
    if proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        log(f"{name} ignored SIGTERM for {grace:g} s; killing it")
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=grace)


@dataclass
class Stack:
    """Everything a run creates, so that `stop()` can undo it whatever happened.

    The database and the Redis database are the run's own (`accounts_bench_<pid>` and the
    first empty Redis database, marked with a key under the same name), so a run can never
    wipe what the test suite or another run is using."""

    log_dir: Path
    admin_url: str
    database: str
    run_name: str
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    smtp: Controller | None = None
    log_files: list[Any] = field(default_factory=list)
    database_created: bool = False
    redis: Redis | None = None

    @property
    def redis_claim_key(self) -> str:
        return f"{self.run_name}:claim"

    def database_url(self, application_name: str) -> str:
        return with_path_and_query(
            self.admin_url, f"/{self.database}", application_name=application_name
        )

    def create_database(self) -> None:
        try:
            conn = psycopg2.connect(self.admin_url)
        except psycopg2.OperationalError as exc:
            raise BenchError(f"cannot reach PostgreSQL at {self.admin_url}: {exc}") from exc
        conn.autocommit = True
        try:
            with conn.cursor() as cur:
                cur.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(self.database)))
        except errors.DuplicateDatabase as exc:
            # Not dropped: it may be another run's. A crashed run of ours leaves it behind.
            raise BenchError(
                f"database {self.database} already exists; drop it if no run is using it, "
                "or pick another with --db-name"
            ) from exc
        finally:
            conn.close()
        self.database_created = True

    def drop_database(self) -> None:
        conn = psycopg2.connect(self.admin_url)
        conn.autocommit = True
        try:
            with conn.cursor() as cur:
                cur.execute(
                    sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
                        sql.Identifier(self.database)
                    )
                )
        finally:
            conn.close()
        self.database_created = False

    def claim_redis(self, server_url: str, preferred: int | None) -> str:
        """The URL of an empty Redis database, marked as this run's; raises if none is."""
        candidates = [preferred] if preferred is not None else list(REDIS_DBS)
        for number in candidates:
            url = with_path_and_query(server_url, f"/{number}")
            conn = Redis.from_url(url, socket_connect_timeout=3)
            try:
                claimed = conn.set(self.redis_claim_key, self.run_name, nx=True)
            except Exception as exc:
                raise BenchError(f"cannot reach Redis at {server_url}: {exc}") from exc
            # The marker must be the only key: anything else belongs to someone else.
            if claimed and conn.dbsize() == 1:
                self.redis = conn
                return url
            if claimed:
                conn.delete(self.redis_claim_key)
        raise BenchError(
            f"no empty Redis database among {candidates} at {server_url}; "
            "choose one with --redis-db"
        )

    def release_redis(self) -> None:
        # Flushed only while our marker is still there: if it is gone, the database is no
        # longer known to be ours.
        if (
            self.redis is not None
            and self.redis.get(self.redis_claim_key) == self.run_name.encode()
        ):
            self.redis.flushdb()
        self.redis = None

    def start(self, name: str, cmd: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
        out = (self.log_dir / f"{name}.log").open("wb")
        self.log_files.append(out)
        # A session of its own, so that stopping it also stops its children (gunicorn's workers,
        # RQ's work horses) and nothing else.
        proc = subprocess.Popen(
            cmd, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
        self.processes[name] = proc
        return proc

    def start_smtp(self) -> tuple[ArrivalHandler, int]:
        handler = ArrivalHandler()
        port = free_port()
        self.smtp = Controller(handler, hostname="127.0.0.1", port=port)
        self.smtp.start()
        return handler, port

    def stop(self) -> None:
        """Stop the processes and the SMTP server; the database and Redis stay for now."""
        for name, proc in reversed(list(self.processes.items())):
            stop_process_group(name, proc)
        self.processes.clear()
        if self.smtp is not None:
            with contextlib.suppress(Exception):
                self.smtp.stop()
            self.smtp = None
        for out in self.log_files:
            out.close()
        self.log_files.clear()


def run_cli(args: list[str], env: dict[str, str], timeout: float = 300) -> str:
    """`flask --app wsgi ARGS`; returns stdout, raises with the output when it fails."""
    result = subprocess.run(
        [str(BIN / "flask"), "--app", "wsgi", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if result.returncode != 0:
        raise BenchError(f"flask {' '.join(args)} failed:\n{result.stdout}{result.stderr}")
    return result.stdout


def http_get(
    port: int, path: str, headers: dict[str, str] | None = None, timeout: float = 5
) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("GET", path, headers=headers or {})
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def wait_for_health(
    name: str, port: int, proc: subprocess.Popen[bytes], timeout: float = 60
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise BenchError(f"{name} exited during start-up; see {name}.log")
        with contextlib.suppress(OSError):
            status, _ = http_get(port, "/health", timeout=2)
            if status == 200:
                return
        time.sleep(0.2)
    raise BenchError(f"GET /health of {name} did not answer 200 within {timeout:g} s")


def wait_for_worker(conn: Redis, worker: subprocess.Popen[bytes], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if worker.poll() is not None:
            raise BenchError("the RQ worker exited during start-up; see worker.log")
        if Worker.all(connection=conn):
            return
        time.sleep(0.2)
    raise BenchError(f"the RQ worker did not register within {timeout:g} s")


@dataclass
class Started:
    service: Subject
    floor: Subject
    jobs_env: dict[str, str]  # for `flask --app wsgi …` commands during the run
    seed_env: dict[str, str]  # for the app in this process
    smtp: ArrivalHandler


def start_stack(
    stack: Stack,
    workers: int,
    redis_server: str,
    redis_db: int | None,
    extra_env: dict[str, str] | None = None,
) -> Started:
    """Create the database, claim a Redis database, migrate, and start the SMTP server, the
    service, its RQ worker and the floor; return once each answers. `extra_env` is added to
    every process's environment (bench/scale.py raises a rate limit with it)."""
    stack.create_database()
    redis_url = stack.claim_redis(redis_server, redis_db)
    log(f"database {stack.database}, Redis {redis_url}; logs in {stack.log_dir}")
    smtp, smtp_port = stack.start_smtp()

    base = {
        **os.environ,
        "APP_ENV": "development",
        "REDIS_URL": redis_url,
        "MAIL_SERVER": "127.0.0.1",
        "MAIL_PORT": str(smtp_port),
        "MAIL_USE_TLS": "false",
        "MAIL_USE_SSL": "false",
        "RATELIMIT_ENABLED": "false",
        "WEB_CONCURRENCY": str(workers),
        "FLASK_APP": "wsgi",
        # One issuer for the seeded tokens and the service that checks them: unset, each
        # gunicorn would take it from its own bind (development's default) and refuse the
        # tokens this process signed.
        "PUBLIC_BASE_URL": "http://localhost:8000",
        # A key of the run's own, handed to the service, this process (which signs the seeded
        # tokens) and the floor (which verifies them) alike.
        "JWT_SECRET_KEY": secrets.token_urlsafe(32),
        **(extra_env or {}),
    }
    for name in ("S3_ENDPOINT_URL", "S3_BUCKET", "MAIL_USERNAME", "MAIL_PASSWORD"):
        base.pop(name, None)
    jobs_env = {**base, "DATABASE_URL": stack.database_url(JOBS_DB_APP)}
    run_cli(["db", "upgrade"], jobs_env)
    run_cli(["seed-groups"], jobs_env)
    run_cli(["keys", "ensure"], jobs_env)

    subjects = {}
    # Both under `gunicorn` from the repository root, so both read its gunicorn.conf.py: the
    # same sync workers, worker count, timeout and access log.
    for label, target, db_app in (
        ("service", "wsgi:app", SERVICE_DB_APP),
        ("floor", "bench.floor:app", FLOOR_DB_APP),
    ):
        port = free_port()
        env = {
            **base,
            "DATABASE_URL": stack.database_url(db_app),
            "GUNICORN_BIND": f"127.0.0.1:{port}",
        }
        cmd = [str(BIN / "gunicorn"), target, "--bind", f"127.0.0.1:{port}"]
        proc = stack.start(label, [*cmd, "--workers", str(workers)], env)
        subjects[label] = Subject(label, port, proc.pid, db_app)
    worker = stack.start("worker", [str(BIN / "flask"), "--app", "wsgi", "rq", "worker"], jobs_env)
    for label, subject in subjects.items():
        wait_for_health(label, subject.port, stack.processes[label])
    assert stack.redis is not None  # claimed above
    wait_for_worker(stack.redis, worker)
    log(
        f"service on :{subjects['service'].port}, floor on :{subjects['floor'].port} "
        f"({workers} workers each), RQ worker up, SMTP on :{smtp_port}"
    )
    return Started(
        service=subjects["service"],
        floor=subjects["floor"],
        jobs_env=jobs_env,
        seed_env={
            "APP_ENV": base["APP_ENV"],
            "REDIS_URL": redis_url,
            "JWT_SECRET_KEY": base["JWT_SECRET_KEY"],
            "DATABASE_URL": stack.database_url(SEED_DB_APP),
        },
        smtp=smtp,
    )
