"""Flask-Migrate (`flask db …`, `flask_migrate.upgrade()`), imported on first use.

Importing Flask-Migrate imports Alembic, about a third of the app's import time, which no
request and no other command needs. What Flask-Migrate looks up in
`app.extensions["migrate"]` is kept here, and its `Migrate` is built when a migration runs.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import cached_property
from typing import Any

import click
from flask import Flask
from flask_sqlalchemy import SQLAlchemy


class MigrationSettings:
    """The fields of Flask-Migrate's own `_MigrateConfig` that its functions read; env.py
    takes the metadata from `db`."""

    def __init__(self, db: SQLAlchemy, directory: str) -> None:
        self.db = db
        self.directory = directory
        # SQLite alters tables only by copying them, which Alembic's batch mode does.
        self.configure_args: dict[str, Any] = {"compare_type": True, "render_as_batch": True}

    @cached_property
    def migrate(self) -> Any:
        from flask_migrate import Migrate

        return Migrate(db=self.db, directory=self.directory, **self.configure_args)


class MigrationCommands(click.Command):
    """`flask db`: stands in the command list; parsing its arguments hands over to
    Flask-Migrate's own group, so every `flask db …` command and option works as documented."""

    def make_context(
        self,
        info_name: str | None,
        args: list[str],
        parent: click.Context | None = None,
        **extra: Any,
    ) -> click.Context:
        from flask_migrate.cli import db as migrate_group

        return migrate_group.make_context(info_name, args, parent=parent, **extra)


def init_migrations(app: Flask, db: SQLAlchemy, directory: str) -> None:
    app.extensions["migrate"] = MigrationSettings(db, directory)
    app.cli.add_command(
        MigrationCommands("db", help="Perform database migrations (Flask-Migrate).")
    )


def include_object_for(dialect_name: str) -> Callable[..., bool]:
    """Alembic's `include_object` for a database of `dialect_name`: what the models create
    only on another database (`Index(...).ddl_if(dialect="postgresql")`, such as the trigram
    index of users' emails) is left out of autogenerate's comparison, as `create_all` leaves
    it out of that database."""

    def include_object(obj: Any, name: Any, type_: str, reflected: bool, compare_to: Any) -> bool:
        ddl_if = getattr(obj, "_ddl_if", None)
        if ddl_if is None or ddl_if.dialect is None:
            return True
        dialects = [ddl_if.dialect] if isinstance(ddl_if.dialect, str) else ddl_if.dialect
        return dialect_name in dialects

    return include_object


def create_index_online(
    name: str, table: str, columns: list[str], *, unique: bool = False, **dialect_kw: Any
) -> None:
    """For migrations: build an index without holding writes to `table` for the build.

    PostgreSQL builds it CONCURRENTLY, which may not run inside a transaction, so this step
    runs in Alembic's autocommit block (the migration's earlier steps commit first). A build
    that failed half-way leaves an INVALID index of that name behind, which a second attempt
    would trip over: it is dropped first. SQLite has no such mode; its CREATE INDEX is the
    plain one. `dialect_kw` takes `postgresql_using`, `postgresql_ops`, `postgresql_where`,
    `sqlite_where`.
    """
    from alembic import op

    if op.get_bind().dialect.name != "postgresql":
        op.create_index(name, table, columns, unique=unique, **dialect_kw)
        return
    with op.get_context().autocommit_block():
        op.drop_index(name, table_name=table, postgresql_concurrently=True, if_exists=True)
        op.create_index(
            name, table, columns, unique=unique, postgresql_concurrently=True, **dialect_kw
        )


def drop_index_online(name: str, table: str) -> None:
    """For migrations: drop an index without holding writes (CONCURRENTLY on PostgreSQL)."""
    from alembic import op

    if op.get_bind().dialect.name != "postgresql":
        op.drop_index(name, table_name=table)
        return
    with op.get_context().autocommit_block():
        op.drop_index(name, table_name=table, postgresql_concurrently=True, if_exists=True)
