"""Email benchmark (issue 24): `make bench` runs it after the load benchmark; alone,
`.venv/bin/python bench/courier.py` (`--help` lists the options).

Three figures, each against its target, on PostgreSQL, Redis, gunicorn, the service's RQ
worker (`flask rq worker`) and an aiosmtpd server in this process:

1. one worker's throughput: emails queued while no worker runs, then one worker started;
   emails a second from the first arrival to the last, and the worker's CPU per email;
2. registration -> email at SMTP p95, registrations offered as fast as the API takes them
   (clients registering back to back), one worker running;
3. the backlog of an SMTP outage: the server stopped for `--outage` seconds, emails queued
   during its first half, none during the second; how long after the server is back the
   last of them arrives.

Each email is checked to arrive exactly once (by Message-ID). Exit status 0 when every target
passes, 1 when one is missed, 2 when the run could not be done. Details: bench/README.md.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

if not __package__:
    # Run as a script: import `bench.…` and `app` from the repository root, and not this
    # module's siblings as top-level modules.
    sys.path[0] = str(Path(__file__).resolve().parent.parent)

from aiosmtpd.controller import Controller
from flask import Flask

from bench import in_process
from bench.common import BIN, BenchError, free_port, log, percentile
from bench.measure import RegistrationResult, register_load
from bench.report import Target, machine_description, registration_target, render_targets
from bench.stack import (
    JOBS_DB_APP,
    SEED_DB_APP,
    SERVICE_DB_APP,
    ArrivalHandler,
    Stack,
    add_stack_arguments,
    run_cli,
    stop_process_group,
    wait_for_health,
    wait_for_worker,
)

THROUGHPUT_GOAL = 100.0  # emails a second, one worker
LATENCY_GOAL = 1.0  # seconds, registration -> SMTP p95
BACKLOG_GOAL = 15.0  # seconds after the SMTP server is back
TICK_S = 1 / os.sysconf("SC_CLK_TCK")
MESSAGE_ID = re.compile(rb"^Message-ID:\s*(\S+)", re.IGNORECASE | re.MULTILINE)


class CountingHandler(ArrivalHandler):
    """ArrivalHandler that also keeps every Message-ID it received and numbers the
    connections that delivered them."""

    def __init__(self) -> None:
        super().__init__()
        self.message_ids: list[bytes] = []
        self.by_id: dict[bytes, float] = {}
        self.connections = 0

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        found = MESSAGE_ID.search(envelope.content)
        with self.lock:
            if getattr(session, "bench_connection", None) is None:
                self.connections += 1
                session.bench_connection = self.connections
            if found:
                self.message_ids.append(found.group(1))
                self.by_id.setdefault(found.group(1), time.monotonic())
        return await super().handle_DATA(server, session, envelope)

    def arrivals_of(self, message_ids: set[bytes]) -> list[float]:
        with self.lock:
            return [at for mid, at in self.by_id.items() if mid in message_ids]

    def copies(self, message_ids: set[bytes]) -> int:
        """How many messages of `message_ids` arrived more than once (extra copies)."""
        with self.lock:
            seen = [mid for mid in self.message_ids if mid in message_ids]
        return len(seen) - len(set(seen))


@dataclass
class EmailStack:
    stack: Stack
    smtp: CountingHandler
    smtp_port: int
    jobs_env: dict[str, str]
    seed_env: dict[str, str]
    service_port: int = 0
    workers: list[Any] = field(default_factory=list)

    def start_smtp(self) -> None:
        self.stack.smtp = Controller(self.smtp, hostname="127.0.0.1", port=self.smtp_port)
        self.stack.smtp.start()

    def stop_smtp(self) -> None:
        if self.stack.smtp is not None:
            self.stack.smtp.stop()
            self.stack.smtp = None

    def start_worker(self, name: str) -> Any:
        proc = self.stack.start(name, WORKER_COMMAND, self.jobs_env)
        assert self.stack.redis is not None
        wait_for_worker(self.stack.redis, proc)
        return proc

    def stop_worker(self, name: str) -> None:
        proc = self.stack.processes.pop(name)
        stop_process_group(name, proc)


def start_email_stack(stack: Stack, args: argparse.Namespace) -> EmailStack:
    """The run's database and Redis database, the SMTP server and the service (gunicorn);
    workers are started by each step."""
    stack.create_database()
    redis_url = stack.claim_redis(args.redis_url, args.redis_db)
    log(f"database {stack.database}, Redis {redis_url}; logs in {stack.log_dir}")
    handler = CountingHandler()
    email_stack = EmailStack(stack, handler, free_port(), {}, {})
    email_stack.start_smtp()
    base = {
        **os.environ,
        "APP_ENV": "development",
        "REDIS_URL": redis_url,
        "MAIL_SERVER": "127.0.0.1",
        "MAIL_PORT": str(email_stack.smtp_port),
        "MAIL_USE_TLS": "false",
        "MAIL_USE_SSL": "false",
        "RATELIMIT_ENABLED": "false",
        "WEB_CONCURRENCY": str(args.workers),
        "FLASK_APP": "wsgi",
        "PUBLIC_BASE_URL": "http://localhost:8000",
    }
    for name in ("S3_ENDPOINT_URL", "S3_BUCKET", "MAIL_USERNAME", "MAIL_PASSWORD"):
        base.pop(name, None)
    email_stack.jobs_env = {**base, "DATABASE_URL": stack.database_url(JOBS_DB_APP)}
    email_stack.seed_env = {
        "APP_ENV": "development",
        "REDIS_URL": redis_url,
        "DATABASE_URL": stack.database_url(SEED_DB_APP),
    }
    run_cli(["db", "upgrade"], email_stack.jobs_env)
    run_cli(["seed-groups"], email_stack.jobs_env)
    run_cli(["keys", "ensure"], email_stack.jobs_env)
    port = free_port()
    env = {
        **base,
        "DATABASE_URL": stack.database_url(SERVICE_DB_APP),
        "GUNICORN_BIND": f"127.0.0.1:{port}",
    }
    cmd = [str(BIN / "gunicorn"), "wsgi:app", "--bind", f"127.0.0.1:{port}"]
    service = stack.start("service", [*cmd, "--workers", str(args.workers)], env)
    wait_for_health("service", port, service)
    email_stack.service_port = port
    log(f"service on :{port} ({args.workers} workers), SMTP on :{email_stack.smtp_port}")
    return email_stack


def process_cpu_s(pid: int) -> float:
    """utime + stime of a process and of the children it waited for (a forking worker's
    work horses), in seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return sum(int(value) for value in fields[11:15]) * TICK_S


