"""Extension instances, created once and bound to the app in `create_app`."""

from typing import Any, cast

from flask_jwt_extended import JWTManager
from flask_limiter import Limiter
from flask_limiter.util import get_remote_address
from flask_mail import Mail
from flask_migrate import Migrate
from flask_smorest import Api
from flask_sqlalchemy import SQLAlchemy
from sqlalchemy import CursorResult, Executable, MetaData
from sqlalchemy.orm import DeclarativeBase

from app.errors import ProblemResponses, ProblemSchema


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


db = SQLAlchemy(model_class=Base)


def rows_changed(statement: Executable) -> int:
    """Run an UPDATE or DELETE in the current session; return how many rows it changed."""
    result = cast(CursorResult[Any], db.session.execute(statement))
    return result.rowcount


migrate = Migrate()
jwt = JWTManager()
mail = Mail()


class ProblemApi(Api):  # type: ignore[misc]
    # flask-smorest's own error body ("Error") would otherwise be published unused.
    ERROR_SCHEMA = ProblemSchema


# Every error response in /openapi.json is the problem body the server sends.
api = ProblemApi(spec_kwargs={"extra_plugins": [ProblemResponses()]})
limiter = Limiter(key_func=get_remote_address)
