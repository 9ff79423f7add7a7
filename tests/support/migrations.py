"""For the tests of a migration that moves data: the revision before it, and the tables as
the code before it wrote them (frozen here, as the models have moved on)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import sqlalchemy as sa
from alembic.script import ScriptDirectory
from flask import Flask
from flask_migrate import upgrade

from app.core.db import UTCDateTime, db
from app.identity.users import seed_groups
from app.keys.service import ensure_key
from tests.support.apps import ROOT, make_app


def revision_before(revision: str) -> str:
    """Whatever the migrations are chained to when branches merge, the revision just before."""
    previous = ScriptDirectory(str(ROOT / "migrations")).get_revision(revision).down_revision
    assert isinstance(previous, str)
    return previous


@contextmanager
def app_migrated_to(revision: str, url: str, tmp_path: Path, smtp_port: int) -> Iterator[Flask]:
    """An app on the database at `url`, migrated to `revision`, with the groups and a
    signing key; its connections closed after the block."""
    app: Flask = make_app(url, tmp_path, smtp_port)
    with app.app_context():
        upgrade(revision=revision)
        seed_groups()
        ensure_key()
    yield app
    with app.app_context():
        db.session.remove()
        db.engine.dispose()


USERS = sa.table(
    "users",
    sa.column("id", sa.Integer()),
    sa.column("email", sa.String()),
    sa.column("password_hash", sa.String()),
    sa.column("is_active", sa.Boolean()),
    sa.column("group_id", sa.Integer()),
    sa.column("created_at", UTCDateTime()),
    sa.column("updated_at", UTCDateTime()),
)
# A row per refresh token, until 0016_one_row_per_login.
REFRESH_TOKENS = sa.table(
    "refresh_tokens",
    sa.column("id", sa.Integer()),
    sa.column("token_hash", sa.String()),
    sa.column("user_id", sa.Integer()),
    sa.column("family_id", sa.String()),
    sa.column("expires_at", UTCDateTime()),
    sa.column("created_at", UTCDateTime()),
    sa.column("used_at", UTCDateTime()),
    sa.column("revoked_at", UTCDateTime()),
)
