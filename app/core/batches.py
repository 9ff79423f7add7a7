"""Deleting the rows that aged out (expired tokens, old security events, finished emails), a
batch at a time, through the index on the column they age by, within a time limit.

Each batch is one short transaction:

    DELETE FROM t WHERE id IN (
        SELECT id FROM t
        WHERE expires_at <= :now AND <after the last row this run deleted>
        ORDER BY expires_at, id LIMIT :batch FOR UPDATE SKIP LOCKED)
    RETURNING expires_at, id

- The rows are found through the index on the ageing column (`expires_at`, `created_at`),
  oldest first, never by walking the primary key past the rows that stay.
- The run keeps a cursor, the (expires_at, id) of the last row it deleted, and the next batch
  starts after it (`expires_at >= :key`, which the index serves, and the exact tie-break on
  `id`). No batch walks again the index entries of the rows deleted before it, which stay in
  the index until VACUUM: each batch costs the same, the first as the last.
- FOR UPDATE SKIP LOCKED (PostgreSQL; SQLite has one writer at a time anyway): two runs at
  once (two schedulers, a `flask cleanup-tokens` during a scheduled run) take different rows
  and never wait for each other; each row is deleted, and counted, by one of them, since a
  DELETE … RETURNING returns only the rows it deleted itself.
- A pause between batches leaves the database to the requests.
- With a time limit the run looks at the clock after each batch and stops before it, with
  what it did committed; `resume_point()` says where each table it did not finish stands, so
  the next run carries on from there (app/periodic/cleanup.py enqueues it at once).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.sql.dml import ReturningDelete

from app.core.db import db

log = logging.getLogger(__name__)

# Rows a batch deletes: a transaction of a few milliseconds, no long lock on a busy table.
DELETE_BATCH = 2000
# A breath between batches: the requests get the database (and, on a small host, the CPU)
# back between two batches, at about 10 s per million rows.
DELETE_PAUSE = 0.02
# What is left after a stop is counted up to this many rows a table (an index range count:
# a few milliseconds, however large the backlog).
COUNT_LEFT_UP_TO = 100_000

# Where a table's deletion stands: the (key, id) of the last row deleted, as JSON can carry it
# (an RQ job's arguments, a log line); None: not started.
ResumePoint = Mapping[str, "list[Any] | None"]


@dataclass(frozen=True, order=True)
class Position:
    """The last row a run deleted from a table, in the order it deletes them."""

    key: datetime
    id: int

    def to_json(self) -> list[Any]:
        return [self.key.isoformat(), self.id]

    @classmethod
    def from_json(cls, value: Sequence[Any] | None) -> Position | None:
        return None if value is None else cls(datetime.fromisoformat(value[0]), int(value[1]))


@dataclass(frozen=True)
class Aged:
    """The rows of `model` (which has an integer `id`) whose `column` reached `cutoff` (is
    at or before it, or strictly before it with `strictly`), among those meeting `where`."""

    model: Any
    column: Any  # the model's mapped datetime column, indexed
    cutoff: datetime
    strictly: bool = False
    where: tuple[sa.ColumnElement[bool], ...] = ()

    @property
    def name(self) -> str:
        return str(self.model.__tablename__)

    def conditions(self, after: Position | None) -> list[sa.ColumnElement[bool]]:
        column, model = self.column, self.model
        reached = column < self.cutoff if self.strictly else column <= self.cutoff
        conditions = [reached, *self.where]
        if after is not None:
            # The first condition bounds the index range; the second is the exact tie-break.
            conditions += [column >= after.key, sa.or_(column > after.key, model.id > after.id)]
        return conditions

    def delete_batch(self, after: Position | None, size: int) -> ReturningDelete[Any]:
        """The DELETE of the next `size` rows after `after`, returning their positions."""
        model = self.model
        batch = (
            sa.select(model.id)
            .where(*self.conditions(after))
            .order_by(self.column, model.id)
            .limit(size)
            .with_for_update(skip_locked=True)
            .scalar_subquery()
        )
        return (
            sa.delete(model)
            .where(model.id.in_(batch))
            .returning(self.column, model.id)
            .execution_options(synchronize_session=False)
        )


class Batches:
    """One cleanup run: its batch size and pause (DELETE_BATCH and DELETE_PAUSE unless
    given), its time limit, and where each table it did not finish stands.

    `resume` is a previous run's `resume_point()`: this run deletes from those tables only,
    each from where that run stopped. Without it, every table from its oldest row."""

    def __init__(
        self,
        batch_size: int | None = None,
        pause_seconds: float | None = None,
        *,
        time_limit: float | None = None,
        resume: ResumePoint | None = None,
    ) -> None:
        self.batch_size = DELETE_BATCH if batch_size is None else batch_size
        self.pause_seconds = DELETE_PAUSE if pause_seconds is None else pause_seconds
        self.deadline = None if time_limit is None else time.monotonic() + time_limit
        self.resume = resume
        self.batches = 0
        self.deleted = 0
        # The tables left unfinished at the time limit, and where each stands.
        self.left: dict[str, tuple[Aged, Position | None]] = {}

    def delete(
        self,
        model: Any,
        column: Any,
        *,
        up_to: datetime | None = None,
        before: datetime | None = None,
        where: Iterable[sa.ColumnElement[bool]] = (),
    ) -> int:
        """Delete the rows of `model` whose `column` (indexed) is `up_to` a time or
        `before` it (and that meet `where`); return how many this run deleted."""
        if (up_to is None) == (before is None):
            raise TypeError("give one of up_to and before")
        cutoff = up_to if up_to is not None else before
        assert cutoff is not None
        aged = Aged(model, column, cutoff, strictly=before is not None, where=tuple(where))
        if self.resume is not None and aged.name not in self.resume:
            return 0  # finished by the run this one continues
        position = Position.from_json(self.resume[aged.name]) if self.resume else None
        if self._out_of_time():
            self.left[aged.name] = (aged, position)
            return 0
        deleted, started, batches = 0, time.monotonic(), self.batches
        while True:
            rows = self._delete_batch(aged, position)
            self.batches += 1
            self.deleted += len(rows)
            deleted += len(rows)
            position = max(rows, default=position)
            finished = len(rows) < self.batch_size  # nothing more to take
            if finished:
                break
            if self._out_of_time():
                self.left[aged.name] = (aged, position)
                break
            time.sleep(self.pause_seconds)
        if deleted:
            log.info(
                "aged_rows_deleted",
                extra={
                    "table": aged.name,
                    "deleted": deleted,
                    "batches": self.batches - batches,
                    "seconds": round(time.monotonic() - started, 3),
                    "finished": finished,
                },
            )
        return deleted

    def _out_of_time(self) -> bool:
        # A run deletes one batch at least, whatever the clock says, so a chain of runs that
        # continue one another always gets on.
        return self.deadline is not None and self.deleted > 0 and time.monotonic() >= self.deadline

    def _delete_batch(self, aged: Aged, after: Position | None) -> list[Position]:
        rows = db.session.execute(aged.delete_batch(after, self.batch_size)).all()
        db.session.commit()
        return [Position(key, row_id) for key, row_id in rows]

    def resume_point(self) -> dict[str, list[Any] | None]:
        """Where each unfinished table stands, for the run that carries on."""
        return {
            name: None if position is None else position.to_json()
            for name, (_, position) in self.left.items()
        }

    def count_left(self, up_to: int = COUNT_LEFT_UP_TO) -> dict[str, int]:
        """How many rows each unfinished table still has to delete (at most `up_to`), for
        the tables that have any."""
        counts = {}
        for name, (aged, position) in self.left.items():
            found = sa.select(aged.model.id).where(*aged.conditions(position)).limit(up_to)
            count = db.session.scalar(sa.select(sa.func.count()).select_from(found.subquery()))
            if count:
                counts[name] = count
        db.session.rollback()  # end the read's transaction
        return counts
