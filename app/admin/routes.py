"""HTTP layer of the admin blueprint."""

from __future__ import annotations

from flask_smorest import Blueprint

blp = Blueprint(
    "admin", __name__, url_prefix="/admin", description="User management for moderators and admins"
)
