"""Load benchmark of the accounts service: `make bench` (or `.venv/bin/python bench/run.py`).

What it does, what it needs and how to read it: bench/README.md. The latest figures:
bench/RESULTS.md. Exit status 0 when every target passes, 1 when one is missed, 2 when the
run could not be done.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import sys
import tempfile
from pathlib import Path
from typing import Any

if not __package__:
    # Run as a script: import `bench.…` and `app` from the repository root, and not this
    # module's siblings as top-level modules.
    sys.path[0] = str(Path(__file__).resolve().parent.parent)

from flask import Flask

from bench import in_process, report
from bench.common import BIN, BenchError, log
from bench.cpu import CpuProbe
from bench.measure import (
    StateTimings,
    WrkRun,
    check_same_caller,
    measure_cleanup,
    register_load,
    run_interleaved,
    time_account_states,
    time_cli_start,
)
from bench.stack import Stack, Started, add_stack_arguments, start_stack


def check_tools(need_wrk: bool = True) -> None:
    if need_wrk and shutil.which("wrk") is None:
        raise BenchError(
            "wrk is not installed. On Debian or Ubuntu: `sudo apt-get install -y wrk` "
            "(https://github.com/wg/wrk), then run `make bench` again."
        )
    for tool in ("gunicorn", "flask", "python"):
        if not (BIN / tool).exists():
            raise BenchError(f"{BIN / tool} is missing; run `make install` first.")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n", 1)[0])
    parser.add_argument(
        "--workers", type=int, default=2, help="gunicorn workers, of the service and the floor"
    )
    parser.add_argument(
        "--duration", type=float, default=10, help="seconds of wrk per load, over all rounds"
    )
    parser.add_argument("--connections", type=int, default=8, help="wrk connections")
    parser.add_argument(
        "--rounds", type=int, default=3, help="slices of each load, run in turn with the others"
    )
    parser.add_argument("--users", type=int, default=200, help="seeded active users")
    parser.add_argument(
        "--reg-clients",
        type=int,
        help="clients registering back to back, as fast as the API takes them "
        "(default: 2 x workers, so every gunicorn worker always has one waiting)",
    )
    parser.add_argument("--reg-seconds", type=float, default=10, help="seconds of registrations")
    parser.add_argument("--expired-tokens", type=int, default=1_000_000)
    add_stack_arguments(parser, "accounts_bench")
    parser.add_argument(
        "--state-samples",
        type=int,
        default=30,
        help="forgot and resend requests timed per account state",
    )
    parser.add_argument(
        "--account-states-only",
        action="store_true",
        help="measure only forgot and resend by account state (needs no wrk)",
    )
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    return parser.parse_args(argv)


def write_refresh_files(tokens: list[str], pattern: Path, rounds: int) -> tuple[Path, ...]:
    """One file of refresh bodies per round: every wrk run starts its file from the top, and
    a refresh token works once."""
    files = []
    for k in range(rounds):
        path = Path(str(pattern).format(k))
        path.write_text("\n".join(json.dumps({"refresh_token": t}) for t in tokens[k::rounds]))
        files.append(path)
    return tuple(files)


def measure_account_states(started: Started, app: Flask, samples: int) -> StateTimings:
    """Forgot and resend for an active, a pending, a deactivated and an unknown address."""
    emails = in_process.seed_account_states(app)
    timings = time_account_states(
        started.service.port, emails, lambda: in_process.jobs_idle(app), started.smtp, samples
    )
    for path in timings.seconds:
        log(f"  POST {path}: medians differ by {timings.spread_ms(path):.2f} ms at most")
    return timings


def measure(
    args: argparse.Namespace, started: Started, app: Flask, probe: CpuProbe, work_dir: Path
) -> report.Figures:
    """Seed, time argon2 and the strength check, then every load in the order of the README."""
    machine = report.machine_description()
    refresh_pool = max(2000, int(args.duration * 1500))
    seeded = in_process.seed(app, args.users, refresh_pool, work_dir, args.rounds)
    log(f"seeded {args.users} users, {refresh_pool} refresh tokens in {seeded.seconds:.1f} s")
    # The floor refreshes faster than the service: a pool of its own, twice as large.
    floor_refresh_files = write_refresh_files(
        in_process.seed_floor_logins(app, seeded.user_ids, 2 * refresh_pool),
        work_dir / "floor_refresh_bodies_{}.txt",
        args.rounds,
    )
    argon2 = in_process.time_argon2_verify(seeded.password_hash)
    log(f"one argon2 verify: {argon2.wall_s * 1000:.1f} ms, {argon2.cpu_s * 1000:.1f} ms CPU")
    strength_s = in_process.time_strength_check()
    log(f"128-character strength check: {strength_s * 1000:.1f} ms")
    cli_start_s = time_cli_start(started.jobs_env)
    log(f"a flask command's start (the app imported): {cli_start_s:.2f} s")

    service, floor = started.service, started.floor
    access_token = seeded.access_file.read_text().split("\n", 1)[0]
    check_same_caller(service, floor, access_token)
    # Before any load, on the quiet stack: the figure is a difference of a millisecond.
    account_states = measure_account_states(started, app, args.state_samples)

    c, w = args.connections, args.workers
    tokens, logins = (seeded.access_file,), (seeded.login_file,)
    me = WrkRun(
        "GET /auth/me", service, path="/auth/me", kind="bearer", files=tokens, connections=c
    )
    # Service and floor side by side, so that each pair runs one right after the other.
    runs = {
        "health": WrkRun("GET /health", service, connections=c),
        "floor_health": WrkRun("GET /health", floor, connections=c),
        "me": me,
        "floor_me": WrkRun(
            "GET /me", floor, path="/me", kind="bearer", files=tokens, connections=c
        ),
        "refresh": WrkRun(
            "POST /auth/refresh",
            service,
            method="POST",
            path="/auth/refresh",
            kind="once",
            files=tuple(seeded.refresh_files),
            connections=c,
        ),
        "floor_refresh": WrkRun(
            "POST /refresh",
            floor,
            method="POST",
            path="/refresh",
            kind="once",
            files=floor_refresh_files,
            connections=c,
        ),
        # One connection for the latency of a login alone, then enough to keep every worker busy.
        "login_c1": WrkRun(
            "POST /auth/login (latency)",
            service,
            method="POST",
            path="/auth/login",
            kind="body",
            files=logins,
            connections=1,
        ),
        "login": WrkRun(
            "POST /auth/login (throughput)",
            service,
            method="POST",
            path="/auth/login",
            kind="body",
            files=logins,
            connections=2 * w,
        ),
    }
    loads = run_interleaved(runs, args.duration, args.rounds, probe)

    reg_clients = args.reg_clients or 2 * w
    registration = register_load(service.port, args.reg_seconds, started.smtp, reg_clients)
    log(
        f"  {registration.created}/{registration.sent} created ({registration.served_per_s:.1f}/s),"
        f" {registration.emails} emails, p50 {registration.email_p50_s:.2f} s, "
        f"p95 {registration.email_p95_s:.2f} s (target <= 1 s)"
    )

    log(f"inserting {args.expired_tokens:,} expired tokens")
    insert_s = in_process.insert_expired_tokens(
        app, args.expired_tokens, seeded.user_ids, seeded.password_hash
    )
    log(f"  inserted in {insert_s:.1f} s")
    loads["me_before"], loads["me_during"], cleanup = measure_cleanup(
        me, args.duration, probe, started.jobs_env, args.expired_tokens, insert_s
    )
    return report.Figures(
        machine=machine,
        settings={
            "workers": w,
            "wrk_connections": c,
            "seconds_per_load": args.duration,
            "rounds": args.rounds,
            "reg_clients": reg_clients,
            "reg_seconds": args.reg_seconds,
            "expired_tokens": args.expired_tokens,
            "state_samples": args.state_samples,
        },
        loads=loads,
        argon2_s=argon2.wall_s,
        argon2_cpu_s=argon2.cpu_s,
        strength_s=strength_s,
        cli_start_s=cli_start_s,
        registration=registration,
        cleanup=cleanup,
        account_states=account_states,
    )


def shut_down(stack: Stack, app: Flask | None, probe: CpuProbe | None) -> None:
    """Undo everything the run did, each step whatever happened to the one before."""
    log("stopping the service, the floor, the worker and the SMTP server; dropping the database")
    stack.stop()
    if probe is not None:
        probe.close()
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


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        check_tools(need_wrk=not args.account_states_only)
    except BenchError as exc:
        print(f"bench: {exc}", file=sys.stderr)
        return 2
    # SIGTERM unwinds like Ctrl-C, so that shut_down still runs.
    signal.signal(signal.SIGTERM, _interrupt)
    run_name = f"accounts_bench_{os.getpid()}"
    log_dir = Path(tempfile.mkdtemp(prefix="accounts-bench-"))
    stack = Stack(log_dir, args.pg_admin_url, args.db_name or run_name, run_name)
    app: Flask | None = None
    probe: CpuProbe | None = None
    failed = True
    try:
        started = start_stack(stack, args.workers, args.redis_url, args.redis_db)
        app = in_process.make_app(started.seed_env)
        if args.account_states_only:
            machine = report.machine_description()
            timings = measure_account_states(started, app, args.state_samples)
            goals = report.account_state_targets(timings)
            print("\nMachine: " + ", ".join(f"{k} {v}" for k, v in machine.items()))
            print(report.render_account_states(timings), report.render_targets(goals), sep="\n")
            failed = False
            return 0 if all(t.passed for t in goals) else 1
        probe = CpuProbe(args.pg_admin_url, stack.database)
        figures = measure(args, started, app, probe, log_dir)
        goals = report.targets(figures)
        print(report.render(figures, goals), flush=True)
        if args.json:
            args.json.write_text(report.as_json(figures, goals))
        failed = False
        return 0 if all(t.passed for t in goals) else 1
    except BenchError as exc:
        print(f"bench: {exc}", file=sys.stderr)
        return 2
    finally:
        shut_down(stack, app, probe)
        if failed or args.keep_logs:
            print(f"bench: logs kept in {log_dir}", file=sys.stderr)
        else:
            shutil.rmtree(log_dir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
