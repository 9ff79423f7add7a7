"""`python -m app.core.createdb`: in development, create the PostgreSQL database DATABASE_URL
names when it does not exist yet. `make run` runs it before migrating, so the README's
`DATABASE_URL=postgresql://…/accounts make run` works before any `createdb`.

Only in development and only a database that does not exist: production's databases are made
by their operator (the flask commands and gunicorn refuse a missing one in one line, with
`missing_database_problem`)."""

from __future__ import annotations

import shlex
import sys
from typing import Any
from urllib.parse import unquote, urlsplit

import psycopg2
from psycopg2 import sql

from app.core.config import INSTANCE_DIR, ConfigError, derive_settings, load_config


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


def missing_database_problem(config: dict[str, Any]) -> str | None:
    """One line saying that the database DATABASE_URL names does not exist and how to make
    it, or None: every command and every request would fail on a database never created."""
    name = missing_database(config)
    if name is None:
        return None
    command = createdb_command(str(config["SQLALCHEMY_DATABASE_URI"]), name)
    advice = f"create it with `{command}`"
    if config["APP_ENV"] == "development":
        advice += " (in development `make run` creates it)"
    return f'database "{name}" does not exist (DATABASE_URL): {advice}'


def main() -> None:
    try:
        config = derive_settings(load_config(str(INSTANCE_DIR)))
    except ConfigError:
        return  # the flask command that comes next says what is wrong, in one line
    if config["APP_ENV"] != "development":
        return
    name = missing_database(config)
    if name is None:
        return
    # Created from the server's maintenance database, as `createdb` does, as the same user.
    url = urlsplit(libpq_url(str(config["SQLALCHEMY_DATABASE_URI"])))
    server = url._replace(path="/postgres").geturl()
    try:
        connection = psycopg2.connect(server, connect_timeout=config["DATABASE_CONNECT_TIMEOUT"])
        try:
            connection.autocommit = True  # CREATE DATABASE cannot run in a transaction
            with connection.cursor() as cursor:
                cursor.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        finally:
            connection.close()
    except psycopg2.Error as exc:
        reason = str(exc).strip().splitlines()[0]
        sys.exit(f'could not create the database "{name}": {reason}')
    print(f'created the database "{name}"')


if __name__ == "__main__":
    main()
