"""Settings read from the environment, with the embedded defaults of the contract.

`load_config()` returns a plain dict so tests can override any key by passing a dict to
`create_app`. Production refuses the unsafe defaults rather than starting half-secure.

Every process (gunicorn and its config file, the flask commands, the RQ worker and
scheduler) reads `.env` the same way, through `read_dotenv()`: the file found from the
working directory upwards, as the `flask` command finds it, with the real environment winning.
"""

from __future__ import annotations

import json
import math
import os
import secrets
import shlex
import sys
from collections import Counter
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from dotenv import find_dotenv, load_dotenv
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.retry import Retry

SIGNING_KEYS = ("SECRET_KEY", "JWT_SECRET_KEY")
# Every key value this repository ever published as an example: whoever read it could read
# what the key protects (SECRET_KEY encrypts the signing keys at rest and the email outbox),
# so production refuses it whatever its length.
PUBLISHED_EXAMPLE_KEYS = frozenset(
    {
        "dev-secret-key-not-for-production",
        "dev-jwt-secret-key-not-for-production",
        "replace-with-a-long-random-string-for-secret-key",
        "replace-with-a-long-random-string-for-jwt-key",
    }
)
MIN_KEY_LENGTH = 32
MIN_KEY_DISTINCT_CHARACTERS = 10
# Shannon entropy of the key's own characters, in bits: `secrets.token_hex(16)` (32 characters)
# has about 115, `token_urlsafe(48)` about 350; "abab..." or a word repeated has far less.
MIN_KEY_ENTROPY_BITS = 96
KEY_COMMAND = 'python -c "import secrets; print(secrets.token_urlsafe(48))"'
DEV_SECRETS_FILE = "dev-secrets.json"
# The app's instance folder (SQLite file, development keys, printed emails, uploads): beside
# app/, wherever a process is started from.
INSTANCE_DIR = Path(__file__).resolve().parent.parent / "instance"
# The contract's PUBLIC_BASE_URL: gunicorn's default bind, as a browser on this machine names it.
DEFAULT_PUBLIC_BASE_URL = "http://localhost:8000"
# Addresses gunicorn may bind that a browser on this machine reaches as localhost.
LOCAL_HOSTS = frozenset({"0.0.0.0", "127.0.0.1", "[::]", "[::1]", "localhost"})  # noqa: S104
# Seconds a request waits for Redis to connect, and then for each answer.
REDIS_TIMEOUT = 1.0


class ConfigError(RuntimeError):
    """The configuration cannot be used; the message names the setting."""


def _bool(value: str | None, default: bool) -> bool:
    if value is None or value == "":
        return default
    return value.strip().lower() in {"1", "true", "yes", "on"}


def _int(env: dict[str, str], name: str, default: int) -> int:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError as exc:
        raise ConfigError(f"{name} must be a whole number, got {raw!r}") from exc


def with_psycopg2(url: str) -> str:
    """SQLAlchemy 2.1 maps a bare postgresql:// to psycopg 3; we ship psycopg2."""
    raw = url
    for prefix in ("postgres://", "postgresql://"):
        if raw.startswith(prefix):
            return "postgresql+psycopg2://" + raw.removeprefix(prefix)
    return raw


def read_dotenv() -> None:
    """Put the values of `.env` into the environment, without overriding what is set.

    FLASK_SKIP_DOTENV=1, Flask's own switch, turns it off (the test suite sets it, so a
    developer's `.env` never reaches the tests)."""
    if _bool(os.environ.get("FLASK_SKIP_DOTENV"), False):
        return
    path = find_dotenv(".env", usecwd=True)
    if path:
        load_dotenv(path, override=False, encoding="utf-8")


