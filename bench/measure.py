"""Drive load and read what it cost: wrk runs with the CPU they used, registrations
followed to their activation email, and forgot and resend timed per account state."""

from __future__ import annotations

import contextlib
import http.client
import itertools
import json
import random
import signal
import statistics
import subprocess
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Literal

from bench.common import BIN, LUA, ROOT, BenchError, log, percentile
from bench.cpu import CpuProbe, Subject, used
from bench.stack import ArrivalHandler, http_get, run_cli

# How load.lua fills each request; see its header.
Kind = Literal["none", "bearer", "body", "once"]


def time_cli_start(env: dict[str, str], rounds: int = 5) -> float:
    """Median wall time of `flask --app wsgi --help`: the interpreter's start and the app's
    import, which every CLI command (and every worker start) pays before doing anything."""
    timings = []
    for _ in range(rounds):
        started = time.perf_counter()
        subprocess.run(
            [str(BIN / "flask"), "--app", "wsgi", "--help"],
            cwd=ROOT,
            env=env,
            capture_output=True,
            timeout=60,
            check=True,
        )
        timings.append(time.perf_counter() - started)
    return statistics.median(timings)


@dataclass(frozen=True)
class WrkRun:
    """One request shape sent to one subject, in the terms bench/load.lua takes."""

    name: str  # as printed, e.g. "GET /auth/me"
    subject: Subject
    method: str = "GET"
    path: str = "/health"
    kind: Kind = "none"
    # The files of request lines: one for every round with "once" (each token is sent once,
    # and every wrk run starts its file from the top), else one reused by every run.
    files: tuple[Path, ...] = ()
    connections: int = 8
    threads: int = 2

    def file(self, round_: int) -> Path | None:
        if not self.files:
            return None
        if self.kind == "once" and round_ >= len(self.files):
            raise BenchError(f"{self.name}: no unspent request file for round {round_ + 1}")
        return self.files[round_ % len(self.files)]

    def command(self, seconds: float, round_: int = 0) -> list[str]:
        threads = min(self.threads, self.connections)
        lines = self.file(round_)
        return [
            "wrk",
            f"-t{threads}",
            f"-c{self.connections}",
            f"-d{max(1, round(seconds))}s",
            "--timeout",
            "10s",
            "-s",
            str(LUA),
            f"http://127.0.0.1:{self.subject.port}",
            "--",
            self.method,
            self.path,
            self.kind,
            str(lines) if lines else "-",
            str(threads),
        ]


@dataclass
class LoadResult:
    name: str
    subject: str
    connections: int
    requests: int
    seconds: float
    errors: int
    p50_ms: float
    p99_ms: float
    cpu_web_s: float = 0.0  # gunicorn master and workers
    cpu_db_s: float = 0.0  # the PostgreSQL backends they use

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    @property
    def cpu_ms(self) -> float:
        """CPU per request, web processes and database together."""
        cpu = self.cpu_web_s + self.cpu_db_s
        return cpu * 1000 / self.requests if self.requests else float("nan")

    @property
    def db_cpu_ms(self) -> float:
        return self.cpu_db_s * 1000 / self.requests if self.requests else float("nan")


def parse_wrk(run: WrkRun, output: str) -> LoadResult:
    for line in output.splitlines():
        if line.startswith("BENCH_JSON "):
            data = json.loads(line.removeprefix("BENCH_JSON "))
            kinds = ("status_errors", "connect_errors", "read_errors", "write_errors", "timeouts")
            return LoadResult(
                name=run.name,
                subject=run.subject.label,
                connections=run.connections,
                requests=data["requests"],
                seconds=data["duration_us"] / 1e6,
                errors=sum(data[k] for k in kinds),
                p50_ms=data["p50_us"] / 1000,
                p99_ms=data["p99_us"] / 1000,
            )
    raise BenchError(f"wrk printed no result for {run.name}:\n{output}")


def run_wrk(run: WrkRun, seconds: float, probe: CpuProbe, round_: int = 0) -> LoadResult:
    log(f"wrk {run.subject.label} {run.name}: {run.connections} connections, {seconds:g} s")
    cmd = run.command(seconds, round_)
    before = probe.snapshot(run.subject)
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 60, check=False)
    cpu = used(before, probe.snapshot(run.subject))
    if result.returncode != 0:
        raise BenchError(f"wrk failed for {run.name}:\n{result.stdout}{result.stderr}")
    outcome = parse_wrk(run, result.stdout)
    outcome.cpu_web_s, outcome.cpu_db_s = cpu.web_s, cpu.database_s
    log(
        f"  {outcome.rps:.0f} req/s, {outcome.cpu_ms:.2f} CPU ms/req, p50 {outcome.p50_ms:.1f} ms, "
        f"p99 {outcome.p99_ms:.1f} ms, {outcome.errors} errors"
    )
    return outcome


