"""The suite under pytest-xdist (`make test` runs `pytest -n auto`): what the controller does
around its workers. Loaded by conftest.py's `pytest_plugins`; does nothing in a run without
workers (`-n0`, plain `pytest`) nor in a worker.

Each worker is isolated from the others by what it makes for itself: PostgreSQL databases
named after the run and the worker (`tests.support.services.PG_DATABASE`), a redis-server
of its own (or its own database number of TEST_REDIS_URL), free ports, its own temporary
folder and chromium. A worker drops its databases and stops its redis-server in its session
finalizers; one that crashed never ran them, so the controller, at the end of the run, drops
every database of the run's workers still on the server, kills the redis-servers whose
pidfile was left in the run's temporary folder and removes the workers' SQLite folders in
/dev/shm.
"""

from __future__ import annotations

import os
import uuid

import pytest
import sqlalchemy as sa

from tests.support.services import (
    drop_worker_leftovers,
    kill_leftover_redis_servers,
    remove_worker_memory_folders,
)

RUN_ID = pytest.StashKey[str]()


@pytest.hookimpl(tryfirst=True)
def pytest_xdist_auto_num_workers(config: pytest.Config) -> int | None:
    """`-n auto`: a worker per core, and one more. Many tests wait on a process they started
    (`flask` commands, gunicorn, an RQ worker, chromium), on a server's timeout or on a
    scheduler's 2-second cadence; the extra worker runs tests meanwhile. Measured on two idle
    cores, on the courier, core, account and sessions tests: 140 s with two workers, 113 s
    with three, 145 s with four. PYTEST_XDIST_AUTO_NUM_WORKERS, when set, decides instead
    (xdist's own rule)."""
    if os.environ.get("PYTEST_XDIST_AUTO_NUM_WORKERS"):
        return None
    return len(os.sched_getaffinity(0)) + 1


def _is_controller(config: pytest.Config) -> bool:
    """A run that distributes its tests to workers, seen from the process that does."""
    if hasattr(config, "workerinput") or not config.pluginmanager.hasplugin("xdist"):
        return False
    if config.getoption("collectonly"):
        return False
    return config.getoption("dist") != "no" and bool(config.getoption("tx"))


def pytest_configure(config: pytest.Config) -> None:
    if not _is_controller(config):
        return
    # The id every worker reads as PYTEST_XDIST_TESTRUNUID and names its databases after;
    # fixed here, before xdist draws one, so the controller knows it too.
    if not config.option.testrunuid:
        config.option.testrunuid = uuid.uuid4().hex
    config.stash[RUN_ID] = config.option.testrunuid


@pytest.hookimpl(trylast=True)
def pytest_sessionfinish(session: pytest.Session) -> None:
    """After xdist has stopped the workers (its own sessionfinish comes first)."""
    config = session.config
    run_id = config.stash.get(RUN_ID, None)
    if run_id is None:
        return
    try:
        dropped = drop_worker_leftovers(run_id)
    except sa.exc.OperationalError:
        dropped = []  # PostgreSQL unreachable: no worker created anything there
    # The run's temporary folder, whose popen-gwN subfolders are the workers' (xdist reads
    # it the same way, there being no public accessor in a hook).
    killed = kill_leftover_redis_servers(config._tmp_path_factory.getbasetemp())
    removed = remove_worker_memory_folders(run_id)
    if dropped or killed or removed:
        reporter = config.pluginmanager.get_plugin("terminalreporter")
        message = (
            f"after a crashed worker: dropped {len(dropped)} database(s)"
            f" ({', '.join(dropped) or 'none'}), killed {killed} redis-server(s),"
            f" removed {len(removed)} SQLite folder(s) in memory"
        )
        if reporter is not None:
            reporter.write_line(message, yellow=True)
