"""`python -m app.createdb`: in development, create the PostgreSQL database DATABASE_URL
names when it does not exist yet. `make run` runs it before migrating, so the README's
`DATABASE_URL=postgresql://…/accounts make run` works before any `createdb`.

Only in development and only a database that does not exist: production's databases are made
by their operator (the flask commands and gunicorn refuse a missing one in one line)."""

from __future__ import annotations

import sys
from urllib.parse import urlsplit

import psycopg2
from psycopg2 import sql

from app.config import (
    INSTANCE_DIR,
    ConfigError,
    finalize_config,
    libpq_url,
    load_config,
    missing_database,
)


def main() -> None:
    try:
        config = finalize_config(load_config(str(INSTANCE_DIR)))
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