def wait_for_arrivals(
    smtp: CountingHandler, message_ids: set[bytes], timeout: float, what: str
) -> list[float]:
    deadline = time.monotonic() + timeout
    while True:
        arrivals = smtp.arrivals_of(message_ids)
        if len(arrivals) == len(message_ids):
            return arrivals
        if time.monotonic() > deadline:
            raise BenchError(
                f"{what}: {len(arrivals)} of {len(message_ids)} emails arrived in {timeout:g} s"
            )
        time.sleep(0.05)


# --- 1. one worker's throughput ---------------------------------------------------------------


@dataclass
class Throughput:
    emails: int
    seconds: float
    per_s: float
    cpu_ms_per_email: float
    connections: int
    copies: int


def measure_throughput(es: EmailStack, app: Flask, emails: int) -> Throughput:
    """Emails queued first, then one worker: from its first email to its last. Its CPU is
    read at the first arrival and at the last, and divided by the emails sent in between."""
    log(f"throughput: {emails} emails queued, then one worker started")
    message_ids = in_process.queue_emails(app, "throughput", emails)
    connections_before = es.smtp.connections
    worker = es.stack.start("worker-throughput", WORKER_COMMAND, es.jobs_env)
    deadline = time.monotonic() + 60
    while not (arrived := es.smtp.arrivals_of(message_ids)):
        if worker.poll() is not None or time.monotonic() > deadline:
            raise BenchError("the worker sent no email; see worker-throughput.log")
        time.sleep(0.005)
    cpu_start, sent_start = process_cpu_s(worker.pid), len(es.smtp.arrivals_of(message_ids))
    arrivals = wait_for_arrivals(es.smtp, message_ids, max(120, emails / 5), "throughput")
    cpu_end = process_cpu_s(worker.pid)
    es.stop_worker("worker-throughput")
    seconds = max(arrivals) - min(arrived)
    return Throughput(
        emails=emails,
        seconds=seconds,
        per_s=(len(arrivals) - 1) / seconds if seconds > 0 else float("nan"),
        cpu_ms_per_email=(cpu_end - cpu_start) * 1000 / max(1, len(arrivals) - sent_start),
        connections=es.smtp.connections - connections_before,
        copies=es.smtp.copies(message_ids),
    )