def development_keys(instance: Path) -> dict[str, str]:
    """The signing keys of the embedded default: random, made once per checkout and kept in
    `instance/` (git ignores it, and only the owner may read it). A key written in the code
    would be everyone's key: anyone who read the repository could decrypt the signing key
    stored in a copy of the database, and so sign an admin token."""
    path = instance / DEV_SECRETS_FILE
    try:
        keys = json.loads(path.read_text())
    except (OSError, ValueError):
        keys = {}
    if not all(isinstance(keys.get(name), str) and keys[name] for name in SIGNING_KEYS):
        keys = {name: secrets.token_urlsafe(48) for name in SIGNING_KEYS}
        instance.mkdir(parents=True, exist_ok=True)
        # Created 0600 and replaced atomically: two processes starting at once both end up
        # with one of the complete files, never a half-written one.
        partial = path.with_suffix(f".{os.getpid()}.tmp")
        fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as out:
            json.dump(keys, out)
        os.replace(partial, path)
        keys = json.loads(path.read_text())
    return {name: keys[name] for name in SIGNING_KEYS}


def default_public_base_url(app_env: str, env: dict[str, str]) -> str:
    """The base of the emailed links when PUBLIC_BASE_URL is unset.

    In development it is the server gunicorn serves (GUNICORN_BIND, as gunicorn.conf.py reads
    it), so moving the port moves the links and the tokens' issuer with it; every process
    reads the same variables, so the web process, the flask commands and the worker agree.
    A wildcard or loopback address is reached as localhost; another address is the one the
    other machines reach. Production keeps the contract's value: behind a reverse proxy the
    bind says nothing of the address clients use."""
    if app_env == "production":
        return DEFAULT_PUBLIC_BASE_URL
    bind = (env.get("GUNICORN_BIND") or "").strip()
    if not bind or bind.startswith(("unix:", "fd://")):
        return DEFAULT_PUBLIC_BASE_URL  # gunicorn's default bind, or no TCP port to name
    host, _, port = bind.rpartition(":")
    if not host or not port.isdigit() or (":" in host and not host.startswith("[")):
        host, port = bind, "8000"  # no port: gunicorn serves its default, 8000
    if host in LOCAL_HOSTS:
        host = "localhost"
    return f"http://{host}:{port}"