def run_interleaved(
    runs: dict[str, WrkRun], seconds: float, rounds: int, probe: CpuProbe
) -> dict[str, LoadResult]:
    """Run each load for seconds / rounds, all of them in turn, `rounds` times, and merge.

    A change in the machine's background load then hits every load and both subjects alike,
    so the ratios between them stay fair; every other round runs the list backwards, so no
    load always runs right after the same neighbour. Requests, seconds and CPU are summed;
    p50 is the median of the slices' p50 and p99 the worst slice's p99."""
    slices: dict[str, list[LoadResult]] = {key: [] for key in runs}
    order = list(runs.items())
    for round_ in range(rounds):
        for key, run in order if round_ % 2 == 0 else reversed(order):
            slices[key].append(run_wrk(run, seconds / rounds, probe, round_))
    return {
        key: LoadResult(
            name=results[0].name,
            subject=results[0].subject,
            connections=results[0].connections,
            requests=sum(r.requests for r in results),
            seconds=sum(r.seconds for r in results),
            errors=sum(r.errors for r in results),
            p50_ms=statistics.median(r.p50_ms for r in results),
            p99_ms=max(r.p99_ms for r in results),
            cpu_web_s=sum(r.cpu_web_s for r in results),
            cpu_db_s=sum(r.cpu_db_s for r in results),
        )
        for key, results in slices.items()
    }


@dataclass
class Background:
    result: LoadResult | None = None


@contextlib.contextmanager
def wrk_in_background(run: WrkRun, limit: float, probe: CpuProbe) -> Iterator[Background]:
    """wrk for as long as the block runs (at most `limit` seconds); SIGINT makes it report."""
    holder = Background()
    before = probe.snapshot(run.subject)
    proc = subprocess.Popen(
        run.command(limit), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    try:
        yield holder
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
        try:
            output, _ = proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            output, _ = proc.communicate()
    cpu = used(before, probe.snapshot(run.subject))
    holder.result = parse_wrk(run, output)
    holder.result.cpu_web_s, holder.result.cpu_db_s = cpu.web_s, cpu.database_s


def check_same_caller(service: Subject, floor: Subject, access_token: str) -> None:
    """Before any figure: the floor must accept the service's token and find the same user,
    or the comparison would be with a floor that answers 401 cheaply."""
    auth = {"Authorization": f"Bearer {access_token}"}
    answers = {}
    for subject, path in ((service, "/auth/me"), (floor, "/me")):
        status, body = http_get(subject.port, path, headers=auth)
        if status != 200:
            raise BenchError(f"GET {path} of the {subject.label} answered {status}: {body[:300]!r}")
        answers[subject.label] = json.loads(body).get("email")
    if answers["service"] != answers["floor"]:
        raise BenchError(f"the service and the floor see different users: {answers}")


# --- registrations, to the email at the SMTP server -------------------------------------------


@dataclass
class RegistrationResult:
    sent: int
    created: int
    clients: int
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
    port: int, seconds: float, smtp: ArrivalHandler, clients: int
) -> RegistrationResult:
    """Registrations as fast as the API takes them: `clients` clients, each sending the next
    registration as soon as its previous one is answered, for `seconds`. Each email's time
    is counted from the start of its request to its arrival at the SMTP server."""
    run_id = int(time.time())
    numbers = itertools.count()  # next() is atomic under the GIL: one number per request
    start = time.monotonic()
    deadline = start + seconds

    def client(_: int) -> list[tuple[str, float, float, int]]:
        outcomes = []
        while time.monotonic() < deadline:
            i = next(numbers)
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
            outcomes.append((email, sent, time.monotonic(), status))
        return outcomes

    log(f"registrations for {seconds:g} s from {clients} clients, each followed to its email")
    with ThreadPoolExecutor(max_workers=clients) as pool:
        outcomes = [o for batch in pool.map(client, range(clients)) for o in batch]
    created = [(email, sent, done) for email, sent, done, status in outcomes if status == 201]
    wait_until = time.monotonic() + 30
    while time.monotonic() < wait_until:
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
        sent=len(outcomes),
        created=len(created),
        clients=clients,
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


# --- the cleanup of expired tokens, under load ---------------------------------------------------


@dataclass
class Cleanup:
    seconds: float
    deleted: int
    expected: int
    insert_s: float
    output: str