# --- 3. an SMTP outage and its backlog -----------------------------------------------------------


@dataclass
class Backlog:
    outage_s: float
    emails: int
    drained_s: float  # from the server's return to the last email of the backlog
    p50_s: float  # from the server's return, per email
    copies: int


def measure_backlog(es: EmailStack, app: Flask, outage: float, emails: int) -> Backlog:
    """The SMTP server stopped for `outage` seconds (every connection it had closed), `emails`
    emails queued evenly over the first half, none over the second; the worker keeps
    running. The figure: how long after the server is back the last of them arrives."""
    log(f"SMTP outage: {outage:g} s, {emails} emails queued in its first half")
    es.stop_smtp()
    stopped = time.monotonic()
    message_ids: set[bytes] = set()
    for i in range(emails):
        time.sleep(max(0.0, stopped + i * (outage / 2) / emails - time.monotonic()))
        message_ids |= in_process.queue_emails(app, f"outage-{i}", 1)
    time.sleep(max(0.0, stopped + outage - time.monotonic()))
    es.start_smtp()
    back = time.monotonic()
    log("  the SMTP server is back")
    arrivals = wait_for_arrivals(es.smtp, message_ids, 900, "the outage's backlog")
    time.sleep(2)  # a second copy of any of them would have arrived by now
    since_back = [at - back for at in arrivals]
    return Backlog(
        outage_s=back - stopped,
        emails=emails,
        drained_s=max(since_back),
        p50_s=percentile(since_back, 50),
        copies=es.smtp.copies(message_ids),
    )


# --- the run -------------------------------------------------------------------------------------

WORKER_COMMAND = [str(BIN / "flask"), "--app", "wsgi", "rq", "worker"]


@dataclass
class Figures:
    machine: dict[str, str]
    throughput: Throughput | None = None
    registration: RegistrationResult | None = None
    backlog: Backlog | None = None


def targets(f: Figures) -> list[Target]:
    goals = []
    if (t := f.throughput) is not None:
        goals.append(
            Target(
                f"one worker's throughput >= {THROUGHPUT_GOAL:g} emails/s, each once",
                f"{t.per_s:.0f} emails/s ({t.emails} in {t.seconds:.1f} s, "
                f"{t.cpu_ms_per_email:.1f} ms CPU each: {1000 / t.cpu_ms_per_email:.0f}/s on a "
                f"free core, {t.connections} SMTP connection(s), "
                f"{t.copies} copies)",
                f">= {THROUGHPUT_GOAL:g}/s, 0 copies",
                t.per_s >= THROUGHPUT_GOAL and t.copies == 0,
            )
        )
    if f.registration is not None:
        goals.append(registration_target(f.registration))
    if (b := f.backlog) is not None:
        goals.append(
            Target(
                f"backlog of a {b.outage_s:.0f} s SMTP outage sent <= {BACKLOG_GOAL:g} s "
                "after the server is back, each once",
                f"{b.drained_s:.1f} s for {b.emails} emails (p50 {b.p50_s:.1f} s), "
                f"{b.copies} copies",
                f"<= {BACKLOG_GOAL:g} s, 0 copies",
                b.drained_s <= BACKLOG_GOAL and b.copies == 0,
            )
        )
    return goals


