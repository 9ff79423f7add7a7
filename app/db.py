"""The ORM base, the `db` instance and small query helpers."""

from __future__ import annotations

from typing import Any, cast

from flask import Flask
from flask_sqlalchemy import SQLAlchemy
from sqlalchemy import CursorResult, Executable, MetaData, event
from sqlalchemy.orm import DeclarativeBase


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


def init_db(app: Flask) -> None:
    db.init_app(app)
    with app.app_context():
        if db.engine.dialect.name == "sqlite":
            # SQLite ignores foreign keys (and so ON DELETE CASCADE) unless each connection
            # asks for them.
            event.listen(db.engine, "connect", _sqlite_foreign_keys)


def _sqlite_foreign_keys(dbapi_connection: Any, _record: Any) -> None:
    dbapi_connection.execute("PRAGMA foreign_keys=ON")


def rows_changed(statement: Executable) -> int:
    """Run an UPDATE or DELETE in the current session; return how many rows it changed."""
    result = cast(CursorResult[Any], db.session.execute(statement))
    return result.rowcount
