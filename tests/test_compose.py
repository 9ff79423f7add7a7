"""docker-compose.yml, the Dockerfile and CI: valid, pinned, and the stack the issue asks for.

`docker-compose config` checks what a YAML parser cannot: interpolation, the empty defaults
of the secrets, depends_on conditions. Without the binary the test is skipped, unless
TEST_REQUIRE_SERVICES=1 (CI), where a missing tool must not pass as a green run.
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
import subprocess
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

from app.core.config import ConfigError, derive_settings, load_config
from tests.support.apps import ROOT
from tests.support.services import skip_or_fail

COMPOSE_FILE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "Dockerfile"
DEV_LOCK = ROOT / "requirements.lock"
RUNTIME_LOCK = ROOT / "requirements-runtime.lock"
CI_WORKFLOW = ROOT / ".github" / "workflows" / "ci.yml"

# Host ports each service publishes (pgAdmin serves on 80 inside its container). PostgreSQL
# and Redis are on 15432 and 16379, so a local server on 5432 or 6379 does not block the stack.
PUBLISHED_PORTS = {
    "backend": {8000},
    "postgres": {15432},
    "pgadmin": {3333},
    "mailpit": {1025, 8025},
    "minio": {9000, 9001},
    "redis": {16379},
    "dashboard": {9181},
}
ONE_SHOT_AND_QUEUE_SERVICES = {"minio-init", "migrator", "worker", "scheduler"}


def docker_compose() -> list[str]:
    binary = shutil.which("docker-compose")
    if binary is not None:
        return [binary]
    # GitHub's runners ship Compose v2 as a docker plugin, not the docker-compose binary.
    docker = shutil.which("docker")
    if docker is not None:
        probe = subprocess.run(
            [docker, "compose", "version"], capture_output=True, text=True, timeout=30
        )
        if probe.returncode == 0:
            return [docker, "compose"]
    skip_or_fail("neither docker-compose nor the docker compose plugin is installed")


def compose_config(tmp_path: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    # No environment but what finds the binary and its config: a variable set in a developer's
    # shell or in CI (a password, a secret) must not be what makes the file valid.
    environ = {k: v for k, v in os.environ.items() if k in {"PATH", "HOME"}}
    # An empty env file: a developer's .env must not decide what this test sees.
    env_file = tmp_path / "empty.env"
    env_file.write_text("")
    return subprocess.run(
        [*docker_compose(), "--env-file", str(env_file), "-f", str(COMPOSE_FILE), "config", *args],
        cwd=ROOT,
        env=environ | env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_compose_file_is_valid_as_it_is(tmp_path: Path) -> None:
    result = compose_config(tmp_path, "-q")
    assert result.returncode == 0, result.stderr


def test_the_stack_refuses_to_start_without_the_secrets(tmp_path: Path) -> None:
    """With no secrets set, the app in the stack stops at once and names them."""
    result = compose_config(tmp_path)
    assert result.returncode == 0, result.stderr
    backend_env = {
        k: str(v or "")
        for k, v in yaml.safe_load(result.stdout)["services"]["backend"]["environment"].items()
    }
    assert backend_env["APP_ENV"] == "production"
    config = load_config(str(tmp_path), env=backend_env)
    with pytest.raises(ConfigError) as refused:
        derive_settings(config)
    assert "SECRET_KEY" in str(refused.value)
    assert "JWT_SECRET_KEY" in str(refused.value)


def test_the_stack_starts_once_the_secrets_are_set(tmp_path: Path) -> None:
    result = compose_config(
        tmp_path, SECRET_KEY=secrets.token_urlsafe(48), JWT_SECRET_KEY=secrets.token_urlsafe(48)
    )
    assert result.returncode == 0, result.stderr
    backend_env = {
        k: str(v or "")
        for k, v in yaml.safe_load(result.stdout)["services"]["backend"]["environment"].items()
    }
    derive_settings(load_config(str(tmp_path), env=backend_env))  # refuses nothing


def services() -> dict[str, Any]:
    config = yaml.safe_load(COMPOSE_FILE.read_text())
    return dict(config["services"])


def published(service: dict[str, Any]) -> list[tuple[str, int]]:
    """(host address, host port) of each "address:host:container" entry."""
    pairs = []
    for entry in service.get("ports", []):
        address, host_port, _container_port = str(entry).split(":")
        pairs.append((address, int(host_port)))
    return pairs


def test_compose_has_every_service_of_the_stack() -> None:
    assert set(services()) == set(PUBLISHED_PORTS) | ONE_SHOT_AND_QUEUE_SERVICES


def test_compose_publishes_the_ports_of_the_issue_on_localhost_only() -> None:
    for name, service in services().items():
        ports = published(service)
        assert {port for _address, port in ports} == PUBLISHED_PORTS.get(name, set()), name
        # Redis, Mailpit and the dashboard have no authentication.
        assert all(address == "127.0.0.1" for address, _port in ports), name


def test_compose_runs_the_worker_and_scheduler_commands() -> None:
    config = services()
    assert config["worker"]["command"] == ["flask", "--app", "wsgi", "rq", "worker"]
    assert config["scheduler"]["command"] == ["flask", "--app", "wsgi", "rq", "scheduler"]
    dashboard = config["dashboard"]["command"]
    assert dashboard[0] == "rq-dashboard"
    assert dashboard[dashboard.index("--port") + 1] == "9181"
    assert (
        dashboard[dashboard.index("--redis-url") + 1]
        == config["worker"]["environment"]["REDIS_URL"]
    )


def test_postgres_and_redis_leave_the_default_ports_to_local_servers() -> None:
    """A PostgreSQL or Redis already running on the host (the test suite's own) keeps its port."""
    config = services()
    for name, default_port in (("postgres", 5432), ("redis", 6379)):
        host_ports = {port for _address, port in published(config[name])}
        assert host_ports, name
        assert default_port not in host_ports, name


def test_the_migrator_upgrades_seeds_and_ensures_the_keys() -> None:
    command = services()["migrator"]["command"]
    assert command[:2] == ["sh", "-c"]
    steps = [step.strip() for step in command[2].split("&&")]
    assert steps == [
        "flask --app wsgi db upgrade",
        "flask --app wsgi seed-groups",
        "flask --app wsgi keys ensure",
    ]


# A release: a version with at least major.minor (16.15-alpine, v1.29.7, 9.17) or a MinIO release
# stamp. `latest`, a missing tag and a bare major (16-alpine) all move under the same name.
RELEASE_TAG = re.compile(r"v?\d+\.\d+[\w.-]*|RELEASE\.\d{4}-\d\d-\d\dT\d\d-\d\d-\d\dZ[\w.-]*")


def image_tag(image: str) -> str | None:
    """The tag of quay.io/minio/mc:RELEASE.x is RELEASE.x; a registry's ":port" is no tag."""
    last_part = image.split("@")[0].rsplit("/", 1)[-1]
    return last_part.split(":", 1)[1] if ":" in last_part else None


def test_every_image_of_the_stack_is_pinned_to_a_release() -> None:
    for name, service in services().items():
        image = service.get("image")
        assert image, name
        tag = image_tag(image)
        assert tag not in {None, "latest"}, (name, image)
        if "build" in service:
            continue  # built from this checkout under a local tag, never pulled
        assert RELEASE_TAG.fullmatch(tag or ""), (name, image)


def dockerfile_instructions() -> list[str]:
    """The Dockerfile's instructions, continuation lines joined, comments dropped."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    return [
        line.strip()
        for line in text.splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]


def test_the_base_image_is_pinned_to_a_patch_release() -> None:
    bases = [
        line.split()[1] for line in dockerfile_instructions() if line.upper().startswith("FROM")
    ]
    assert bases
    for base in bases:
        assert re.fullmatch(r"\d+\.\d+\.\d+[\w.-]*", image_tag(base) or ""), base


# The tools a server never runs: in the image they are only size and attack surface.
DEV_TOOLS = {"pytest", "pytest-cov", "pytest-xdist", "ruff", "mypy", "moto", "schemathesis"}


def normalized(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def lock_pins(lock: Path) -> dict[str, str]:
    pins = re.findall(
        r"^([A-Za-z0-9][A-Za-z0-9._-]*)(?:\[[^\]]*\])?==(\S+)", lock.read_text(), re.M
    )
    return {normalized(name): version for name, version in pins}


def test_the_image_installs_a_lock_without_dev_tools() -> None:
    instructions = dockerfile_instructions()
    final_from = max(i for i, line in enumerate(instructions) if line.upper().startswith("FROM"))
    final_stage = instructions[final_from:]
    installs = [line for line in final_stage if line.startswith("RUN") and "pip install" in line]
    installed_locks = {lock for line in installs for lock in re.findall(r"[\w.-]+\.lock", line)}
    assert installed_locks, "the final stage installs no lock"
    copied = " ".join(line for line in final_stage if line.startswith("COPY"))
    for lock in installed_locks:
        assert lock in copied, lock
        pins = lock_pins(ROOT / lock)
        assert pins, lock
        assert not DEV_TOOLS & set(pins), (lock, sorted(DEV_TOOLS & set(pins)))
    # Nothing installed by name beside the lock either.
    for line in installs:
        assert not DEV_TOOLS & {normalized(word) for word in line.split()}, line


def test_the_runtime_lock_is_the_dev_lock_without_the_dev_extras() -> None:
    """The image runs the versions the tests ran, and every main dependency of pyproject."""
    runtime, dev = lock_pins(RUNTIME_LOCK), lock_pins(DEV_LOCK)
    assert {name: dev.get(name) for name in runtime} == runtime
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    main = {
        normalized(re.split(r"[\s\[<>=!~;]", dep, maxsplit=1)[0]) for dep in project["dependencies"]
    }
    missing = main - set(runtime)
    assert not missing, f"run `make lock`: {sorted(missing)} not in {RUNTIME_LOCK.name}"


def test_ci_runs_what_ci_run_runs() -> None:
    """The workflow runs `make test` and `make lint` (ruff format included), as .ci/run does."""
    job = yaml.safe_load(CI_WORKFLOW.read_text())["jobs"]["test"]
    commands = [step.get("run", "") for step in job["steps"]]
    assert any(command.startswith("make test") for command in commands), commands
    assert "make lint" in commands, commands
    assert job["env"]["TEST_REQUIRE_SERVICES"] == "1"
    audit = next(command for command in commands if "pip-audit" in command)
    assert re.search(r"pip-audit==\d+\.\d+\.\d+", audit), audit
    # The Makefile installs with uv, so a pip cache would hold nothing worth restoring.
    for step in job["steps"]:
        assert "cache" not in step.get("with", {}), step
    for name, service in job["services"].items():
        assert RELEASE_TAG.fullmatch(image_tag(service["image"]) or ""), name


class _ReadSettings(dict[str, str]):
    """An empty environment that records every variable the app asks it for."""

    def __init__(self) -> None:
        super().__init__()
        self.asked: set[str] = set()

    def get(self, key: str, default: Any = None) -> Any:
        self.asked.add(key)
        return super().get(key, default)


def test_every_setting_the_app_reads_reaches_the_compose_services(tmp_path: Path) -> None:
    """A setting missing from x-app-env is silently ignored by the whole stack (.env is not
    in the image): TRUSTED_PROXIES behind a proxy, say, would put every client behind one
    address's rate limits. Only the SMTP login and TLS settings are left out: Mailpit needs
    neither."""
    environment = _ReadSettings()
    load_config(str(tmp_path), env=environment)
    passed = set(yaml.safe_load(COMPOSE_FILE.read_text())["x-app-env"])
    mailpit_needs_none = {"MAIL_USE_TLS", "MAIL_USE_SSL", "MAIL_USERNAME", "MAIL_PASSWORD"}
    # GUNICORN_BIND is read in development only, for a PUBLIC_BASE_URL left unset; compose
    # runs production, which reads nothing x-app-env lacks, and passes PUBLIC_BASE_URL.
    assert environment.asked - passed == mailpit_needs_none | {"GUNICORN_BIND"}
    production = _ReadSettings()
    production["APP_ENV"] = "production"
    load_config(str(tmp_path), env=production)
    assert production.asked - passed == mailpit_needs_none
