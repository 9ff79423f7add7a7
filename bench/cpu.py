"""CPU time spent serving a load: the gunicorn master and its workers, plus the PostgreSQL
backends connected on their behalf, read from /proc/<pid>/stat (utime + stime).

Wall-clock throughput depends on whatever else the machine runs; CPU per request much less,
so it is the figure that compares the service with the floor on a shared machine.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg2

TICK_S = 1 / os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class Subject:
    """A web process tree under test and the name its database connections carry."""

    label: str  # "service" or "floor"
    port: int
    master_pid: int
    application_name: str  # PostgreSQL's application_name, set in its DATABASE_URL


@dataclass(frozen=True)
class Snapshot:
    web: dict[int, int]  # pid -> utime + stime, in clock ticks
    database: dict[int, int]


@dataclass(frozen=True)
class CpuUsed:
    web_s: float
    database_s: float

    @property
    def total_s(self) -> float:
        return self.web_s + self.database_s


def _ticks(pid: int) -> int | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None  # the process has exited
    # The command name may hold spaces and parentheses; the fields after it do not.
    fields = stat.rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15 of proc(5))


def _children(parent: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        if ppid == parent:
            found.append(int(entry.name))
    return found


class CpuProbe:
    """Reads the CPU counters of a subject. Its own connection goes to the admin database, so
    it is never one of the backends it counts, and it runs in autocommit, because
    pg_stat_activity inside a transaction keeps answering from its first snapshot."""

    def __init__(self, admin_url: str, database: str) -> None:
        self.database = database
        self.conn: Any = psycopg2.connect(admin_url)
        self.conn.autocommit = True

    def close(self) -> None:
        self.conn.close()

    def backends(self, subject: Subject) -> list[int]:
        with self.conn.cursor() as cur:
            cur.execute(
                "SELECT pid FROM pg_stat_activity WHERE datname = %s AND application_name = %s",
                (self.database, subject.application_name),
            )
            return [row[0] for row in cur.fetchall()]

    def snapshot(self, subject: Subject) -> Snapshot:
        # Workers are looked up every time: gunicorn replaces one that dies or times out.
        web_pids = [subject.master_pid, *_children(subject.master_pid)]
        return Snapshot(_read(web_pids), _read(self.backends(subject)))


def _read(pids: list[int]) -> dict[int, int]:
    return {pid: ticks for pid in pids if (ticks := _ticks(pid)) is not None}


def used(before: Snapshot, after: Snapshot) -> CpuUsed:
    """CPU between two snapshots. A process that appeared in between (a new backend) counts
    from zero; one that exited in between is lost, which a steady load does not do."""

    def delta(old: dict[int, int], new: dict[int, int]) -> float:
        return sum(ticks - old.get(pid, 0) for pid, ticks in new.items()) * TICK_S

    return CpuUsed(delta(before.web, after.web), delta(before.database, after.database))
