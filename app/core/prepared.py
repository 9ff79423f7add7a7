"""The hottest statements, prepared on PostgreSQL and run without SQLAlchemy's execution.

Every authenticated request reads its caller, and every refresh rotates its login's token:
one statement each. PostgreSQL parses and plans each statement it is sent, which for a short
statement by key costs several times running it (the caller's read: 0.24 ms of the server's
CPU, 0.05 ms once prepared); and SQLAlchemy's execution context, events and result objects
cost the web process more CPU than psycopg2 running it (0.17 ms against 0.08 ms, issue 24).
So a statement registered with `prepared` is run by `first_row` on PostgreSQL: EXECUTE of
its prepared form on a pooled connection's own cursor; SQLAlchemy still
compiles it and converts its values and columns (enums, UTC datetimes). On SQLite it runs
through SQLAlchemy as it is (app/core/db.py).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar, cast

import psycopg2
from sqlalchemy import Dialect, Engine
from sqlalchemy.dialects.postgresql.psycopg2 import PGDialect_psycopg2
from sqlalchemy.exc import DBAPIError
from sqlalchemy.pool import PoolProxiedConnection
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.elements import ClauseElement

E = TypeVar("E", bound=ClauseElement)

# feature_not_supported ("cached plan must not change result type": a migration changed a
# column the statement returns) and invalid_sql_statement_name (DISCARD ALL dropped it).
STALE = frozenset({"0A000", "26000"})

# id() of each registered statement -> its name; an unregistered one is a KeyError.
_NAMES: dict[int, str] = {}
_COMPILED: dict[int, _Compiled] = {}


def prepared(name: str, statement: E) -> E:
    """Register `statement`, one that returns rows, to run prepared on PostgreSQL through
    `first_row`; returns it unchanged."""
    _NAMES[id(statement)] = name
    return statement


@dataclass(frozen=True)
class _Compiled:
    """A registered statement as PostgreSQL is sent it, and SQLAlchemy's own conversions of
    its bound values and of its result columns."""

    name: str
    prepare: str
    execute: str
    binds: tuple[tuple[str, Any], ...]  # (key, its bind processor or None)
    results: tuple[Any, ...]  # a result processor (or None) a column

    @classmethod
    def of(cls, name: str, statement: ClauseElement, dialect: Dialect) -> _Compiled:
        server = cast(SQLCompiler, statement.compile(dialect=_NUMBERED))
        keys = server.positiontup or ()
        binds = tuple(
            (key, server.binds[key].type.dialect_impl(dialect).bind_processor(dialect))
            for key in keys
        )
        columns = cast(Any, statement).exported_columns  # a SELECT's, or an UPDATE's RETURNING
        results = tuple(
            c.type.dialect_impl(dialect).result_processor(dialect, None) for c in columns
        )
        names = ", ".join(f"%({key})s" for key in keys)
        return cls(name, f"PREPARE {name} AS {server}", f"EXECUTE {name}({names})", binds, results)

    def parameters(self, params: dict[str, Any]) -> dict[str, Any]:
        return {k: params[k] if bind is None else bind(params[k]) for k, bind in self.binds}

    def row(self, values: tuple[Any, ...]) -> tuple[Any, ...]:
        return tuple(v if r is None else r(v) for r, v in zip(self.results, values, strict=True))


_NUMBERED = PGDialect_psycopg2(paramstyle="numeric_dollar")  # $1, $2: PREPARE's placeholders


def first_row(
    engine: Engine,
    statement: object,
    params: dict[str, Any],
    then: Callable[[tuple[Any, ...]], Any] | None = None,
) -> Any:
    """The first row (a tuple, or None) of a registered statement, run on PostgreSQL on a
    pooled connection, which returns to the pool at once.

    Alone, the statement is its own transaction (autocommit: one round trip). With `then`,
    it runs in a transaction that `then` finishes: `then` is called with the first row
    before the commit, and what it returns is returned; should it raise, nothing the
    statement wrote stays. No row: None, and `then` is not called.

    Each connection PREPAREs the statement at first use (it lives as long as the server's
    session). A prepared statement gone stale did not run: the pool replaces every
    connection that may have prepared it, and it runs once more on a new one. Any other
    failure is raised as the `DBAPIError` SQLAlchemy would raise, a lost connection handled
    as `Connection` handles it, so callers and `App` tell a lost connection as they would.
    """
    key = id(statement)
    compiled = _COMPILED.get(key)
    if compiled is None:
        compiled = _Compiled.of(_NAMES[key], cast(ClauseElement, statement), engine.dialect)
        _COMPILED[key] = compiled
    try:
        return _run(engine, compiled, params, then, stale_is_final=False)
    except _Stale:
        return _run(engine, compiled, params, then, stale_is_final=True)


class _Stale(Exception):
    pass


def _run(
    engine: Engine,
    compiled: _Compiled,
    params: dict[str, Any],
    then: Callable[[tuple[Any, ...]], Any] | None,
    stale_is_final: bool,
) -> Any:
    pooled = _checkout(engine)
    try:
        driver: Any = pooled.driver_connection
        # Cleared at check-in (app/core/postgres.py); a transaction left open by a `then`
        # that raised is rolled back there too, as the pool resets what it is given back.
        driver.autocommit = then is None
        cursor = driver.cursor()
        try:
            done: set[str] = pooled.info.setdefault("prepared", set())
            if compiled.name not in done:
                cursor.execute(compiled.prepare)
                done.add(compiled.name)
            cursor.execute(compiled.execute, compiled.parameters(params))
            values = cursor.fetchone()
        except psycopg2.Error as error:
            stale = error.pgcode in STALE
            _raise_failure(engine, pooled, cursor, error, compiled, stale and not stale_is_final)
        cursor.close()
        row = None if values is None else compiled.row(values)
        if then is None:
            return row
        result = None if row is None else then(row)
        try:
            driver.commit()
        except psycopg2.Error as error:
            _raise_failure(engine, pooled, None, error, compiled, retry=False)
        return result
    finally:
        pooled.close()


def _checkout(engine: Engine) -> PoolProxiedConnection:
    """A pooled connection; the database not answering is raised as `Connection` raises it."""
    try:
        return engine.raw_connection()
    except psycopg2.Error as error:
        lost = engine.dialect.is_disconnect(cast(Any, error), None, None)
        raise _as_sqlalchemy_error(engine, error, None, lost) from error


def _raise_failure(
    engine: Engine,
    pooled: PoolProxiedConnection,
    cursor: Any,
    error: psycopg2.Error,
    compiled: _Compiled,
    retry: bool,
) -> None:
    stale = error.pgcode in STALE
    lost = stale or engine.dialect.is_disconnect(cast(Any, error), pooled.driver_connection, cursor)
    if lost:
        # As `Connection` does on a disconnect: this connection, and every one opened before
        # it, is replaced at its next checkout.
        engine.pool._invalidate(pooled, error)
    if retry:
        raise _Stale from error
    raise _as_sqlalchemy_error(engine, error, compiled.execute, lost) from error


def _as_sqlalchemy_error(
    engine: Engine, error: psycopg2.Error, statement: str | None, lost: bool
) -> DBAPIError:
    """The error as SQLAlchemy raises it (its parameters left out: they name the caller)."""
    wrapped = DBAPIError.instance(
        statement,
        None,
        error,
        engine.dialect.loaded_dbapi.Error,
        connection_invalidated=lost,
        dialect=engine.dialect,
    )
    return cast(DBAPIError, wrapped)
