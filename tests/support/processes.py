"""`flask …` processes a test starts (the RQ worker, the scheduler) against the run's
services, each in a session of its own, its output kept in a log file."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from tests.support.apps import BIN, ROOT
from tests.support.services import PROCESS_TIMEOUT


@dataclass
class FlaskProcesses:
    env: dict[str, str]
    logs: Path
    started: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def start(self, *args: str, **env: str) -> subprocess.Popen[bytes]:
        """`flask --app wsgi <args>`, with `env` on top of the services'."""
        log = open(self.logs / f"{'-'.join(args)}-{len(self.started)}.log", "wb")  # noqa: SIM115
        process = subprocess.Popen(
            [str(BIN / "flask"), "--app", "wsgi", *args],
            cwd=ROOT,
            env={**self.env, **env},
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()
        self.started.append(process)
        return process

    def output(self) -> str:
        return "\n".join(path.read_text(errors="replace") for path in self.logs.glob("*.log"))

    def kill_hard(self, process: subprocess.Popen[bytes]) -> None:
        """SIGKILL to the process and everything it forked, as a container kill or the OOM
        killer does."""
        for pid in [*descendants(process.pid), process.pid]:
            with contextlib.suppress(ProcessLookupError):  # already gone
                os.kill(pid, signal.SIGKILL)
        process.wait(timeout=PROCESS_TIMEOUT)

    def stop_all(self) -> None:
        """A stop signal to every process still running (a warm shutdown), then SIGKILL to
        any that has not ended 20 s later."""
        for process in self.started:
            if process.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGTERM)
        for process in self.started:
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.kill_hard(process)


def flask_processes(
    database_url: str, redis_url: str, smtp_port: int, logs: Path
) -> FlaskProcesses:
    """Processes on the test's database, Redis and SMTP server; no developer's .env."""
    logs.mkdir()
    env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "REDIS_URL": redis_url,
        "MAIL_SERVER": "127.0.0.1",
        "MAIL_PORT": str(smtp_port),
        "FLASK_SKIP_DOTENV": "1",
    }
    return FlaskProcesses(env=env, logs=logs)


def descendants(pid: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found
