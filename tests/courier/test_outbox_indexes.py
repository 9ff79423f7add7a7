"""The outbox's indexes (migration 0015): the sweep reads only unsent rows, the retention
clean-up finds old rows by created_at."""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from flask import Flask

from app.core.db import db, utcnow
from app.courier.models import EmailOutbox

UNSENT_INDEX = "ix_email_outbox_unsent_next_attempt_at"


def test_the_outbox_has_a_partial_index_for_the_sweep_and_one_on_created_at(app: Flask) -> None:
    with app.app_context():
        dialect = db.engine.dialect.name
        indexes = {ix["name"]: ix for ix in sa.inspect(db.engine).get_indexes("email_outbox")}

    assert indexes[UNSENT_INDEX]["column_names"] == ["next_attempt_at"]
    where = " ".join(str(indexes[UNSENT_INDEX]["dialect_options"][f"{dialect}_where"]).split())
    assert "sent_at IS NULL" in where and "payload IS NOT NULL" in where
    assert indexes["ix_email_outbox_created_at"]["column_names"] == ["created_at"]
    # The full index on next_attempt_at it replaces, which held every sent row too, is gone.
    assert "ix_email_outbox_next_attempt_at" not in indexes


@pytest.mark.postgres("SQLite has no switch to steer its planner off a table scan")
def test_the_sweep_s_query_can_use_the_partial_index(app: Flask) -> None:
    """The sweep's WHERE (app/courier/outbox.py, sweep_outbox) implies the index's predicate,
    so PostgreSQL may use it; told to avoid a sequential scan, it does."""
    statement = (
        sa.select(EmailOutbox)
        .where(
            EmailOutbox.sent_at.is_(None),
            EmailOutbox.payload.is_not(None),
            EmailOutbox.next_attempt_at <= utcnow(),
        )
        .order_by(EmailOutbox.id)
        .limit(500)
    )
    with app.app_context(), db.engine.connect() as conn:
        conn.execute(sa.text("SET LOCAL enable_seqscan = off"))
        compiled = statement.compile(conn, compile_kwargs={"literal_binds": True})
        plan = "\n".join(str(row) for row in conn.execute(sa.text(f"EXPLAIN {compiled}")))
    assert UNSENT_INDEX in plan, plan
