"""Settings read from the environment, with the embedded defaults of the contract.

`load_config()` returns a plain dict so tests can override any key by passing a dict to
`create_app`. Production refuses the unsafe defaults rather than starting half-secure.

Every process (gunicorn and its config file, the flask commands, the RQ worker and
scheduler) reads `.env` the same way, through `read_dotenv()`: the file found from the
working directory upwards, as the `flask` command finds it, with the real environment winning.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

from dotenv import find_dotenv, load_dotenv

from app.core.config_checks import ConfigError, refuse_unusable
from app.core.connections import engine_options, redis_client_options, with_psycopg2
from app.core.defaults import default_public_base_url, development_keys, webauthn_settings
from app.core.oidc_settings import oidc_settings
from app.core.production import SIGNING_KEYS

# The app's instance folder (SQLite file, development keys, printed emails, uploads): beside
# app/, wherever a process is started from.
INSTANCE_DIR = Path(__file__).resolve().parents[2] / "instance"


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


def read_dotenv() -> None:
    """Put the values of `.env` into the environment, without overriding what is set.

    FLASK_SKIP_DOTENV=1, Flask's own switch, turns it off (the test suite sets it, so a
    developer's `.env` never reaches the tests)."""
    if _bool(os.environ.get("FLASK_SKIP_DOTENV"), False):
        return
    path = find_dotenv(".env", usecwd=True)
    if path:
        load_dotenv(path, override=False, encoding="utf-8")


def load_config(instance_path: str, env: dict[str, str] | None = None) -> dict[str, Any]:
    """The settings from `env`, or from the environment and `.env` when none is given."""
    if env is None:
        read_dotenv()
        env = dict(os.environ)
    instance = Path(instance_path)
    app_env = env.get("APP_ENV", "development")
    keys = {name: env.get(name) or "" for name in SIGNING_KEYS}
    if app_env != "production" and not all(keys.values()):
        # Production never falls back: a missing key there is refused by name.
        keys = {
            name: keys[name] or fallback for name, fallback in development_keys(instance).items()
        }
    mail = _mail_settings(env, instance)
    return {
        "APP_ENV": app_env,
        **keys,
        "SQLALCHEMY_DATABASE_URI": env.get("DATABASE_URL")
        or f"sqlite:///{instance / 'accounts.sqlite3'}",
        "REDIS_URL": env.get("REDIS_URL") or None,
        **mail,
        **_token_settings(env),
        **oidc_settings(env, mail["PUBLIC_BASE_URL"], ConfigError),
        # A hung PostgreSQL costs a request a few seconds, then a 503; 0 = wait for ever.
        "DATABASE_CONNECT_TIMEOUT": _int(env, "DATABASE_CONNECT_TIMEOUT", 3),
        "DATABASE_STATEMENT_TIMEOUT": _int(env, "DATABASE_STATEMENT_TIMEOUT", 5),
        # How many reverse proxies stand in front of gunicorn: X-Forwarded-For is believed for
        # that many hops, so rate limits key on the client, not on the proxy. 0 = none.
        "TRUSTED_PROXIES": _int(env, "TRUSTED_PROXIES", 0),
        "RATELIMIT_ENABLED": _bool(env.get("RATELIMIT_ENABLED"), True),
        # Per-address limits count an IPv6 client by this prefix: a client is given a whole
        # /64 (a /56 or /48 by some providers), and takes a new address from it at will.
        "RATELIMIT_IPV6_PREFIX": _int(env, "RATELIMIT_IPV6_PREFIX", 64),
        # How many user lists (GET /admin/users) one staff account may ask for.
        "ADMIN_LIST_RATE_LIMIT": env.get("ADMIN_LIST_RATE_LIMIT") or "60/minute",
        "S3_ENDPOINT_URL": env.get("S3_ENDPOINT_URL") or None,
        "S3_BUCKET": env.get("S3_BUCKET") or None,
        # The S3 address browsers can reach, when it differs from S3_ENDPOINT_URL.
        "S3_PUBLIC_ENDPOINT_URL": env.get("S3_PUBLIC_ENDPOINT_URL") or None,
        "UPLOAD_DIR": str(instance / "uploads"),
        **_ways_in_settings(env),
    }


def _mail_settings(env: dict[str, str], instance: Path) -> dict[str, Any]:
    return {
        # Flask-Mail: with no MAIL_SERVER the message is printed and kept in the outbox.
        "MAIL_SERVER": env.get("MAIL_SERVER") or None,
        "MAIL_PORT": _int(env, "MAIL_PORT", 25),
        "MAIL_USE_TLS": _bool(env.get("MAIL_USE_TLS"), False),
        "MAIL_USE_SSL": _bool(env.get("MAIL_USE_SSL"), False),
        "MAIL_USERNAME": env.get("MAIL_USERNAME") or None,
        "MAIL_PASSWORD": env.get("MAIL_PASSWORD") or None,
        "MAIL_DEFAULT_SENDER": env.get("MAIL_DEFAULT_SENDER")
        or "Cinema Accounts <no-reply@localhost>",
        # Seconds each SMTP operation may take (connect, greeting, every command).
        "MAIL_TIMEOUT": _int(env, "MAIL_TIMEOUT", 10),
        # Seconds the worker's kept SMTP connection may sit idle before the next email opens
        # a new one (app/courier/delivery.py); 0 opens a connection for every email.
        "MAIL_IDLE_TIMEOUT": _int(env, "MAIL_IDLE_TIMEOUT", 30),
        "MAIL_OUTBOX_DIR": str(instance / "outbox"),
        "PUBLIC_BASE_URL": (
            env.get("PUBLIC_BASE_URL")
            or default_public_base_url(env.get("APP_ENV", "development"), env)
        ).rstrip("/"),
    }


