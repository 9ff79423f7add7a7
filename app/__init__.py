"""The application factory."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from flask import Flask, request
from sqlalchemy import event
from werkzeug.exceptions import UnsupportedMediaType
from werkzeug.middleware.proxy_fix import ProxyFix

from app.config import finalize_config, load_config
from app.errors import register_error_handlers
from app.extensions import RowIdConverter, api, db, jwt, limiter, mail, migrate
from app.jobs.queue import install_hooks
from app.log import configure_logging

MIGRATIONS_DIR = str(Path(__file__).resolve().parent.parent / "migrations")
BODY_TYPES = {"application/json", "multipart/form-data"}


def create_app(config: dict[str, Any] | None = None) -> Flask:
    app = Flask(__name__, instance_relative_config=True)
    app.url_map.converters["id"] = RowIdConverter
    app.config.update(load_config(app.instance_path))
    app.config.update(config or {})
    finalize_config(app.config)
    Path(app.instance_path).mkdir(parents=True, exist_ok=True)
    configure_logging()

    db.init_app(app)
    with app.app_context():
        if db.engine.dialect.name == "sqlite":
            # SQLite ignores foreign keys (and so ON DELETE CASCADE) unless each connection
            # asks for them.
            event.listen(db.engine, "connect", _sqlite_foreign_keys)
    migrate.init_app(app, db, directory=MIGRATIONS_DIR, render_as_batch=True)
    jwt.init_app(app)
    mail.init_app(app)
    limiter.init_app(app)
    api.init_app(app)
    api.spec.components.security_scheme(
        "bearerAuth", {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}
    )
    install_hooks()

    from app import admin, health, storage
    from app.auth import profile_routes  # noqa: F401 - adds its routes to the auth blueprint
    from app.auth import routes as auth_routes
    from app.auth.guards import register_jwt_callbacks
    from app.cli import register_cli

    storage.init_app(app)
    register_jwt_callbacks(app)
    api.register_blueprint(auth_routes.blp)
    api.register_blueprint(admin.routes.blp)
    api.register_blueprint(health.blp)
    register_error_handlers(app)
    register_cli(app)
    if app.config["TRUSTED_PROXIES"]:
        hops = app.config["TRUSTED_PROXIES"]
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=hops, x_proto=hops, x_host=0)  # type: ignore[method-assign]
    app.before_request(_require_known_body_type)
    return app


def _sqlite_foreign_keys(dbapi_connection: Any, _record: Any) -> None:
    dbapi_connection.execute("PRAGMA foreign_keys=ON")


def _require_known_body_type() -> None:
    """A body we cannot read is a 415, before any schema turns it into missing fields."""
    has_body = bool(request.content_length) or "chunked" in request.headers.get(
        "Transfer-Encoding", ""
    )
    if has_body and request.mimetype not in BODY_TYPES and not request.mimetype.endswith("+json"):
        raise UnsupportedMediaType(
            "Send the body as application/json (multipart/form-data for the avatar upload)."
        )
