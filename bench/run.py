"""Load benchmark of the accounts service: `make bench` (or `.venv/bin/python bench/run.py`).

README
======

What it does, from a fresh clone after `make install`, in a few minutes:

1. Creates a fresh PostgreSQL database (`accounts_bench`, dropped first if it exists), runs
   `flask db upgrade` and `flask seed-groups`, and flushes Redis database 10.
2. Starts, all bound to 127.0.0.1 on free ports: an aiosmtpd SMTP server inside this process
   (it records when each recipient's message arrives), gunicorn (`gunicorn wsgi:app` with the
   repository's gunicorn.conf.py, WEB_CONCURRENCY=--workers) and one RQ worker
   (`flask --app wsgi rq worker`), with APP_ENV=development, RATELIMIT_ENABLED=false and the
   database, Redis and SMTP server above. It waits for GET /health.
3. Seeds active users directly through the app's models (one argon2 hash, reused), an access
   token per user and a pool of single-use refresh tokens.
4. Times one argon2 verify (`app.auth.passwords.verify_password`) on the idle machine.
5. Drives load with wrk (`bench/load.lua`): GET /health, GET /auth/me, POST /auth/refresh
   (each refresh token sent once) in turn, in --rounds slices each, so that a change in the
   machine's background load skews all three alike; then POST /auth/login (one connection,
   for latency, then 2 x workers connections, for throughput).
6. Registers users at --reg-rate per second for --reg-seconds through POST /auth/register, with
   the worker running, and measures the time from each request to its activation email at
   the SMTP server.
7. Inserts --expired-tokens expired tokens (90 % refresh tokens, 10 % activation tokens of as
   many inactive users) with generate_series, measures GET /auth/me for --duration seconds,
   then runs `flask --app wsgi cleanup-tokens` while measuring GET /auth/me again until the
   cleanup ends.
8. Prints the machine, the figures and each target with PASS or MISS:
   /auth/me >= 0.5 x /health throughput; /auth/refresh >= 0.3 x /health throughput; login p50
   <= 1.5 x one argon2 verify; a 128-character strength check < 50 ms;
   registration -> SMTP p95 <= 1 s; cleanup <= 30 s with
   /auth/me p99 during it <= 2 x before.
9. Stops everything it started (wrk, gunicorn, the worker, the SMTP server), flushes Redis
   database 10 and drops its database, on success, on error and on Ctrl-C. The logs of gunicorn
   and the worker are kept (and their folder printed) when something went wrong, or with
   --keep-logs.

Needs: PostgreSQL on 127.0.0.1:5432 reachable as `postgres` without a password (see
--pg-admin-url), Redis on 127.0.0.1:6379, and wrk (Debian: `apt-get install -y wrk`).
Keep the machine otherwise idle: every figure is CPU-bound. Exit status 0 when every target
passes, 1 when one is missed, 2 when the run could not be done.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import http.client
import json
import os
import platform
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
BIN = ROOT / ".venv" / "bin"
LUA = ROOT / "bench" / "load.lua"
sys.path.insert(0, str(ROOT))

BENCH_PASSWORD = "orbit lantern quietly seventeen"  # one strong password for the seeded users
USER_EMAIL = "bench-{}@example.com"


class BenchError(RuntimeError):
    """The benchmark could not be run; the message says what to do."""


# --- small helpers -----------------------------------------------------------------------------


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", flush=True)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def percentile(values: list[float], pct: float) -> float:
    """Nearest-rank percentile; NaN for no values."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = max(1, min(len(ordered), round(pct / 100 * len(ordered) + 0.5)))
    return ordered[rank - 1]