def measure_cleanup(
    me: WrkRun,
    seconds: float,
    probe: CpuProbe,
    jobs_env: dict[str, str],
    expected: int,
    insert_s: float,
) -> tuple[LoadResult, LoadResult, Cleanup]:
    """GET /auth/me alone, then again while `flask cleanup-tokens` runs, until it ends."""
    before = run_wrk(replace(me, name="GET /auth/me before cleanup"), seconds, probe)
    log("cleanup-tokens, with GET /auth/me load until it ends")
    with wrk_in_background(replace(me, name="GET /auth/me during cleanup"), 120, probe) as during:
        time.sleep(1)  # wrk connected and running before the cleanup starts
        started = time.perf_counter()
        output = run_cli(["cleanup-tokens"], jobs_env, timeout=110)
        cleanup_s = time.perf_counter() - started
    assert during.result is not None  # set when the block ends
    # One line per kind of token: "refresh: 900000 deleted".
    deleted = sum(int(line.split(":")[1].split()[0]) for line in output.splitlines() if ":" in line)
    cleanup = Cleanup(
        seconds=cleanup_s,
        deleted=deleted,
        expected=expected,
        insert_s=insert_s,
        output="; ".join(output.strip().splitlines()),
    )
    log(f"  cleanup took {cleanup_s:.1f} s: {cleanup.output}")
    return before, during.result, cleanup


# --- forgot and resend, per account state (issue 21, item 2) ---------------------------------

# Each request and the account states it must not tell apart, in the order they are printed.
STATE_REQUESTS = {
    "/auth/password/forgot": ("active", "unknown", "deactivated", "pending"),
    "/auth/activate/resend": ("pending", "unknown", "active"),
}


@dataclass
class StateTimings:
    samples: int
    # path -> state -> the wall time of each request, seconds
    seconds: dict[str, dict[str, list[float]]]

    def median_ms(self, path: str, state: str) -> float:
        return statistics.median(self.seconds[path][state]) * 1000

    def quartiles_ms(self, path: str, state: str) -> tuple[float, float]:
        q1, _, q3 = statistics.quantiles(self.seconds[path][state], n=4)
        return q1 * 1000, q3 * 1000

    def spread_ms(self, path: str) -> float:
        """The largest difference between two states' medians."""
        medians = [self.median_ms(path, state) for state in self.seconds[path]]
        return max(medians) - min(medians)


def _post_json(port: int, path: str, body: dict[str, str]) -> tuple[float, int]:
    """One request on a new connection (gunicorn's sync workers close each one), timed as a
    client sees it: from the connect to the last byte of the answer."""
    started = time.perf_counter()
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request("POST", path, json.dumps(body), {"Content-Type": "application/json"})
        response = conn.getresponse()
        response.read()
    finally:
        conn.close()
    return time.perf_counter() - started, response.status


def _wait_until(idle: Callable[[], bool], timeout: float = 60, settle: float = 0.02) -> None:
    """Until `idle()`, then `settle` seconds more: the work a job leaves behind (the work
    horse's exit, PostgreSQL writing its commit) is over too."""
    deadline = time.monotonic() + timeout
    while not idle():
        if time.monotonic() > deadline:
            raise BenchError(f"the RQ worker was still busy after {timeout:g} s")
        time.sleep(0.005)
    time.sleep(settle)


def time_account_states(
    port: int,
    emails: dict[str, str],
    jobs_idle: Callable[[], bool],
    smtp: ArrivalHandler,
    samples: int = 30,
    warm_up: int = 3,
) -> StateTimings:
    """Time forgot and resend for each account state, `samples` times each, interleaved: each
    round sends every (request, state) once, in an order shuffled anew (with a fixed seed).
    Before each request the worker is let finish the previous one's job, which by design
    does more for some states (a link, an email): the time measured is the request's own,
    not the worker's CPU competing with it on the same machine."""
    kinds = [(path, state) for path, states in STATE_REQUESTS.items() for state in states]
    timings: dict[str, dict[str, list[float]]] = {
        path: {state: [] for state in states} for path, states in STATE_REQUESTS.items()
    }
    order = random.Random(21)
    log(f"forgot and resend by account state: {samples} interleaved samples of {len(kinds)}")
    for round_ in range(warm_up + samples):
        order.shuffle(kinds)
        for path, state in kinds:
            _wait_until(jobs_idle)
            seconds, status = _post_json(port, path, {"email": emails[state]})
            if status != 202:
                raise BenchError(f"POST {path} for the {state} account answered {status}")
            if round_ >= warm_up:
                timings[path][state].append(seconds)
    _wait_until(jobs_idle)  # an email's job ends once the SMTP server has taken it
    # The requests did what they promise: emails for the accounts that call for one only.
    for state in ("active", "pending"):
        if smtp.first_arrival(emails[state]) is None:
            raise BenchError(f"no email reached the {state} account: the jobs did not run")
    for state in ("unknown", "deactivated"):
        if smtp.first_arrival(emails[state]) is not None:
            raise BenchError(f"an email reached the {state} address")
    return StateTimings(samples, timings)
