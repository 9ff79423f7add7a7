"""Extension instances, created once and bound to the app in `create_app`."""

import json
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
    schema says `OPTIONAL_BODY = True` (the refresh token may come in a header instead).

    webargs turns only a JSONDecodeError into its 400; JSON that Python reads badly is a
    400 here too, before any use case sees it."""

    def load_json(self, req: Request, schema: Schema) -> Any:
        data = super().load_json(req, schema)
        if data is missing and not getattr(schema, "OPTIONAL_BODY", False):
            raise BadRequest("This request needs a JSON body (Content-Type: application/json).")
        return data

    def _raw_load_json(self, req: Request) -> Any:
        try:
            data = super()._raw_load_json(req)
        except json.JSONDecodeError:
            raise  # webargs answers malformed JSON itself
        except RecursionError:  # the parser's own limit, deeper than any body we take
            raise BadRequest(_TOO_DEEP) from None
        except ValueError as exc:
            # json.loads refuses a number of over 4300 digits with a plain ValueError.
            raise BadRequest("The JSON body holds a number too long to read.") from exc
        unreadable = _not_unicode_text(data)
        if unreadable:
            raise BadRequest(unreadable)
        return data


MAX_JSON_DEPTH = 32
_TOO_DEEP = f"The JSON body is nested more than {MAX_JSON_DEPTH} levels deep."


def _not_unicode_text(data: Any) -> str | None:
    """Why a parsed body cannot be handled as text, or None.

    JSON may escape a lone surrogate (`"\\ud800"`), which no UTF-8 text can hold: hashing,
    storing or logging it fails, so every string and key must encode. Walked without
    recursion, and only so deep: no body of ours nests more than two levels."""
    stack: list[tuple[Any, int]] = [(data, 0)]
    while stack:
        value, depth = stack.pop()
        if isinstance(value, str):
            try:
                value.encode("utf-8")
            except UnicodeEncodeError:
                return (
                    "The JSON body has a lone surrogate escape (\\ud800-\\udfff): not Unicode text."
                )
        elif isinstance(value, dict | list):
            if depth >= MAX_JSON_DEPTH:
                return _TOO_DEEP
            items = [*value.keys(), *value.values()] if isinstance(value, dict) else value
            stack.extend((item, depth + 1) for item in items)
    return None


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