def load_config(instance_path: str, env: dict[str, str] | None = None) -> dict[str, Any]:
    """The settings from `env`, or from the environment and `.env` when none is given."""
    if env is None:
        read_dotenv()
        env = dict(os.environ)
    instance = Path(instance_path)
    redis_url = env.get("REDIS_URL") or None
    mail_server = env.get("MAIL_SERVER") or None
    app_env = env.get("APP_ENV", "development")
    keys = {name: env.get(name) or "" for name in SIGNING_KEYS}
    if app_env != "production" and not all(keys.values()):
        # Production never falls back: a missing key there is refused by name.
        keys = {
            name: keys[name] or fallback for name, fallback in development_keys(instance).items()
        }
    return {
        "APP_ENV": app_env,
        "SECRET_KEY": keys["SECRET_KEY"],
        "JWT_SECRET_KEY": keys["JWT_SECRET_KEY"],
        "SQLALCHEMY_DATABASE_URI": env.get("DATABASE_URL")
        or f"sqlite:///{instance / 'accounts.sqlite3'}",
        "REDIS_URL": redis_url,
        # Flask-Mail: with no MAIL_SERVER the message is printed and kept in the outbox.
        "MAIL_SERVER": mail_server,
        "MAIL_PORT": _int(env, "MAIL_PORT", 25),
        "MAIL_USE_TLS": _bool(env.get("MAIL_USE_TLS"), False),
        "MAIL_USE_SSL": _bool(env.get("MAIL_USE_SSL"), False),
        "MAIL_USERNAME": env.get("MAIL_USERNAME") or None,
        "MAIL_PASSWORD": env.get("MAIL_PASSWORD") or None,
        "MAIL_DEFAULT_SENDER": env.get("MAIL_DEFAULT_SENDER")
        or "Cinema Accounts <no-reply@localhost>",
        # Seconds each SMTP operation may take (connect, greeting, every command).
        "MAIL_TIMEOUT": _int(env, "MAIL_TIMEOUT", 10),
        "MAIL_OUTBOX_DIR": str(instance / "outbox"),
        "PUBLIC_BASE_URL": (
            env.get("PUBLIC_BASE_URL") or default_public_base_url(app_env, env)
        ).rstrip("/"),
        "ACTIVATION_TOKEN_TTL": _int(env, "ACTIVATION_TOKEN_TTL", 86400),
        "PASSWORD_RESET_TOKEN_TTL": _int(env, "PASSWORD_RESET_TOKEN_TTL", 86400),
        "JWT_ACCESS_TOKEN_EXPIRES": _int(env, "JWT_ACCESS_TOKEN_EXPIRES", 900),
        "JWT_REFRESH_TOKEN_EXPIRES": _int(env, "JWT_REFRESH_TOKEN_EXPIRES", 604800),
        # The `aud` of access tokens: the services that accept them check it.
        "JWT_AUDIENCE": env.get("JWT_AUDIENCE") or "cinema",
        # How long each process keeps the signing keys before reading them again: the
        # longest a process goes on signing with a key after `flask keys rotate`.
        "SIGNING_KEY_CACHE_SECONDS": _int(env, "SIGNING_KEY_CACHE_SECONDS", 30),
        "TOKEN_CLEANUP_INTERVAL": _int(env, "TOKEN_CLEANUP_INTERVAL", 3600),
        # A hung PostgreSQL costs a request a few seconds, then a 503; 0 = wait for ever.
        "DATABASE_CONNECT_TIMEOUT": _int(env, "DATABASE_CONNECT_TIMEOUT", 3),
        "DATABASE_STATEMENT_TIMEOUT": _int(env, "DATABASE_STATEMENT_TIMEOUT", 5),
        # How many reverse proxies stand in front of gunicorn: X-Forwarded-For is believed for
        # that many hops, so rate limits key on the client, not on the proxy. 0 = none.
        "TRUSTED_PROXIES": _int(env, "TRUSTED_PROXIES", 0),
        "RATELIMIT_ENABLED": _bool(env.get("RATELIMIT_ENABLED"), True),
        "S3_ENDPOINT_URL": env.get("S3_ENDPOINT_URL") or None,
        "S3_BUCKET": env.get("S3_BUCKET") or None,
        # The S3 address browsers can reach, when it differs from S3_ENDPOINT_URL.
        "S3_PUBLIC_ENDPOINT_URL": env.get("S3_PUBLIC_ENDPOINT_URL") or None,
        "UPLOAD_DIR": str(instance / "uploads"),
    }


def redis_client_options() -> dict[str, Any]:
    """How every Redis client of a request talks to Redis: a hung Redis costs it about
    REDIS_TIMEOUT seconds per client, not redis-py's 5 s per try with ten retries."""
    return {
        "socket_connect_timeout": REDIS_TIMEOUT,
        "socket_timeout": REDIS_TIMEOUT,
        # One immediate retry on a refused or reset connection (a pooled socket that a Redis
        # restart closed), none on a timeout: a Redis that does not answer will not answer
        # the second time either.
        "retry": Retry(NoBackoff(), 1, supported_errors=(RedisConnectionError,)),
    }


def engine_options(config: dict[str, Any]) -> dict[str, Any]:
    # hide_parameters: bound values (password hashes, token hashes, emails) stay out of SQL
    # logging and out of the text of database errors, which `errors.py` logs.
    options: dict[str, Any] = {"hide_parameters": True}
    if not str(config["SQLALCHEMY_DATABASE_URI"]).startswith("postgresql"):
        return options
    statement_ms = config["DATABASE_STATEMENT_TIMEOUT"] * 1000
    options.update(
        # No pre-ping round trip per checkout: `db.py` drops a pooled connection the server
        # has closed (a restart) by looking at its socket. Connections are renewed hourly.
        pool_recycle=3600,
        connect_args={
            "connect_timeout": config["DATABASE_CONNECT_TIMEOUT"],
            # The server cancels a statement running longer; `db.py` stops waiting for one
            # that no answer comes back for (a hung server cancels nothing).
            "options": f"-c statement_timeout={statement_ms}",
            # A peer that vanished without closing (a host or network gone) is noticed on
            # an idle pooled connection within a minute instead of the system's two hours.
            "keepalives": 1,
            "keepalives_idle": 30,
            "keepalives_interval": 10,
            "keepalives_count": 3,
        },
    )
    return options


