"""Liveness and readiness: the process is up; the database (migrated) and Redis answer."""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import sqlalchemy as sa
from flask import Response, current_app, jsonify
from marshmallow import Schema, fields

from app.core.db import db
from app.core.redis import redis_connection
from app.web.blueprint import Blueprint

blp = Blueprint(
    "health", __name__, url_prefix="/health", description="Service health", cacheable=True
)


class StatusSchema(Schema):
    status = fields.String(required=True, metadata={"example": "ok"})


class ReadySchema(StatusSchema):
    checks = fields.Dict(
        keys=fields.String(),
        values=fields.String(),
        required=True,
        metadata={"example": {"database": "ok", "redis": "ok"}},
    )


@blp.route("", methods=["GET"])
@blp.response(200, StatusSchema)
def health() -> Response:
    """The process is up."""
    # Already the body StatusSchema documents: a response skips smorest's dump, which was a
    # sixth of this request's CPU.
    return jsonify(status="ok")


SCHEMA_BEHIND = "schema not at head"


@lru_cache
def _migration_heads(directory: str) -> frozenset[str]:
    """The head revisions of the migrations this code ships; read once per process."""
    from alembic.script import ScriptDirectory  # only here: alembic is slow to import

    return frozenset(ScriptDirectory(directory).get_heads())


def _check_database() -> str:
    """A database that answers but lacks the latest migration would fail every request
    that touches a missing table or column, so it is not ready either."""
    try:
        connection = db.session.connection()
        applied = (
            set(connection.scalars(sa.text("SELECT version_num FROM alembic_version")))
            if sa.inspect(connection).has_table("alembic_version")
            else set()
        )
    except Exception:
        db.session.rollback()
        return "down"
    db.session.rollback()
    heads = _migration_heads(current_app.extensions["migrate"].directory)
    return "ok" if applied == heads else SCHEMA_BEHIND


def _check_redis() -> str:
    if not current_app.config["REDIS_URL"]:
        return "not configured"  # the embedded default runs jobs in-process
    try:
        redis_connection().ping()
        return "ok"
    except Exception:
        return "down"


READY = {"ok", "not configured"}


@blp.route("/ready", methods=["GET"])
@blp.response(200, ReadySchema)
@blp.alt_response(503, schema=ReadySchema, description="A dependency is down")
def ready() -> tuple[dict[str, Any], int] | dict[str, Any]:
    """The database (at the migrations' head) and Redis answer; 503 names what is not."""
    checks = {"database": _check_database(), "redis": _check_redis()}
    down = [name for name, state in checks.items() if state not in READY]
    if down:
        return {"status": "down", "checks": checks}, 503
    return {"status": "ok", "checks": checks}
