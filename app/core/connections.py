"""How the app's clients talk to PostgreSQL and Redis: timeouts, retries, keep-alives."""

from __future__ import annotations

from typing import Any

from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.retry import Retry

# Seconds a request waits for Redis to connect, and then for each answer.
REDIS_TIMEOUT = 1.0


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
    # logging and out of the text of database errors, which `app/web/problems.py` logs.
    options: dict[str, Any] = {"hide_parameters": True}
    if not str(config["SQLALCHEMY_DATABASE_URI"]).startswith("postgresql"):
        return options
    statement_ms = config["DATABASE_STATEMENT_TIMEOUT"] * 1000
    options.update(
        # No pre-ping round trip per checkout: app/core/postgres.py drops a pooled connection
        # the server has closed (a restart) by looking at its socket. Renewed hourly.
        pool_recycle=3600,
        connect_args={
            "connect_timeout": config["DATABASE_CONNECT_TIMEOUT"],
            # The server cancels a statement running longer; app/core/postgres.py stops waiting
            # for one that no answer comes back for (a hung server cancels nothing).
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


def with_psycopg2(url: str) -> str:
    """SQLAlchemy 2.1 maps a bare postgresql:// to psycopg 3; we ship psycopg2."""
    raw = url
    for prefix in ("postgres://", "postgresql://"):
        if raw.startswith(prefix):
            return "postgresql+psycopg2://" + raw.removeprefix(prefix)
    return raw
