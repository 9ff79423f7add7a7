"""An upgrade moved the periodic jobs' functions (app/jobs/… became app/periodic/… and
app/courier/…): a schedule an older release left in Redis must not keep naming a function
no worker can import any more."""

from __future__ import annotations

from datetime import UTC, datetime

from flask import Flask
from rq.job import JobStatus

from app.core.redis import redis_connection
from app.periodic.scheduler import CLEANUP_JOB_ID, SWEEP_JOB_ID, make_scheduler
from tests.support.apps import run_worker

# Where the previous release kept them.
OLD_PATHS = {
    CLEANUP_JOB_ID: "app.jobs.cleanup.delete_expired_tokens",
    SWEEP_JOB_ID: "app.jobs.outbox.sweep_outbox",
}


def test_a_schedule_naming_moved_functions_is_replaced_and_runs(redis_app: Flask) -> None:
    scheduler = make_scheduler(redis_app)
    for periodic in scheduler.periodic:  # what the previous release's scheduler wrote
        scheduler.schedule(
            scheduled_time=datetime.now(UTC),
            func=OLD_PATHS[periodic.job_id],
            interval=periodic.every,
            repeat=None,
            id=periodic.job_id,
            result_ttl=-1,
        )

    registered = make_scheduler(redis_app).register_all()

    assert {periodic.job_id for periodic in registered} == {CLEANUP_JOB_ID, SWEEP_JOB_ID}
    jobs = {job.id: job for job in scheduler.get_jobs()}
    assert jobs[CLEANUP_JOB_ID].func_name == "app.periodic.cleanup.delete_expired_tokens"
    assert jobs[SWEEP_JOB_ID].func_name == "app.courier.outbox.sweep_outbox"
    # A second start finds them as they are now and leaves them alone.
    assert make_scheduler(redis_app).register_all() == []

    scheduler.enqueue_jobs()
    run_worker(redis_app)
    for job_id in (CLEANUP_JOB_ID, SWEEP_JOB_ID):
        job = scheduler.job_class.fetch(job_id, connection=redis_connection(redis_app))
        assert job.get_status() == JobStatus.FINISHED
