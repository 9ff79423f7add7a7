"""The application factory: `create_app`, and the Flask class it builds."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from flask import Flask, request
from flask.typing import ResponseReturnValue
from sqlalchemy.exc import DBAPIError

from app import health, media
from app.admin import routes as admin_routes
from app.auth import routes as auth_routes
from app.auth.guards import register_jwt_callbacks
from app.cli import register_cli
from app.config import INSTANCE_DIR, finalize_config, load_config
from app.db import db, init_db, lost_connection
from app.docs import init_docs
from app.errors import register_error_handlers
from app.extensions import api, jwt, limiter, mail
from app.http import READ_ONLY_METHODS, init_http
from app.jobs.queue import install_hooks
from app.keys import routes as keys_routes
from app.keys.ring import init_keys
from app.log import configure_logging
from app.migrate import init_migrations
from app.profile import routes as profile_routes
from app.storage import init_storage

log = logging.getLogger(__name__)

MIGRATIONS_DIR = str(Path(__file__).resolve().parent.parent / "migrations")


class App(Flask):
    def ensure_sync(self, func: Callable[..., Any]) -> Callable[..., Any]:
        """Every view and hook is returned as it is: the service has no async code, and
        Flask's async support is not installed. Flask otherwise asks `inspect` whether each
        is a coroutine function at every call, nine times a request: a tenth of /health's
        own CPU. (Flask documents this method as the one to override.)"""
        return func

    def dispatch_request(self) -> ResponseReturnValue:
        """A GET or HEAD whose database connection was lost runs once more, on a fresh one.

        Reads change nothing, so running one again is safe whatever it had done; a write is
        not run twice, and answers 503. The pool has already dropped the connections opened
        before the loss, and `db.py` drops at checkout those a restart closed since.
        """
        try:
            return super().dispatch_request()
        except DBAPIError as error:
            if request.method not in READ_ONLY_METHODS or not lost_connection(error):
                raise
            log.info("read_retried_on_a_new_connection", extra={"endpoint": request.endpoint})
            db.session.rollback()
            return super().dispatch_request()


def create_app(config: dict[str, Any] | None = None) -> Flask:
    app = App(__name__, instance_path=str(INSTANCE_DIR), instance_relative_config=True)
    app.config.update(load_config(app.instance_path))
    app.config.update(config or {})
    finalize_config(app.config)
    Path(app.instance_path).mkdir(parents=True, exist_ok=True)
    configure_logging()

    init_db(app)
    init_migrations(app, db, MIGRATIONS_DIR)
    jwt.init_app(app)
    mail.init_app(app)
    limiter.init_app(app)
    api.init_app(app)
    init_http(app)
    init_storage(app)
    init_keys(app)
    install_hooks()
    register_jwt_callbacks()

    # Every API URL's handler, in one list: /auth, /auth/me, /admin, /health, /.well-known,
    # /media (/docs and /openapi.json: init_docs and flask-smorest).
    blueprints = [
        auth_routes.blp,
        profile_routes.blp,
        admin_routes.blp,
        health.blp,
        keys_routes.blp,
    ]
    if not app.config["S3_BUCKET"]:
        blueprints.append(media.blp)  # with S3, browsers fetch avatars from the bucket
    for blueprint in blueprints:
        api.register_blueprint(blueprint)

    init_docs(app)  # /docs/static/: Swagger UI's assets, kept out of /openapi.json
    register_error_handlers(app)
    register_cli(app)
    return app
