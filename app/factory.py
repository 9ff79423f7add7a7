"""The application factory: `create_app`, and the Flask class it builds."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from flask import Flask, request
from flask.typing import ResponseReturnValue
from flask_smorest import Blueprint
from sqlalchemy.exc import DBAPIError

from app.account import routes as account_routes
from app.admin import routes as admin_routes
from app.cli import register_cli
from app.core.config import INSTANCE_DIR, derive_settings, load_config
from app.core.db import READ_ONLY_METHODS, db, init_db, lost_connection
from app.core.extensions import mail
from app.core.log import configure_logging
from app.core.migrate import init_migrations
from app.courier.queue import install_hooks
from app.identity import media
from app.identity.storage import init_storage
from app.keys import routes as keys_routes
from app.keys.ring import init_keys
from app.mfa import routes as mfa_routes
from app.oidc import routes as oidc_routes
from app.passkeys import routes as passkey_routes
from app.passwords import routes as password_routes
from app.sessions import routes as session_routes
from app.sessions.access_tokens import jwt
from app.signup import routes as signup_routes
from app.web import health
from app.web.docs import init_docs
from app.web.limits import init_limits
from app.web.openapi import api
from app.web.problems import register_error_handlers
from app.web.requests import init_requests

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
        before the loss, and app/core/postgres.py drops at checkout those a restart closed since.
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
    derive_settings(app.config)
    Path(app.instance_path).mkdir(parents=True, exist_ok=True)
    configure_logging()

    init_db(app)
    init_migrations(app, db, MIGRATIONS_DIR)
    jwt.init_app(app)
    mail.init_app(app)
    init_limits(app)
    api.init_app(app)
    init_requests(app)
    init_storage(app)
    init_keys(app)
    install_hooks()

    for blueprint in blueprints(app):
        api.register_blueprint(blueprint)
    init_docs(app)  # /docs/static/: Swagger UI's assets, kept out of /openapi.json
    register_error_handlers(app)
    register_cli(app)
    return app


def blueprints(app: Flask) -> list[Blueprint]:
    """Every API URL's handler, in one list: the two families the service is about, /auth
    (signing up and in, the caller's own account) and /admin, each route found from the
    package that owns it; then what serves others. (/docs, /openapi.json: init_docs and
    flask-smorest.)"""
    auth = [
        signup_routes.blp,  # /auth/register, /activate, /password/forgot|reset, /email/…
        password_routes.blp,  # /auth/login, /auth/password/change, /auth/mfa/totp (DELETE)…
        mfa_routes.blp,  # /auth/mfa/totp/setup|confirm, /auth/login/mfa
        passkey_routes.blp,  # /auth/passkeys (register, sign in, manage)
        oidc_routes.blp,  # /auth/oidc/…, /auth/identities
        session_routes.blp,  # /auth/refresh, /auth/logout, /auth/sessions
        account_routes.blp,  # /auth/me (+ /profile, /avatar, /events, /export)
    ]
    admin = [admin_routes.blp]  # /admin/users
    service = [health.blp, keys_routes.blp]  # /health, /.well-known/jwks.json
    if not app.config["S3_BUCKET"]:
        service.append(media.blp)  # /media; with S3, browsers fetch avatars from the bucket
    return [*auth, *admin, *service]