def machine_description() -> dict[str, str]:
    cpu = "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    memory = "unknown"
    with contextlib.suppress(OSError, ValueError, IndexError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                memory = f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB"
    return {
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "nproc": str(len(os.sched_getaffinity(0))),
        "memory": memory,
        "cpu": cpu,
        "python": platform.python_version(),
        "kernel": platform.release(),
        # Other work on the machine skews every figure; this shows how busy it was at the start.
        "loadavg": " ".join(f"{x:.2f}" for x in os.getloadavg()),
    }


# --- the services the benchmark starts ---------------------------------------------------------


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


@dataclass
class Stack:
    """Everything started, so that `stop()` can undo it whatever happened."""

    log_dir: Path
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    smtp: Any = None
    log_files: list[Any] = field(default_factory=list)

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

    def stop(self) -> None:
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


def http_get(port: int, path: str, timeout: float = 5) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def wait_for_health(port: int, gunicorn: subprocess.Popen[bytes], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if gunicorn.poll() is not None:
            raise BenchError("gunicorn exited during start-up; see gunicorn.log")
        with contextlib.suppress(OSError):
            status, _ = http_get(port, "/health", timeout=2)
            if status == 200:
                return
        time.sleep(0.2)
    raise BenchError(f"GET /health did not answer 200 within {timeout:g} s")


def wait_for_worker(redis_url: str, worker: subprocess.Popen[bytes], timeout: float = 60) -> None:
    from redis import Redis
    from rq import Worker

    conn = Redis.from_url(redis_url)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if worker.poll() is not None:
            raise BenchError("the RQ worker exited during start-up; see worker.log")
        if Worker.all(connection=conn):
            return
        time.sleep(0.2)
    raise BenchError(f"the RQ worker did not register within {timeout:g} s")


# --- database ---------------------------------------------------------------------------------


def recreate_database(admin_url: str, name: str) -> None:
    import psycopg2
    from psycopg2 import sql

    try:
        conn = psycopg2.connect(admin_url)
    except psycopg2.OperationalError as exc:
        raise BenchError(f"cannot reach PostgreSQL at {admin_url}: {exc}") from exc
    conn.autocommit = True
    try:
        with conn.cursor() as cur:
            cur.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )
            cur.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    finally:
        conn.close()


def drop_database(admin_url: str, name: str) -> None:
    import psycopg2
    from psycopg2 import sql

    conn = psycopg2.connect(admin_url)
    conn.autocommit = True
    try:
        with conn.cursor() as cur:
            cur.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )
    finally:
        conn.close()


def database_url(admin_url: str, name: str) -> str:
    base, _, _ = admin_url.rpartition("/")
    return f"{base}/{name}"


# --- seeding, in this process, through the app's models ---------------------------------------


@dataclass
class Seed:
    user_ids: list[int]
    access_file: Path
    refresh_files: list[Path]
    login_file: Path
    password_hash: str
    seconds: float


def seed(app: Any, users: int, refresh_tokens: int, work_dir: Path, slices: int) -> Seed:
    import sqlalchemy as sa

    from app.auth.passwords import hash_password
    from app.auth.tokens import issue_token_pair
    from app.db import db
    from app.models import GroupName, User, UserGroup, UserProfile

    started = time.perf_counter()
    with app.app_context():
        group = db.session.scalar(sa.select(UserGroup).where(UserGroup.name == GroupName.USER))
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
    # One file per wrk run, as every run starts its file from the top.
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


def insert_expired_tokens(
    app: Any, total: int, user_ids: list[int], password_hash: str
) -> dict[str, Any]:
    """Fill the token tables with `total` expired rows, the way months of traffic would:
    90 % rotated-out refresh tokens of the seeded users, 10 % activation tokens of accounts
    that were never activated."""
    import sqlalchemy as sa

    from app.db import db
    from app.models import GroupName, UserGroup

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
                "INSERT INTO refresh_tokens"
                " (jti, user_id, family_id, expires_at, created_at, used_at, revoked_at)"
                " SELECT md5('jti' || g), (:ids)[1 + g % :users], md5('family' || (g / 4)),"
                "        now() - (g % 10000) * interval '1 minute' - interval '1 minute',"
                "        now() - interval '8 days',"
                "        CASE WHEN g % 4 <> 3 THEN now() - interval '8 days' END,"
                "        CASE WHEN g % 20 = 0 THEN now() - interval '8 days' END"
                " FROM generate_series(1, :n) AS g"
            ),
            {"ids": user_ids, "users": len(user_ids), "n": refresh},
        )
        db.session.commit()
        inserted = time.perf_counter() - started
        # What autovacuum would have done long before a table grew to this size.
        with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(sa.text("ANALYZE users, activation_tokens, refresh_tokens"))
        db.session.remove()
    return {"activation": activation, "refresh": refresh, "insert_s": inserted}


def time_argon2_verify(password_hash: str, rounds: int = 7) -> float:
    from app.auth.passwords import verify_password

    verify_password(password_hash, BENCH_PASSWORD)  # warm-up
    timings = []
    for _ in range(rounds):
        started = time.perf_counter()
        if not verify_password(password_hash, BENCH_PASSWORD):
            raise BenchError("verify_password refused the seeded password")
        timings.append(time.perf_counter() - started)
    return statistics.median(timings)