def measure(es: EmailStack, app: Flask, args: argparse.Namespace) -> Figures:
    figures = Figures(machine=machine_description())
    steps = set(args.steps.split(","))
    if "throughput" in steps:
        figures.throughput = measure_throughput(es, app, args.emails)
        t = figures.throughput
        log(f"  {t.per_s:.0f} emails/s, {t.cpu_ms_per_email:.1f} ms CPU each (target >= 100/s)")
    if steps & {"registration", "outage"}:
        es.start_worker("worker")
    if "registration" in steps:
        clients = args.reg_clients or 2 * args.workers
        figures.registration = register_load(es.service_port, args.reg_seconds, es.smtp, clients)
        r = figures.registration
        log(
            f"  {r.created} registrations ({r.served_per_s:.1f}/s), p95 to SMTP "
            f"{r.email_p95_s:.2f} s (target <= 1 s)"
        )
    if "outage" in steps:
        figures.backlog = measure_backlog(es, app, args.outage, args.outage_emails)
        b = figures.backlog
        log(f"  backlog sent {b.drained_s:.1f} s after the server was back (target <= 15 s)")
    return figures


def render(f: Figures, goals: list[Target]) -> str:
    lines = ["", "Machine: " + ", ".join(f"{k} {v}" for k, v in f.machine.items())]
    if (r := f.registration) is not None:
        lines += [
            "",
            "| registrations | value |",
            "|---|---|",
            f"| sent / 201 / emailed | {r.sent} / {r.created} / {r.emails} from {r.clients} "
            f"clients back to back; served {r.served_per_s:.1f}/s |",
            f"| POST /auth/register p50 / p95 | {r.http_p50_ms:.0f} ms / {r.http_p95_ms:.0f} ms |",
            f"| registration -> email at SMTP p50 / p95 / max | {r.email_p50_s:.2f} s / "
            f"{r.email_p95_s:.2f} s / {r.email_max_s:.2f} s |",
            f"| 201 -> email at SMTP p50 / p95 | {r.queue_p50_s:.2f} s / {r.queue_p95_s:.2f} s |",
        ]
    lines.append(render_targets(goals))
    return "\n".join(lines)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n", 1)[0])
    parser.add_argument(
        "--steps",
        default="throughput,registration,outage",
        help="which figures, comma-separated: throughput, registration, outage",
    )
    parser.add_argument("--emails", type=int, default=3000, help="emails for the throughput")
    parser.add_argument("--workers", type=int, default=2, help="gunicorn workers")
    parser.add_argument(
        "--reg-clients", type=int, help="clients registering back to back (default 2 x workers)"
    )
    parser.add_argument("--reg-seconds", type=float, default=20, help="seconds of registrations")
    parser.add_argument("--outage", type=float, default=60, help="seconds the SMTP server is away")
    parser.add_argument(
        "--outage-emails", type=int, default=300, help="emails queued during the outage"
    )
    add_stack_arguments(parser, "accounts_email_bench")
    return parser.parse_args(argv)


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    for tool in ("gunicorn", "flask", "python"):
        if not (BIN / tool).exists():
            print(f"bench: {BIN / tool} is missing; run `make install` first.", file=sys.stderr)
            return 2
    signal.signal(signal.SIGTERM, _interrupt)
    run_name = f"accounts_email_bench_{os.getpid()}"
    log_dir = Path(tempfile.mkdtemp(prefix="accounts-email-bench-"))
    stack = Stack(log_dir, args.pg_admin_url, args.db_name or run_name, run_name)
    app: Flask | None = None
    failed = True
    try:
        es = start_email_stack(stack, args)
        app = in_process.make_app(es.seed_env)
        figures = measure(es, app, args)
        goals = targets(figures)
        print(render(figures, goals), flush=True)
        failed = False
        return 0 if all(t.passed for t in goals) else 1
    except BenchError as exc:
        print(f"bench: {exc}", file=sys.stderr)
        return 2
    finally:
        log("stopping the service, the worker and the SMTP server; dropping the database")
        stack.stop()
        if app is not None:
            in_process.dispose(app)
        try:
            stack.release_redis()
        except Exception as exc:
            print(f"bench: could not empty the run's Redis database: {exc}", file=sys.stderr)
        if stack.database_created:
            try:
                stack.drop_database()
            except Exception as exc:
                print(f"bench: could not drop database {stack.database}: {exc}", file=sys.stderr)
        if failed or args.keep_logs:
            print(f"bench: logs kept in {log_dir}", file=sys.stderr)
        else:
            shutil.rmtree(log_dir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
