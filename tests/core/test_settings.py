"""Every process reads the same settings the same way (.env included); a database behind the
migrations is not ready; a misconfiguration is one line, not a traceback; the app imports
without the libraries only some commands need."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from flask import Flask

from tests.support.apps import BIN, ROOT
from tests.support.http import PASSWORD
from tests.support.mail import Mailbox, SMTPServer
from tests.support.services import free_port

TIMEOUT = 120
# What the test runner's own environment may carry that would decide instead of .env.
APP_VARIABLES = ("DATABASE_URL", "REDIS_URL", "MAIL_SERVER", "MAIL_PORT", "APP_ENV", "FLASK_APP")


def clean_environment(**extra: str) -> dict[str, str]:
    environ = {k: v for k, v in os.environ.items() if k not in APP_VARIABLES}
    environ.pop("FLASK_SKIP_DOTENV", None)
    environ["PYTHONPATH"] = str(ROOT)
    environ.update(extra)
    return environ


def http(method: str, url: str, body: dict[str, str] | None = None) -> tuple[int, dict]:
    request = urllib.request.Request(  # noqa: S310 - a local http:// URL
        url,
        method=method,
        data=json.dumps(body).encode() if body is not None else None,
        headers={"Content-Type": "application/json"} if body is not None else {},
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
            return response.status, json.loads(response.read() or b"{}")
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read() or b"{}")


@pytest.fixture(params=["sqlite", "postgresql"])
def project_dir(
    request: pytest.FixtureRequest,
    tmp_path: Path,
    smtp_server: SMTPServer,
    make_postgres_database: Callable[[str], str],
) -> Iterator[Path]:
    """A directory with the .env a newcomer writes: .env.example, a DATABASE_URL (an empty
    database), and the SMTP server and address to use."""
    if request.param == "sqlite":
        database_url = f"sqlite:///{tmp_path / 'from-dotenv.sqlite3'}"
    else:
        database_url = make_postgres_database("dotenv")
    directory = tmp_path / "project"
    directory.mkdir()
    settings = (ROOT / ".env.example").read_text() + (
        f"DATABASE_URL={database_url}\n"
        "MAIL_SERVER=127.0.0.1\n"
        f"MAIL_PORT={smtp_server.port}\n"
        f"GUNICORN_BIND=127.0.0.1:{free_port()}\n"
        "WEB_CONCURRENCY=1\n"
    )
    (directory / ".env").write_text(settings)
    yield directory


def base_url(project: Path) -> str:
    bind = next(
        line.split("=", 1)[1]
        for line in (project / ".env").read_text().splitlines()
        if line.startswith("GUNICORN_BIND=")
    )
    return f"http://{bind}"


@pytest.fixture
def gunicorn(project_dir: Path) -> Iterator[Callable[[], str]]:
    """Start `gunicorn -c gunicorn.conf.py wsgi:app` in the project directory; stopped after."""
    processes: list[subprocess.Popen[bytes]] = []

    def start() -> str:
        process = subprocess.Popen(
            [str(BIN / "gunicorn"), "-c", str(ROOT / "gunicorn.conf.py"), "wsgi:app"],
            cwd=project_dir,
            env=clean_environment(),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        processes.append(process)
        url = base_url(project_dir)
        deadline = time.monotonic() + TIMEOUT
        while time.monotonic() < deadline:
            assert process.poll() is None, process.stderr.read().decode()  # type: ignore[union-attr]
            try:
                if http("GET", f"{url}/health")[0] == 200:
                    return url
            except OSError:
                time.sleep(0.2)  # not listening yet
        pytest.fail("gunicorn did not start")

    yield start
    for process in processes:
        process.terminate()
        process.wait(timeout=30)


def flask(project: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BIN / "flask"), "--app", "wsgi", *args],
        cwd=project,
        env=clean_environment(**env),
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
    )


def test_gunicorn_and_the_flask_commands_use_the_database_named_in_dotenv(
    project_dir: Path, gunicorn: Callable[[], str], mailbox: Mailbox
) -> None:
    url = gunicorn()
    # Not migrated yet: the database answers, but it is not ready, and says why.
    status, body = http("GET", f"{url}/health/ready")
    assert (status, body["checks"]["database"]) == (503, "schema not at head")

    for command in (("db", "upgrade"), ("seed-groups",)):
        result = flask(project_dir, *command)
        assert result.returncode == 0, result.stderr

    status, body = http("GET", f"{url}/health/ready")
    assert (status, body["checks"]["database"]) == (200, "ok")
    status, body = http(
        "POST", f"{url}/auth/register", {"email": "newcomer@example.com", "password": PASSWORD}
    )
    assert status == 201, body
    assert mailbox.last_token("newcomer@example.com")  # MAIL_* came from .env as well


def test_the_environment_wins_over_dotenv(project_dir: Path) -> None:
    script = "from app.core.config import load_config; import json; c = load_config('instance');"
    script += "print(json.dumps([c['SQLALCHEMY_DATABASE_URI'], c['MAIL_SERVER']]))"
    result = subprocess.run(
        [sys.executable, "-c", script],
        cwd=project_dir,
        env=clean_environment(DATABASE_URL="sqlite:////elsewhere.sqlite3"),
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=True,
    )
    assert json.loads(result.stdout) == ["sqlite:////elsewhere.sqlite3", "127.0.0.1"]


def test_ready_is_503_on_a_database_behind_the_migrations(
    app_factory: Callable[..., Flask], tmp_path: Path
) -> None:
    app_factory()  # the first app built is the one whose database is emptied after the test
    empty = app_factory(SQLALCHEMY_DATABASE_URI=f"sqlite:///{tmp_path / 'empty.sqlite3'}")
    response = empty.test_client().get("/health/ready")
    assert response.status_code == 503
    assert response.json["checks"]["database"] == "schema not at head"


def test_ready_is_503_when_the_recorded_revision_is_not_the_head(
    app_factory: Callable[..., Flask],
) -> None:
    app = app_factory()
    with app.app_context():
        from app.core.db import db

        engine = db.engine
        with engine.begin() as conn:
            head = conn.scalar(sa.text("SELECT version_num FROM alembic_version"))
            conn.execute(sa.text("UPDATE alembic_version SET version_num = 'older'"))
        try:
            response = app.test_client().get("/health/ready")
        finally:
            with engine.begin() as conn:
                conn.execute(
                    sa.text("UPDATE alembic_version SET version_num = :head"), {"head": head}
                )
    assert response.status_code == 503
    assert response.json == {
        "status": "down",
        "checks": {"database": "schema not at head", "redis": "not configured"},
    }


PRODUCTION_WITHOUT_SECRETS = {"APP_ENV": "production"}


def assert_one_clear_line(result: subprocess.CompletedProcess[str]) -> None:
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("configuration error: refusing to start with APP_ENV=production")
    assert "SECRET_KEY is not set" in lines[0]


def test_a_production_misconfiguration_is_one_line_for_the_flask_commands(
    tmp_path: Path,
) -> None:
    assert_one_clear_line(flask(tmp_path, "seed-groups", **PRODUCTION_WITHOUT_SECRETS))


def test_a_production_misconfiguration_stops_gunicorn_with_one_line(tmp_path: Path) -> None:
    result = subprocess.run(
        [str(BIN / "gunicorn"), "-c", str(ROOT / "gunicorn.conf.py"), "wsgi:app"],
        cwd=tmp_path,
        env=clean_environment(
            GUNICORN_BIND=f"127.0.0.1:{free_port()}", **PRODUCTION_WITHOUT_SECRETS
        ),
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
    )
    assert_one_clear_line(result)


def test_a_command_started_elsewhere_uses_the_apps_own_instance_folder(tmp_path: Path) -> None:
    # The start-up check read `instance/` from the working directory while the app read its
    # own, so a command started elsewhere made a second set of development keys there.
    result = flask(tmp_path, "--help")
    assert result.returncode == 0, result.stderr
    assert not (tmp_path / "instance").exists()


def python_printing_json(script: str, **env: str) -> Any:
    """What `script`, run by this Python in a fresh process from the project root (no .env),
    prints as JSON."""
    result = subprocess.run(
        [sys.executable, "-c", script],
        cwd=ROOT,
        env=clean_environment(FLASK_SKIP_DOTENV="1", **env),
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=True,
    )
    return json.loads(result.stdout)


def test_gunicorns_master_holds_none_of_the_apps_code() -> None:
    """gunicorn.conf.py runs in the master, which forks every worker, also after a reload
    (SIGHUP). Had reading its settings imported the app, each new worker would inherit the
    master's copy and serve the code of the first start, not the code on disk."""
    script = (
        "import json, runpy, sys\n"
        "runpy.run_path('gunicorn.conf.py')\n"
        "print(json.dumps(sorted(sys.modules)))\n"
    )
    loaded = set(python_printing_json(script))
    ours = sorted(name for name in loaded if name.startswith("app."))
    # The settings (app.core.config, the modules it reads, the check that the database
    # exists) and the access log line.
    assert ours == [
        "app.core",
        "app.core.config",
        "app.core.config_checks",
        "app.core.connections",
        "app.core.createdb",
        "app.core.defaults",
        "app.core.oidc_settings",
        "app.core.production",
        "app.web",
        "app.web.access_log",
    ]
    assert not loaded & {"flask", "flask_sqlalchemy", "sqlalchemy"}