def time_strength_check(rounds: int = 7) -> float:
    """The contract: checking a 128-character password takes well under 50 ms."""
    from app.auth.passwords import check_password_strength

    password = ("Zq8 vortex ember kayak lagoon thistle saffron meteor quilt " * 3)[:128]
    check_password_strength(password, "bench@example.com")  # zxcvbn loads its lists once
    timings = []
    for _ in range(rounds):
        started = time.perf_counter()
        check_password_strength(password, "bench@example.com")
        timings.append(time.perf_counter() - started)
    return statistics.median(timings)


# --- load: wrk --------------------------------------------------------------------------------


@dataclass
class LoadResult:
    name: str
    connections: int
    requests: int
    seconds: float
    errors: int
    p50_ms: float
    p99_ms: float

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0


def wrk_command(
    port: int,
    method: str,
    path: str,
    kind: str,
    lines: Path | None,
    seconds: float,
    connections: int,
    threads: int,
) -> list[str]:
    return [
        "wrk",
        f"-t{threads}",
        f"-c{connections}",
        f"-d{max(1, round(seconds))}s",
        "--timeout",
        "10s",
        "-s",
        str(LUA),
        f"http://127.0.0.1:{port}",
        "--",
        method,
        path,
        kind,
        str(lines) if lines else "-",
        str(threads),
    ]


def parse_wrk(name: str, connections: int, output: str) -> LoadResult:
    for line in output.splitlines():
        if line.startswith("BENCH_JSON "):
            data = json.loads(line.removeprefix("BENCH_JSON "))
            errors = sum(
                data[k]
                for k in (
                    "status_errors",
                    "connect_errors",
                    "read_errors",
                    "write_errors",
                    "timeouts",
                )
            )
            return LoadResult(
                name=name,
                connections=connections,
                requests=data["requests"],
                seconds=data["duration_us"] / 1e6,
                errors=errors,
                p50_ms=data["p50_us"] / 1000,
                p99_ms=data["p99_us"] / 1000,
            )
    raise BenchError(f"wrk printed no result for {name}:\n{output}")


def run_wrk(
    name: str,
    port: int,
    method: str,
    path: str,
    kind: str = "none",
    lines: Path | None = None,
    seconds: float = 10,
    connections: int = 8,
    threads: int = 2,
) -> LoadResult:
    threads = min(threads, connections)
    log(f"wrk {name}: {connections} connections, {seconds:g} s")
    cmd = wrk_command(port, method, path, kind, lines, seconds, connections, threads)
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 60, check=False)
    if result.returncode != 0:
        raise BenchError(f"wrk failed for {name}:\n{result.stdout}{result.stderr}")
    outcome = parse_wrk(name, connections, result.stdout)
    log(
        f"  {outcome.rps:.0f} req/s, p50 {outcome.p50_ms:.1f} ms, p99 {outcome.p99_ms:.1f} ms, "
        f"{outcome.errors} errors"
    )
    return outcome


def run_interleaved(
    specs: dict[str, tuple[str, str, str, str, Path | list[Path] | None]],
    port: int,
    seconds: float,
    connections: int,
    rounds: int,
) -> dict[str, LoadResult]:
    """Run each load in turn, `rounds` times, and merge: a change in the machine's background
    load then hits every endpoint alike, so the ratios between them stay fair. Requests and
    seconds are summed; p50 is the median of the slices' p50 and p99 the worst slice's p99."""
    slices: dict[str, list[LoadResult]] = {key: [] for key in specs}
    for round_ in range(rounds):
        for key, (name, method, path, kind, lines) in specs.items():
            # A list gives each round its own file (single-use tokens).
            file = lines[round_] if isinstance(lines, list) else lines
            slices[key].append(
                run_wrk(name, port, method, path, kind, file, seconds / rounds, connections)
            )
    return {
        key: LoadResult(
            name=results[0].name,
            connections=connections,
            requests=sum(r.requests for r in results),
            seconds=sum(r.seconds for r in results),
            errors=sum(r.errors for r in results),
            p50_ms=statistics.median(r.p50_ms for r in results),
            p99_ms=max(r.p99_ms for r in results),
        )
        for key, results in slices.items()
    }


