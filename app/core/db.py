"""The ORM base, the `db` instance, the UTC time type and small query helpers."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, TypeVar, cast

import sqlalchemy as sa
from flask import Flask, has_request_context, request
from flask_sqlalchemy import SQLAlchemy
from sqlalchemy import CursorResult, Executable, MetaData, event
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import DeclarativeBase

from app.core import postgres, prepared
from app.core.postgres import lost_connection

# Every GET and HEAD endpoint only reads: a lost database connection is retried for them
# (app/factory.py), so a read made inside one is not retried a second time here.
READ_ONLY_METHODS = frozenset({"GET", "HEAD"})
T = TypeVar("T")


class Base(DeclarativeBase):
    # Named constraints so that migrations can alter them on every backend (SQLite included).
    metadata = MetaData(
        naming_convention={
            "ix": "ix_%(column_0_label)s",
            "uq": "uq_%(table_name)s_%(column_0_name)s",
            "ck": "ck_%(table_name)s_%(constraint_name)s",
            "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
            "pk": "pk_%(table_name)s",
        }
    )


# A request commits once and then only reads what it wrote (the response, the audit line):
# expiring everything at commit would reload each row with another round trip.
db = SQLAlchemy(model_class=Base, session_options={"expire_on_commit": False})


def utcnow() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(sa.types.TypeDecorator[datetime]):
    """Stores UTC and always hands back an aware datetime, on SQLite as on PostgreSQL."""

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: sa.Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetimes are ambiguous; pass an aware UTC datetime")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: sa.Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def init_db(app: Flask) -> None:
    db.init_app(app)
    with app.app_context():
        if db.engine.dialect.name == "sqlite":
            # SQLite ignores foreign keys (and so ON DELETE CASCADE) unless each connection
            # asks for them.
            event.listen(db.engine, "connect", _sqlite_foreign_keys)
        elif db.engine.dialect.name == "postgresql":
            postgres.install(db.engine)


def _sqlite_foreign_keys(dbapi_connection: Any, _record: Any) -> None:
    dbapi_connection.execute("PRAGMA foreign_keys=ON")


def read_on_own_connection(statement: Executable, params: dict[str, Any]) -> tuple[Any, ...] | None:
    """The first row of one read, as a tuple, on a connection of its own, returned to the
    pool at once. `statement` is registered with `prepared.prepared`: on PostgreSQL it runs
    prepared, without SQLAlchemy's execution (app/core/prepared.py).

    It leaves the request's session alone, so the read costs no session when nothing else
    needs one. On PostgreSQL it runs in autocommit: one round trip instead of BEGIN, the
    statement and ROLLBACK, and under READ COMMITTED a statement sees its own snapshot either
    way. A read that lost its connection runs once more on a new one when `App` would not
    run the whole request again (it does for GET and HEAD): the read changes nothing,
    whatever the request's method.
    """
    try:
        return _read_first(statement, params)
    except DBAPIError as error:
        if not lost_connection(error) or (
            has_request_context() and request.method in READ_ONLY_METHODS
        ):
            raise
        return _read_first(statement, params)


def write_on_own_connection(
    statement: Executable, params: dict[str, Any], then: Callable[[tuple[Any, ...]], T]
) -> T | None:
    """Run a statement that writes and returns rows (RETURNING), registered with
    `prepared.prepared`, in a transaction of its own on a connection of its own; `then` makes
    what the caller needs of its first row before the commit, so that should it fail,
    nothing is written. None when no row came back.

    On a lost connection it is not run again: the commit's outcome is unknown."""
    engine = db.engine
    if engine.dialect.name == "postgresql":
        return cast(T | None, prepared.first_row(engine, statement, params, then))
    with engine.connect() as connection:  # closing it rolls back what was not committed
        row = connection.execute(statement, params).first()
        result = None if row is None else then(tuple(row))
        connection.commit()
    return result


def _read_first(statement: Executable, params: dict[str, Any]) -> tuple[Any, ...] | None:
    engine = db.engine
    if engine.dialect.name == "postgresql":
        return cast(tuple[Any, ...] | None, prepared.first_row(engine, statement, params))
    with engine.connect() as connection:
        row = connection.execute(statement, params).first()
    return None if row is None else tuple(row)


def rows_changed(statement: Executable) -> int:
    """Run an UPDATE or DELETE in the current session; return how many rows it changed."""
    result = cast(CursorResult[Any], db.session.execute(statement))
    return result.rowcount