def _token_settings(env: dict[str, str]) -> dict[str, Any]:
    return {
        "ACTIVATION_TOKEN_TTL": _int(env, "ACTIVATION_TOKEN_TTL", 86400),
        "PASSWORD_RESET_TOKEN_TTL": _int(env, "PASSWORD_RESET_TOKEN_TTL", 86400),
        "JWT_ACCESS_TOKEN_EXPIRES": _int(env, "JWT_ACCESS_TOKEN_EXPIRES", 900),
        "JWT_REFRESH_TOKEN_EXPIRES": _int(env, "JWT_REFRESH_TOKEN_EXPIRES", 604800),
        # Seconds a just-rotated refresh token still continues its login; 0 = off.
        "REFRESH_REUSE_GRACE": _int(env, "REFRESH_REUSE_GRACE", 10),
        # The `aud` of access tokens: the services that accept them check it.
        "JWT_AUDIENCE": env.get("JWT_AUDIENCE") or "cinema",
        # How long each process keeps the signing keys before reading them again: the
        # longest a process goes on signing with a key after `flask keys rotate`.
        "SIGNING_KEY_CACHE_SECONDS": _int(env, "SIGNING_KEY_CACHE_SECONDS", 30),
        "TOKEN_CLEANUP_INTERVAL": _int(env, "TOKEN_CLEANUP_INTERVAL", 3600),
        # The cleanup job's RQ timeout: a run stops 30 s before it, between two batches, and
        # a continuation carries on at once (app/periodic/cleanup.py). Short, so a backlog
        # never holds a worker from the emails queued meanwhile for longer than this.
        "TOKEN_CLEANUP_TIMEOUT": _int(env, "TOKEN_CLEANUP_TIMEOUT", 120),
        # Security events older than this are deleted by the scheduled clean-up.
        "SECURITY_EVENT_RETENTION_DAYS": _int(env, "SECURITY_EVENT_RETENTION_DAYS", 90),
    }


def _ways_in_settings(env: dict[str, str]) -> dict[str, Any]:
    return {
        # The name authenticator apps show beside the account (the contract's RP name).
        "TOTP_ISSUER": env.get("TOTP_ISSUER") or "Cinema",
        # Admins without two-factor get 403 on the admin endpoints.
        "ADMIN_MFA_REQUIRED": _bool(env.get("ADMIN_MFA_REQUIRED"), False),
        # Passkeys: unset, the RP id and the one origin follow PUBLIC_BASE_URL (derive_settings).
        "WEBAUTHN_RP_ID": env.get("WEBAUTHN_RP_ID") or None,
        "WEBAUTHN_RP_NAME": env.get("WEBAUTHN_RP_NAME") or "Cinema",
        "WEBAUTHN_ORIGINS": env.get("WEBAUTHN_ORIGINS") or None,
    }


def derive_settings(config: dict[str, Any]) -> dict[str, Any]:
    """Complete `config` with what the extensions read, derived from our settings; then
    refuse an unusable or, in production, unsafe configuration (ConfigError)."""
    config["SQLALCHEMY_DATABASE_URI"] = with_psycopg2(str(config["SQLALCHEMY_DATABASE_URI"]))
    _limiter_settings(config)
    webauthn_settings(config)
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
    # Served by app/web/docs.py from the pinned swagger-ui-bundle package, never from a CDN.
    config.setdefault("OPENAPI_SWAGGER_UI_URL", "/docs/static/")
    refuse_unusable(config)
    return config


def _limiter_settings(config: dict[str, Any]) -> None:
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


def check_environment_or_exit() -> None:
    """Refuse a misconfiguration with one line on stderr and status 1, not a traceback.

    Called by gunicorn's master (gunicorn.conf.py) before it forks, since a worker that
    fails at import is only restarted, and by `wsgi.py` for the flask commands. A database
    that was never created is refused here too: every command and every request would fail
    on it."""
    try:
        config = derive_settings(load_config(str(INSTANCE_DIR)))
    except ConfigError as exc:
        sys.exit(f"configuration error: {exc}")
    from app.core.createdb import missing_database_problem  # psycopg2, only for this check

    problem = missing_database_problem(config)
    if problem:
        sys.exit(f"configuration error: {problem}")
