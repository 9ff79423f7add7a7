"""Liveness and readiness: the process is up; the database and Redis answer."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from flask import current_app
from flask.views import MethodView
from marshmallow import Schema, fields

from app.db import db
from app.http import Blueprint
from app.jobs.queue import redis_connection

blp = Blueprint("health", __name__, url_prefix="/health", description="Service health")


class StatusSchema(Schema):
    status = fields.String(required=True, metadata={"example": "ok"})


class ReadySchema(StatusSchema):
    checks = fields.Dict(
        keys=fields.String(),
        values=fields.String(),
        required=True,
        metadata={"example": {"database": "ok", "redis": "ok"}},
    )


@blp.route("")
class Health(MethodView):
    @blp.response(200, StatusSchema)
    def get(self) -> dict[str, str]:
        """The process is up."""
        return {"status": "ok"}


def _check_database() -> str:
    try:
        db.session.execute(sa.text("SELECT 1"))
        return "ok"
    except Exception:
        db.session.rollback()
        return "down"


def _check_redis() -> str:
    if not current_app.config["REDIS_URL"]:
        return "not configured"  # the embedded default runs jobs in-process
    try:
        redis_connection().ping()
        return "ok"
    except Exception:
        return "down"


@blp.route("/ready")
class Ready(MethodView):
    @blp.response(200, ReadySchema)
    @blp.alt_response(503, schema=ReadySchema, description="A dependency is down")
    def get(self) -> tuple[dict[str, Any], int] | dict[str, Any]:
        """The database and Redis answer; 503 names what is down."""
        checks = {"database": _check_database(), "redis": _check_redis()}
        down = [name for name, state in checks.items() if state == "down"]
        if down:
            return {"status": "down", "checks": checks}, 503
        return {"status": "ok", "checks": checks}