@contextlib.contextmanager
def wrk_in_background(
    name: str,
    port: int,
    method: str,
    path: str,
    kind: str,
    lines: Path,
    connections: int,
    threads: int,
    limit: float,
    results: list[LoadResult],
) -> Iterator[None]:
    """wrk for as long as the block runs (at most `limit` seconds); SIGINT makes it report."""
    threads = min(threads, connections)
    cmd = wrk_command(port, method, path, kind, lines, limit, connections, threads)
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        yield
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
        try:
            output, _ = proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            output, _ = proc.communicate()
    results.append(parse_wrk(name, connections, output))


# --- load: registrations, to the email at the SMTP server -------------------------------------


@dataclass
class RegistrationResult:
    sent: int
    created: int
    http_p50_ms: float
    http_p95_ms: float
    emails: int
    email_p50_s: float
    email_p95_s: float
    email_max_s: float
    served_per_s: float
    queue_p50_s: float
    queue_p95_s: float


def register_load(
    port: int, rate: float, seconds: float, smtp: ArrivalHandler
) -> RegistrationResult:
    """Open-loop: request i is sent at start + i / rate whatever the earlier ones do, so a slow
    server shows up as latency instead of as a lower request rate."""
    count = max(1, round(rate * seconds))
    start = time.monotonic() + 0.5
    run_id = int(time.time())

    def one(i: int) -> tuple[str, float, float, int]:
        time.sleep(max(0.0, start + i / rate - time.monotonic()))
        email = f"reg-{run_id}-{i}@example.com"
        body = json.dumps({"email": email, "password": f"violet harbour {i} tangerine ledger"})
        sent = time.monotonic()
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        try:
            conn.request("POST", "/auth/register", body, {"Content-Type": "application/json"})
            response = conn.getresponse()
            response.read()
            status = response.status
        except OSError:
            status = 0
        finally:
            conn.close()
        return email, sent, time.monotonic(), status

    log(f"registrations: {count} at {rate:g}/s, each followed to its email")
    with ThreadPoolExecutor(max_workers=min(count, 256)) as pool:
        outcomes = list(pool.map(one, range(count)))
    created = [(email, sent, done) for email, sent, done, status in outcomes if status == 201]
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if all(smtp.first_arrival(email) is not None for email, _, _ in created):
            break
        time.sleep(0.1)
    http_latency = [done - sent for _, sent, done in created]
    arrivals = [(sent, done, smtp.first_arrival(email)) for email, sent, done in created]
    email_latency = [arrival - sent for sent, _, arrival in arrivals if arrival is not None]
    # From the 201 to the email: the RQ worker and SMTP alone, without the web tier's queue.
    after_response = [arrival - done for _, done, arrival in arrivals if arrival is not None]
    span = max((done for _, _, done in created), default=start) - start
    return RegistrationResult(
        sent=count,
        created=len(created),
        http_p50_ms=percentile(http_latency, 50) * 1000,
        http_p95_ms=percentile(http_latency, 95) * 1000,
        emails=len(email_latency),
        email_p50_s=percentile(email_latency, 50),
        email_p95_s=percentile(email_latency, 95),
        email_max_s=max(email_latency, default=float("nan")),
        served_per_s=len(created) / span if span > 0 else float("nan"),
        queue_p50_s=percentile(after_response, 50),
        queue_p95_s=percentile(after_response, 95),
    )


# --- report -----------------------------------------------------------------------------------


@dataclass
class Target:
    name: str
    measured: str
    goal: str
    passed: bool