def test_importing_the_app_leaves_out_what_only_some_commands_need() -> None:
    """boto3 (S3 avatars), alembic (migrations, readiness) and rq-scheduler are imported
    where they are used, so `flask create-admin` or a worker start does not pay for them."""
    script = "import sys, wsgi, json; print(json.dumps(sorted(sys.modules)))"
    loaded = {name.split(".")[0] for name in python_printing_json(script)}
    assert not loaded & {"boto3", "botocore", "alembic", "flask_migrate", "rq_scheduler"}


def test_the_libraries_a_command_imports_are_compiled_once_at_install() -> None:
    """Where PYTHONDONTWRITEBYTECODE is set (CI images, the Dockerfile) Python never caches what
    it compiles, so every `flask` command compiled SQLAlchemy and friends from source again,
    doubling the time to import the app. The install compiles them once."""
    script = (
        "import importlib.util, json, os, sys, sysconfig, wsgi\n"
        "lib = sysconfig.get_path('purelib')\n"
        "files = [m.__file__ for m in list(sys.modules.values())\n"
        "         if (getattr(m, '__file__', None) or '').endswith('.py')]\n"
        "print(json.dumps([f for f in files if f.startswith(lib)\n"
        "                  and not os.path.exists(importlib.util.cache_from_source(f))]))\n"
    )
    uncompiled = python_printing_json(script, PYTHONDONTWRITEBYTECODE="1")
    assert uncompiled == [], f"{len(uncompiled)} compiled at every start: {uncompiled[:3]}"
