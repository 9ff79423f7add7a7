"""The caller's own account: deleting it, downloading its data, and what the database holds
of one account (its rows, and the secrets among everything stored)."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from flask import Flask
from flask.testing import FlaskClient

from app.core.db import db
from tests.support.http import PASSWORD, bearer

# Columns whose values are secrets, or would let someone use or tie a secret to the person:
# hashes of passwords and tokens, encrypted payloads and keys, the keyed hash that stands for
# a deleted person, and the ids of logins (an access token names its login by one).
SECRET_COLUMNS = {
    "password_hash",
    "token_hash",
    "refresh_hash",
    "previous_refresh_hash",
    "legacy_refresh_hash",
    "payload",
    "private_key_encrypted",
    "subject",
    "family_id",
}


def delete_me(client: FlaskClient, access_token: str, password: str = PASSWORD) -> Any:
    return client.delete("/auth/me", json={"password": password}, headers=bearer(access_token))


def export_me(client: FlaskClient, access_token: str) -> Any:
    return client.get("/auth/me/export", headers=bearer(access_token))


def _reflected(app: Flask) -> sa.MetaData:
    metadata = sa.MetaData()
    metadata.reflect(bind=db.engine)
    return metadata


def rows_of(app: Flask, user_id: int) -> dict[str, int]:
    """How many rows of each table belong to the user: `users` by id, every other table by
    its `user_id` column (tables added later are counted too)."""
    counts = {}
    with app.app_context(), db.engine.connect() as conn:
        for table in _reflected(app).sorted_tables:
            column = table.c.id if table.name == "users" else table.c.get("user_id")
            if column is not None:
                query = sa.select(sa.func.count()).select_from(table).where(column == user_id)
                counts[table.name] = conn.scalar(query) or 0
    return counts


def stored_secrets(app: Flask) -> set[str]:
    """Every stored value of a secret column, in every table, and the app's secret keys."""
    secrets = {
        str(app.config[name]) for name in ("SECRET_KEY", "JWT_SECRET_KEY") if app.config[name]
    }
    with app.app_context(), db.engine.connect() as conn:
        for table in _reflected(app).sorted_tables:
            for column in table.c:
                if column.name in SECRET_COLUMNS:
                    secrets.update(str(v) for v in conn.scalars(sa.select(column)) if v)
    return secrets


def scalars_in(document: Any) -> list[str]:
    """Every key and scalar value of a JSON document, as text."""
    found: list[str] = []
    stack = [document]
    while stack:
        value = stack.pop()
        if isinstance(value, dict):
            found.extend(str(key) for key in value)
            stack.extend(value.values())
        elif isinstance(value, list):
            stack.extend(value)
        elif value is not None:
            found.append(str(value))
    return found