def report(
    machine: dict[str, str],
    settings: dict[str, Any],
    loads: dict[str, LoadResult],
    argon2_s: float,
    strength_s: float,
    registration: RegistrationResult,
    cleanup: dict[str, Any],
) -> list[Target]:
    health, me, refresh = loads["health"], loads["me"], loads["refresh"]
    login1, me_before, me_during = loads["login_c1"], loads["me_before"], loads["me_during"]
    targets = [
        Target(
            "/auth/me throughput >= 0.5 x /health",
            f"{me.rps:.0f} / {health.rps:.0f} = {me.rps / health.rps:.2f} x",
            ">= 0.50 x",
            me.rps >= 0.5 * health.rps,
        ),
        Target(
            "/auth/refresh throughput >= 0.3 x /health",
            f"{refresh.rps:.0f} / {health.rps:.0f} = {refresh.rps / health.rps:.2f} x",
            ">= 0.30 x",
            refresh.rps >= 0.3 * health.rps,
        ),
        Target(
            "login p50 <= 1.5 x one argon2 verify",
            f"{login1.p50_ms:.0f} ms / {argon2_s * 1000:.0f} ms = "
            f"{login1.p50_ms / (argon2_s * 1000):.2f} x",
            "<= 1.50 x",
            login1.p50_ms <= 1.5 * argon2_s * 1000,
        ),
        Target(
            "128-character password strength check < 50 ms",
            f"{strength_s * 1000:.1f} ms (median of 7)",
            "< 50 ms",
            strength_s < 0.05,
        ),
        Target(
            "registration -> SMTP p95 <= 1 s",
            f"{registration.email_p95_s:.2f} s ({registration.emails}/{registration.sent} emails)",
            "<= 1.00 s, every email",
            registration.email_p95_s <= 1.0 and registration.emails == registration.sent,
        ),
        Target(
            "cleanup of expired tokens <= 30 s",
            f"{cleanup['seconds']:.1f} s for {cleanup['deleted']:,} rows",
            "<= 30 s",
            cleanup["seconds"] <= 30 and cleanup["deleted"] >= cleanup["expected"],
        ),
        Target(
            "/auth/me p99 during cleanup <= 2 x before",
            f"{me_during.p99_ms:.1f} ms / {me_before.p99_ms:.1f} ms = "
            f"{me_during.p99_ms / me_before.p99_ms:.2f} x",
            "<= 2.00 x",
            me_during.p99_ms <= 2 * me_before.p99_ms,
        ),
    ]

    lines = ["", "Machine: " + ", ".join(f"{k} {v}" for k, v in machine.items())]
    lines.append("Settings: " + ", ".join(f"{k} {v}" for k, v in settings.items()))
    lines += ["", "| load | connections | requests | req/s | p50 ms | p99 ms | errors |"]
    lines.append("|---|---:|---:|---:|---:|---:|---:|")
    for result in loads.values():
        lines.append(
            f"| {result.name} | {result.connections} | {result.requests} | {result.rps:.0f} | "
            f"{result.p50_ms:.1f} | {result.p99_ms:.1f} | {result.errors} |"
        )
    lines += ["", "| other figure | value |", "|---|---|"]
    lines.append(f"| one argon2 verify (median of 7, no bench load) | {argon2_s * 1000:.0f} ms |")
    lines.append(
        f"| registrations sent / 201 | {registration.sent} / {registration.created} "
        f"at {settings['reg_rate']}/s; served {registration.served_per_s:.1f}/s |"
    )
    lines.append(
        f"| POST /auth/register latency p50 / p95 | {registration.http_p50_ms:.0f} ms / "
        f"{registration.http_p95_ms:.0f} ms |"
    )
    lines.append(
        f"| registration -> email at SMTP p50 / p95 / max | {registration.email_p50_s:.2f} s / "
        f"{registration.email_p95_s:.2f} s / {registration.email_max_s:.2f} s "
        f"({registration.emails} emails) |"
    )
    lines.append(
        f"| 201 response -> email at SMTP (worker + SMTP only) p50 / p95 | "
        f"{registration.queue_p50_s:.2f} s / {registration.queue_p95_s:.2f} s |"
    )
    lines.append(
        f"| expired tokens inserted (generate_series) | {cleanup['expected']:,} in "
        f"{cleanup['insert_s']:.1f} s |"
    )
    lines.append(
        f"| cleanup-tokens wall time (incl. CLI start) | {cleanup['seconds']:.1f} s: "
        f"{cleanup['output']} |"
    )
    lines += ["", "| target | measured | goal | result |", "|---|---|---|---|"]
    for target in targets:
        verdict = "PASS" if target.passed else "MISS"
        lines.append(f"| {target.name} | {target.measured} | {target.goal} | {verdict} |")
    print("\n".join(lines), flush=True)
    return targets


# --- the run ----------------------------------------------------------------------------------


