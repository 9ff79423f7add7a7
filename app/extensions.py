"""Extension instances, created once and bound to the app in `create_app`."""

from typing import Any, cast

import flask_smorest
from flask import Request
from flask_jwt_extended import JWTManager
from flask_limiter import Limiter
from flask_limiter.util import get_remote_address
from flask_mail import Mail
from flask_migrate import Migrate
from flask_smorest import Api
from flask_sqlalchemy import SQLAlchemy
from marshmallow import Schema
from marshmallow.utils import missing
from sqlalchemy import CursorResult, Executable, MetaData
from sqlalchemy.orm import DeclarativeBase
from webargs.flaskparser import FlaskParser
from werkzeug.exceptions import BadRequest
from werkzeug.routing import IntegerConverter, Map

from app.errors import ProblemResponses, ProblemSchema

MAX_ROW_ID = 2**31 - 1


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


def rows_changed(statement: Executable) -> int:
    """Run an UPDATE or DELETE in the current session; return how many rows it changed."""
    result = cast(CursorResult[Any], db.session.execute(statement))
    return result.rowcount


class JSONBodyParser(FlaskParser):
    """webargs reads a missing JSON body as `{}`, which an all-optional schema (the profile
    PATCH) would accept as a request that changes nothing. A body is required unless the
    schema says `OPTIONAL_BODY = True` (the refresh token may come in a header instead)."""

    def load_json(self, req: Request, schema: Schema) -> Any:
        data = super().load_json(req, schema)
        if data is missing and not getattr(schema, "OPTIONAL_BODY", False):
            raise BadRequest("This request needs a JSON body (Content-Type: application/json).")
        return data


class RowIdConverter(IntegerConverter):
    """`<id:name>`: a row id, 1 to the largest `integer` column value (PostgreSQL's int4).

    Any other number is no row at all, so it is routed to 404 like an unknown id, before
    it can overflow a database driver (SQLite's stops at 64 bits); /openapi.json states
    the bounds."""

    def __init__(self, url_map: Map) -> None:
        super().__init__(url_map, min=1, max=MAX_ROW_ID)


class Blueprint(flask_smorest.Blueprint):  # type: ignore[misc]
    ARGUMENTS_PARSER = JSONBodyParser()


migrate = Migrate()
jwt = JWTManager()
mail = Mail()


class ProblemApi(Api):  # type: ignore[misc]
    # flask-smorest's own error body ("Error") would otherwise be published unused.
    ERROR_SCHEMA = ProblemSchema


# Every error response in /openapi.json is the problem body the server sends.
api = ProblemApi(spec_kwargs={"extra_plugins": [ProblemResponses()]})
limiter = Limiter(key_func=get_remote_address)
