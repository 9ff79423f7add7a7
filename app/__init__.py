"""The accounts service. `create_app()` builds it (app/factory.py).

Importing the package loads nothing else: gunicorn.conf.py imports app.core.config and
app.web.access_log in gunicorn's master, and a master that had imported the app would hand its
copy to every worker it forks, so a reload (SIGHUP) would go on serving the old code.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from flask import Flask


def create_app(config: dict[str, Any] | None = None) -> Flask:
    from app.factory import create_app as build

    return build(config)
