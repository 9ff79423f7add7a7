"""The Alembic migrations: they match the models, undo and redo, and carry the database's rules."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from flask import Flask

from app.core.db import db
from app.core.migrate import include_object_for
from app.identity.models import User, UserGroup
from app.identity.users import seed_groups
from tests.support.http import PASSWORD, Accounts, bearer, me


# SQLite cannot reflect an expression index, and Alembic says so of the PostgreSQL-only
# trigram index before `include_object` leaves it out.
@pytest.mark.filterwarnings(
    "ignore:autogenerate skipping metadata-specified expression-based index:UserWarning"
)
def test_migrations_match_the_models(app: Flask) -> None:
    """On each database: what the models create only on PostgreSQL (ddl_if) is compared
    there and left out on SQLite, as migrations/env.py compares it."""
    with app.app_context(), db.engine.connect() as conn:
        opts = {"compare_type": True, "include_object": include_object_for(conn.dialect.name)}
        diff = compare_metadata(MigrationContext.configure(conn, opts=opts), db.metadata)
    assert diff == []


def test_every_index_of_the_models_is_the_one_the_migrations_built(app: Flask) -> None:
    """Alembic's comparison reads an index's columns and expressions, not its WHERE (a
    partial index) nor its INCLUDE: each index of the models is built again under another
    name, in a transaction that is rolled back, and the database's own account of the two
    must be the same."""
    with app.app_context(), db.engine.connect() as conn:
        include = include_object_for(conn.dialect.name)
        indexes = [
            index
            for table in db.metadata.sorted_tables
            for index in table.indexes
            if include(index, index.name, "index", False, None)
        ]
        assert any(index.name == "ix_users_inactive_id" for index in indexes)
        with conn.begin() as transaction:
            for index in indexes:
                ddl = str(sa.schema.CreateIndex(index).compile(dialect=conn.dialect))
                twin = f"twin_{index.name}"
                conn.exec_driver_sql(ddl.replace(f" {index.name} ON ", f" {twin} ON ", 1))
                migrated = _definition(conn, str(index.name))
                modelled = _definition(conn, twin).replace(twin, str(index.name))
                assert migrated == modelled
            transaction.rollback()


def _definition(conn: sa.Connection, name: str) -> str:
    if conn.dialect.name == "postgresql":
        query = "SELECT pg_get_indexdef(to_regclass(:name))"
    else:
        query = "SELECT sql FROM sqlite_master WHERE type = 'index' AND name = :name"
    definition = conn.execute(sa.text(query), {"name": name}).scalar_one_or_none()
    assert definition, f"no index {name}"
    return str(definition)


def test_email_is_stored_lower_case_by_the_database_rule(app: Flask) -> None:
    with app.app_context():
        group = db.session.scalar(sa.select(UserGroup))
        db.session.add(User(email="Mixed@Example.com", password_hash="x", group=group))
        with pytest.raises(sa.exc.IntegrityError):
            db.session.commit()


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_downgrade_base_undoes_the_migrations_and_upgrade_redoes_them(
    backend: str, tmp_path, make_postgres_database: Callable[[str], str]
) -> None:
    from flask_migrate import downgrade, upgrade

    from app import create_app

    if backend == "sqlite":
        url = f"sqlite:///{tmp_path / 'fresh.sqlite3'}"
    else:
        url = make_postgres_database("migrations")
    app = create_app({"SQLALCHEMY_DATABASE_URI": url, "REDIS_URL": None})
    with app.app_context():
        upgrade()
        assert "users" in sa.inspect(db.engine).get_table_names()
        downgrade(revision="base")
        assert set(sa.inspect(db.engine).get_table_names()) <= {"alembic_version"}
        upgrade()
        tables = set(sa.inspect(db.engine).get_table_names())
        assert {
            "user_groups",
            "users",
            "user_profiles",
            "activation_tokens",
            "sessions",
        } <= tables
        assert "refresh_tokens" not in tables  # a login's refresh token is on its row (0016)
        db.engine.dispose()


def test_deleting_a_user_deletes_what_hangs_off_it(app: Flask, accounts: Accounts) -> None:
    accounts.register("gone@example.com")
    with app.app_context():
        db.session.execute(sa.delete(User).where(User.email == "gone@example.com"))
        db.session.commit()
        for table in ("user_profiles", "activation_tokens"):
            count = db.session.scalar(sa.text(f"SELECT count(*) FROM {table}"))  # noqa: S608
            assert count == 0, table


def test_a_migration_that_changes_what_the_guard_reads_costs_no_request(
    make_postgres_database: Callable[[str], str],
) -> None:
    """The guard's read and a refresh's rotation are prepared statements on PostgreSQL,
    whose result types the server fixes: once a migration changes one of their columns,
    every connection that prepared them is refused ("cached plan must not change result
    type"). Such a connection is replaced and the statement runs again, for a write's guard
    as for a GET, and for the rotation, which the refusal stopped before it wrote."""
    from flask_migrate import upgrade

    from app import create_app

    url = make_postgres_database("guard")
    app = create_app({"SQLALCHEMY_DATABASE_URI": url, "REDIS_URL": None})
    with app.app_context():
        upgrade()
        seed_groups()
    email = "guard@example.com"
    created = app.test_cli_runner().invoke(
        args=["create-admin", "--email", email, "--password", PASSWORD]
    )
    assert created.exit_code == 0, created.output
    client = app.test_client()
    pair = client.post("/auth/login", json={"email": email, "password": PASSWORD}).json
    token = pair["access_token"]
    try:
        assert me(client, token).status_code == 200  # prepared on the pooled connection
        refreshed = client.post("/auth/refresh", json={"refresh_token": pair["refresh_token"]})
        assert refreshed.status_code == 200, refreshed.json
        with app.app_context():
            db.session.execute(sa.text("ALTER TABLE users ALTER COLUMN email TYPE varchar(400)"))
            # Returned by the guard's read and by the rotation alike.
            db.session.execute(
                sa.text("ALTER TABLE user_groups ALTER COLUMN name TYPE varchar(40)")
            )
            db.session.commit()
        # The rotation first: it meets the stale statement itself.
        again = client.post(
            "/auth/refresh", json={"refresh_token": refreshed.json["refresh_token"]}
        )
        assert again.status_code == 200, again.json
        token = again.json["access_token"]
        changed = client.patch(
            "/auth/me/profile", json={"first_name": "Ada"}, headers=bearer(token)
        )
        assert changed.status_code == 200, changed.json
        assert me(client, token).json["profile"]["first_name"] == "Ada"
        assert me(client, token).json["group"] == "ADMIN"
    finally:
        with app.app_context():
            db.engine.dispose()