def finalize_config(config: dict[str, Any]) -> dict[str, Any]:
    """Derive the settings of the extensions from ours, then refuse unsafe production setups."""
    config["SQLALCHEMY_DATABASE_URI"] = with_psycopg2(str(config["SQLALCHEMY_DATABASE_URI"]))
    config.setdefault("RATELIMIT_STORAGE_URI", config["REDIS_URL"] or "memory://")
    config.setdefault("RATELIMIT_HEADERS_ENABLED", True)
    config.setdefault("RATELIMIT_KEY_PREFIX", "accounts-limits")
    config.setdefault("REDIS_CLIENT_OPTIONS", redis_client_options())
    config.setdefault("RATELIMIT_STORAGE_OPTIONS", config["REDIS_CLIENT_OPTIONS"])
    # Every count is hit-then-check in a moving window: atomic, with no burst at window edges.
    config.setdefault("RATELIMIT_STRATEGY", "moving-window")
    # Redis down must not turn every limited endpoint into a 500 (a registration lost): each
    # process counts in memory until Redis answers again.
    config.setdefault("RATELIMIT_IN_MEMORY_FALLBACK_ENABLED", True)
    # Access tokens are signed by app.keys with EdDSA; decoding accepts that one algorithm,
    # our issuer and our audience, whatever a token's header asks for (flask-jwt-extended
    # adds JWT_ALGORITHM, HS256 by default, to the accepted ones, hence set here too).
    # JWT_SECRET_KEY signs nothing any more (refresh tokens are opaque strings).
    config["JWT_ALGORITHM"] = "EdDSA"
    config["JWT_DECODE_ALGORITHMS"] = ["EdDSA"]
    config["JWT_DECODE_ISSUER"] = config["PUBLIC_BASE_URL"]
    config["JWT_DECODE_AUDIENCE"] = config["JWT_AUDIENCE"]
    # Flask's own defaults already hold MAX_CONTENT_LENGTH = None (no limit): setdefault
    # would keep that, so an unset or None limit is replaced here.
    if config.get("MAX_CONTENT_LENGTH") is None:
        config["MAX_CONTENT_LENGTH"] = 6 * 1024 * 1024
    config.setdefault("SQLALCHEMY_ENGINE_OPTIONS", engine_options(config))
    config.setdefault("API_TITLE", "Cinema accounts API")
    config.setdefault("API_VERSION", "1.0.0")
    config.setdefault("OPENAPI_VERSION", "3.0.3")
    config.setdefault("OPENAPI_URL_PREFIX", "/")
    config.setdefault("OPENAPI_JSON_PATH", "openapi.json")
    config.setdefault("OPENAPI_SWAGGER_UI_PATH", "/docs")
    # Served by app/docs.py from the pinned swagger-ui-bundle package, never from a CDN.
    config.setdefault("OPENAPI_SWAGGER_UI_URL", "/docs/static/")
    if config["APP_ENV"] not in {"development", "production"}:
        raise ConfigError(
            f"APP_ENV must be 'development' or 'production', got {config['APP_ENV']!r}"
        )
    if config["APP_ENV"] == "production":
        _refuse_unsafe_production(config)
    return config


def entropy_bits(value: str) -> float:
    """Shannon entropy of the string's character frequencies, times its length."""
    counts = Counter(value)
    return -sum(n * math.log2(n / len(value)) for n in counts.values())


