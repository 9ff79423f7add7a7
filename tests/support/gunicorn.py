"""A real gunicorn with several workers on a test database, and requests that say which
worker answered them (its pid, from the access log)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.support.apps import BIN, ROOT
from tests.support.services import free_port

START_BOUND = 60  # seconds for gunicorn to import the app and answer, on a loaded machine


@dataclass(frozen=True)
class Answer:
    status: int
    body: Any
    worker: str  # the pid of the gunicorn worker that answered


@dataclass
class Gunicorn:
    base: str
    access_log: Path

    def call(
        self, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None
    ) -> tuple[int, Any]:
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(  # noqa: S310 - http to the test's own server
            f"{self.base}{path}",
            data=data,
            method=method,
            headers={"Content-Type": "application/json", **(headers or {})},
        )
        try:
            with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
                status, raw = response.status, response.read()
        except urllib.error.HTTPError as error:
            status, raw = error.code, error.read()
        return status, json.loads(raw) if raw else None

    def answers(
        self, count: int, method: str, path: str, headers: dict[str, str] | None = None
    ) -> list[Answer]:
        """`count` requests, four at a time so that both workers take some, each with the
        worker that answered it."""

        def one(probe: str) -> tuple[str, int, Any]:
            return (probe, *self.call(method, path, headers={**(headers or {}), "X-Probe": probe}))

        with ThreadPoolExecutor(max_workers=4) as pool:
            results = list(pool.map(one, [uuid.uuid4().hex for _ in range(count)]))
        workers = self._workers_of({probe for probe, _, _ in results})
        return [Answer(status, body, workers[probe]) for probe, status, body in results]

    def _workers_of(self, probes: set[str]) -> dict[str, str]:
        # A worker writes its access-log line just after its response: wait for each.
        deadline = time.monotonic() + 10
        while True:
            found = {}
            for line in self.access_log.read_text().splitlines():
                pid, probe = line.split()
                found[probe] = pid
            if probes <= set(found):
                return found
            assert time.monotonic() < deadline, "gunicorn logged no line for a request"
            time.sleep(0.05)

    def until_every_worker_answered(
        self, workers: int, method: str, path: str, headers: dict[str, str] | None = None
    ) -> list[Answer]:
        """Requests until each of the `workers` workers has answered at least one; all of
        them, in the order sent."""
        deadline = time.monotonic() + 60
        answers: list[Answer] = []
        while len({answer.worker for answer in answers}) < workers:
            assert time.monotonic() < deadline, f"not every worker answered: {answers}"
            answers += self.answers(8, method, path, headers)
        return answers


@contextmanager
def gunicorn(database_url: str, tmp_path: Path, workers: int = 2, **env: str) -> Iterator[Gunicorn]:
    """`gunicorn wsgi:app` as deployed (gunicorn.conf.py) with `workers` sync workers on the
    database, without Redis or rate limits, trusting the test apps' tokens."""
    port = free_port()
    access_log = tmp_path / "access.log"
    environ = {
        k: v for k, v in os.environ.items() if not k.startswith(("GUNICORN", "WEB_CONCURRENCY"))
    }
    process = subprocess.Popen(
        [
            str(BIN / "gunicorn"),
            "wsgi:app",
            f"--workers={workers}",
            f"--bind=127.0.0.1:{port}",
            f"--access-logfile={access_log}",
            "--access-logformat=%(p)s %({x-probe}i)s",
        ],
        cwd=ROOT,
        env={
            **environ,
            "HOME": str(tmp_path),
            "APP_ENV": "development",
            "DATABASE_URL": database_url,
            "REDIS_URL": "",
            "RATELIMIT_ENABLED": "false",
            "PUBLIC_BASE_URL": "http://cinema.test",  # the issuer of the test apps' tokens
            **env,
        },
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    server = Gunicorn(f"http://127.0.0.1:{port}", access_log)
    try:
        _wait_until_up(server, process)
        yield server
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=30)


def _wait_until_up(server: Gunicorn, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + START_BOUND
    while True:
        try:
            if server.call("GET", "/health")[0] == 200:
                return
        except OSError:
            pass
        assert process.poll() is None, "gunicorn exited"
        assert time.monotonic() < deadline, "gunicorn did not start"
        time.sleep(0.2)