def check_tools() -> None:
    if shutil.which("wrk") is None:
        raise BenchError(
            "wrk is not installed. On Debian or Ubuntu: `sudo apt-get install -y wrk` "
            "(https://github.com/wg/wrk), then run `make bench` again."
        )
    for tool in ("gunicorn", "flask", "python"):
        if not (BIN / tool).exists():
            raise BenchError(f"{BIN / tool} is missing; run `make install` first.")
    try:
        import aiosmtpd  # noqa: F401
    except ImportError as exc:
        raise BenchError("aiosmtpd is missing from .venv; run `make install` first.") from exc


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n", 1)[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--workers", type=int, default=2, help="gunicorn workers (WEB_CONCURRENCY)")
    parser.add_argument("--duration", type=float, default=10, help="seconds per wrk run")
    parser.add_argument("--connections", type=int, default=8, help="wrk connections")
    parser.add_argument(
        "--rounds", type=int, default=3, help="slices of /health, /auth/me, /auth/refresh, in turn"
    )
    parser.add_argument("--users", type=int, default=200, help="seeded active users")
    parser.add_argument("--reg-rate", type=float, default=20, help="registrations per second")
    parser.add_argument("--reg-seconds", type=float, default=10, help="seconds of registrations")
    parser.add_argument("--expired-tokens", type=int, default=1_000_000)
    parser.add_argument(
        "--pg-admin-url",
        default="postgresql://postgres@127.0.0.1:5432/postgres",
        help="a database to connect to for DROP/CREATE DATABASE",
    )
    parser.add_argument("--db-name", default="accounts_bench")
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/10")
    parser.add_argument("--keep-logs", action="store_true")
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    return parser.parse_args(argv)


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    check_tools()
    # SIGTERM unwinds like Ctrl-C, so the finally blocks below still clean up.
    signal.signal(signal.SIGTERM, _interrupt)
    machine = machine_description()
    log_dir = Path(tempfile.mkdtemp(prefix="accounts-bench-"))
    stack = Stack(log_dir)
    db_url = database_url(args.pg_admin_url, args.db_name)
    failed = True
    database_created = False
    app: Any = None
    from redis import Redis

    redis = Redis.from_url(args.redis_url)
    try:
        log(f"fresh database {args.db_name}, Redis {args.redis_url} flushed; logs in {log_dir}")
        recreate_database(args.pg_admin_url, args.db_name)
        database_created = True
        redis.flushdb()

        from aiosmtpd.controller import Controller

        smtp_handler = ArrivalHandler()
        smtp_port = free_port()
        stack.smtp = Controller(smtp_handler, hostname="127.0.0.1", port=smtp_port)
        stack.smtp.start()

        web_port = free_port()
        env = {
            **os.environ,
            "APP_ENV": "development",
            "DATABASE_URL": db_url,
            "REDIS_URL": args.redis_url,
            "MAIL_SERVER": "127.0.0.1",
            "MAIL_PORT": str(smtp_port),
            "MAIL_USE_TLS": "false",
            "MAIL_USE_SSL": "false",
            "RATELIMIT_ENABLED": "false",
            "WEB_CONCURRENCY": str(args.workers),
            "GUNICORN_BIND": f"127.0.0.1:{web_port}",
            "FLASK_APP": "wsgi",
        }
        for name in ("S3_ENDPOINT_URL", "S3_BUCKET", "MAIL_USERNAME", "MAIL_PASSWORD"):
            env.pop(name, None)
        run_cli(["db", "upgrade"], env)
        run_cli(["seed-groups"], env)

        gunicorn = stack.start(
            "gunicorn",
            [
                str(BIN / "gunicorn"),
                "wsgi:app",
                "--bind",
                f"127.0.0.1:{web_port}",
                "--workers",
                str(args.workers),
            ],
            env,
        )
        worker = stack.start("worker", [str(BIN / "flask"), "--app", "wsgi", "rq", "worker"], env)
        wait_for_health(web_port, gunicorn)
        wait_for_worker(args.redis_url, worker)
        log(
            f"gunicorn on 127.0.0.1:{web_port} ({args.workers} workers), worker up, "
            f"SMTP on 127.0.0.1:{smtp_port}"
        )

        # The app in this process, on the same database, for seeding only.
        os.environ.update({k: env[k] for k in ("APP_ENV", "DATABASE_URL", "REDIS_URL")})
        from app import create_app

        # Seeding inserts up to a million rows in one statement: no 5 s statement limit.
        app = create_app({"DATABASE_STATEMENT_TIMEOUT": 0})
        refresh_pool = max(2000, int(args.duration * 1500))
        seeded = seed(app, args.users, refresh_pool, log_dir, args.rounds)
        log(f"seeded {args.users} users, {refresh_pool} refresh tokens in {seeded.seconds:.1f} s")

        argon2_s = time_argon2_verify(seeded.password_hash)
        log(f"one argon2 verify: {argon2_s * 1000:.0f} ms")
        strength_s = time_strength_check()
        log(f"128-character strength check: {strength_s * 1000:.1f} ms")

        c, d, w = args.connections, args.duration, args.workers
        loads: dict[str, LoadResult] = {}
        loads.update(
            run_interleaved(
                {
                    "health": ("GET /health", "GET", "/health", "none", None),
                    "me": ("GET /auth/me", "GET", "/auth/me", "bearer", seeded.access_file),
                    "refresh": (
                        "POST /auth/refresh",
                        "POST",
                        "/auth/refresh",
                        "once",
                        seeded.refresh_files,
                    ),
                },
                web_port,
                d,
                c,
                args.rounds,
            )
        )
        loads["login_c1"] = run_wrk(
            "POST /auth/login (latency)",
            web_port,
            "POST",
            "/auth/login",
            "body",
            seeded.login_file,
            d,
            1,
        )
        loads["login"] = run_wrk(
            "POST /auth/login (throughput)",
            web_port,
            "POST",
            "/auth/login",
            "body",
            seeded.login_file,
            d,
            2 * w,
        )

        registration = register_load(web_port, args.reg_rate, args.reg_seconds, smtp_handler)
        log(
            f"  {registration.created}/{registration.sent} created, {registration.emails} emails, "
            f"p50 {registration.email_p50_s:.2f} s, p95 {registration.email_p95_s:.2f} s"
        )

        log(f"inserting {args.expired_tokens:,} expired tokens")
        inserted = insert_expired_tokens(
            app, args.expired_tokens, seeded.user_ids, seeded.password_hash
        )
        log(f"  inserted in {inserted['insert_s']:.1f} s")
        loads["me_before"] = run_wrk(
            "GET /auth/me before cleanup",
            web_port,
            "GET",
            "/auth/me",
            "bearer",
            seeded.access_file,
            d,
            c,
        )
        during: list[LoadResult] = []
        log("cleanup-tokens, with GET /auth/me load until it ends")
        with wrk_in_background(
            "GET /auth/me during cleanup",
            web_port,
            "GET",
            "/auth/me",
            "bearer",
            seeded.access_file,
            c,
            2,
            120,
            during,
        ):
            time.sleep(1)  # wrk connected and running before the cleanup starts
            started = time.perf_counter()
            output = run_cli(["cleanup-tokens"], env, timeout=110)
            cleanup_s = time.perf_counter() - started
        loads["me_during"] = during[0]
        deleted = sum(
            int(line.split(":")[1].split()[0]) for line in output.splitlines() if ":" in line
        )
        cleanup = {
            "seconds": cleanup_s,
            "deleted": deleted,
            "expected": args.expired_tokens,
            "insert_s": inserted["insert_s"],
            "output": "; ".join(output.strip().splitlines()),
        }
        log(f"  cleanup took {cleanup_s:.1f} s: {cleanup['output']}")

        settings = {
            "workers": w,
            "wrk_connections": c,
            "seconds_per_run": d,
            "rounds": args.rounds,
            "reg_rate": args.reg_rate,
            "reg_seconds": args.reg_seconds,
        }
        targets = report(machine, settings, loads, argon2_s, strength_s, registration, cleanup)
        if args.json:
            args.json.write_text(
                json.dumps(
                    {
                        "machine": machine,
                        "settings": settings,
                        "loads": {k: {**vars(v), "rps": v.rps} for k, v in loads.items()},
                        "argon2_verify_s": argon2_s,
                        "strength_check_s": strength_s,
                        "registration": vars(registration),
                        "cleanup": cleanup,
                        "targets": [vars(t) for t in targets],
                    },
                    indent=2,
                )
            )
        failed = False
        return 0 if all(t.passed for t in targets) else 1
    except BenchError as exc:
        print(f"bench: {exc}", file=sys.stderr)
        return 2
    finally:
        log("stopping gunicorn, the worker and the SMTP server; dropping the database")
        stack.stop()
        if app is not None:
            from app.db import db

            with app.app_context():
                db.engine.dispose()
        with contextlib.suppress(Exception):
            redis.flushdb()
        if database_created:
            try:
                drop_database(args.pg_admin_url, args.db_name)
            except Exception as exc:
                print(f"bench: could not drop database {args.db_name}: {exc}", file=sys.stderr)
        if failed or args.keep_logs:
            print(f"bench: logs kept in {log_dir}", file=sys.stderr)
        else:
            shutil.rmtree(log_dir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