def weak_key_reason(value: str) -> str | None:
    """Why a signing key cannot protect production, or None."""
    if not value:
        return "is not set"
    if value in PUBLISHED_EXAMPLE_KEYS or value.startswith("replace-with"):
        return "is an example value published in this repository"
    if len(value) < MIN_KEY_LENGTH:
        return f"is shorter than {MIN_KEY_LENGTH} characters"
    if len(set(value)) < MIN_KEY_DISTINCT_CHARACTERS or entropy_bits(value) < MIN_KEY_ENTROPY_BITS:
        return "is not random enough (too few different characters)"
    return None


def _refuse_unsafe_production(config: dict[str, Any]) -> None:
    problems = []
    for name in SIGNING_KEYS:
        reason = weak_key_reason(str(config.get(name) or ""))
        if reason:
            problems.append(f"{name} {reason}; generate one with {KEY_COMMAND}")
    if config["SECRET_KEY"] and config["SECRET_KEY"] == config["JWT_SECRET_KEY"]:
        problems.append("SECRET_KEY and JWT_SECRET_KEY must differ")
    if str(config["SQLALCHEMY_DATABASE_URI"]).startswith("sqlite"):
        problems.append("DATABASE_URL must point at PostgreSQL, not SQLite")
    if not config["REDIS_URL"]:
        problems.append("REDIS_URL must be set (jobs and rate limits need Redis)")
    if not config["MAIL_SERVER"]:
        # Without it emails are printed: reset links would land in the process's log.
        problems.append("MAIL_SERVER must be set (without it emails, links and all, are printed)")
    if problems:
        raise ConfigError("refusing to start with APP_ENV=production: " + "; ".join(problems))


def libpq_url(database_url: str) -> str:
    """The SQLAlchemy URL of a PostgreSQL database as libpq (psycopg2.connect) reads it."""
    return "postgresql://" + database_url.split("://", 1)[1]


def missing_database(config: dict[str, Any]) -> str | None:
    """The name of the PostgreSQL database DATABASE_URL names when the server answers that it
    does not exist; None when it exists, is no PostgreSQL database, or the server does not
    answer (an outage, which requests meet with a 503 until it is over)."""
    url = str(config["SQLALCHEMY_DATABASE_URI"])
    if not url.startswith("postgresql"):
        return None
    import psycopg2  # only here: most commands, and gunicorn's master, never connect

    name = unquote(urlsplit(url).path.lstrip("/"))
    try:
        timeout = config["DATABASE_CONNECT_TIMEOUT"]
        psycopg2.connect(libpq_url(url), connect_timeout=timeout).close()
    except psycopg2.OperationalError as exc:
        # The connection error carries no SQLSTATE, only the server's words.
        if f'database "{name}" does not exist' in str(exc):
            return name
    return None


def createdb_command(database_url: str, name: str) -> str:
    """The `createdb` command that creates the database, without the password of the URL."""
    parts = urlsplit(database_url)
    command = ["createdb"]
    if parts.hostname:
        command += ["-h", parts.hostname]
    if parts.port:
        command += ["-p", str(parts.port)]
    if parts.username:
        command += ["-U", unquote(parts.username)]
    return shlex.join([*command, name])


def _refuse_missing_database(config: dict[str, Any]) -> None:
    name = missing_database(config)
    if name is None:
        return
    command = createdb_command(str(config["SQLALCHEMY_DATABASE_URI"]), name)
    advice = f"create it with `{command}`"
    if config["APP_ENV"] == "development":
        advice += " (in development `make run` creates it)"
    raise ConfigError(f'database "{name}" does not exist (DATABASE_URL): {advice}')


def check_environment_or_exit() -> None:
    """Refuse a misconfiguration with one line on stderr and status 1, not a traceback.

    Called by gunicorn's master (gunicorn.conf.py) before it forks, since a worker that
    fails at import is only restarted, and by `wsgi.py` for the flask commands. A database
    that was never created is refused here too: every command and every request would fail
    on it."""
    try:
        _refuse_missing_database(finalize_config(load_config(str(INSTANCE_DIR))))
    except ConfigError as exc:
        sys.exit(f"configuration error: {exc}")
