"""Flask CLI commands: `flask --app wsgi seed-groups | create-admin | cleanup-tokens | keys … |
mfa … | outbox … | rq …`."""

from __future__ import annotations

import click
from flask import Flask, current_app
from flask.cli import AppGroup, with_appcontext
from marshmallow import ValidationError
from redis.exceptions import RedisError

from app.core.db import db
from app.core.errors import DomainError
from app.core.log import audit
from app.courier.cli import outbox_cli
from app.courier.worker import run_worker
from app.identity.models import GroupName, User, UserProfile
from app.identity.users import find_user_by_email, get_group, seed_groups
from app.keys.cli import keys_cli
from app.mfa.cli import mfa_cli
from app.passwords.hashing import hash_password
from app.passwords.service import set_password
from app.passwords.strength import check_password_strength
from app.periodic.cleanup import delete_expired_tokens
from app.web.schemas import NormalisedEmail

rq_cli = AppGroup("rq", help="Run the RQ worker, scheduler or dashboard of this service.")


@click.command("seed-groups")
@with_appcontext
def seed_groups_command() -> None:
    """Create the USER, MODERATOR and ADMIN groups (running it again changes nothing)."""
    created = seed_groups()
    click.echo(f"created groups: {', '.join(created)}" if created else "groups already present")


@click.command("create-admin")
@with_appcontext
@click.option("--email", required=True, help="Email of the admin.")
@click.option(
    "--password",
    help="Password of a new admin (asked for when not given); for an existing user, a new "
    "password that ends every login of the account.",
)
def create_admin_command(email: str, password: str | None) -> None:
    """Create an active ADMIN, or promote and activate the existing user with that email."""
    try:
        email = NormalisedEmail().deserialize(email)
    except ValidationError as exc:  # its message says what to change
        raise click.BadParameter(" ".join(exc.messages), param_hint="--email") from exc
    seed_groups()
    admin_group = get_group(GroupName.ADMIN)
    user = find_user_by_email(email)
    if user is None:
        # Asked only now: an existing user keeps their password unless --password is given.
        password = password or click.prompt("Password", hide_input=True, confirmation_prompt=True)
        _check_strength(password, email)
        user = User(email=email, password_hash=hash_password(password), profile=UserProfile())
        db.session.add(user)
        action = "created"
    else:
        action = "promoted"
        if password is not None:
            # As any password change: every login ends, no reset link is left, a notice.
            try:
                set_password(user, password, field="password")
            except DomainError as exc:
                raise _refused(exc) from exc
    user.group = admin_group
    user.activate()
    db.session.commit()
    audit(f"admin_{action}_from_cli", user_id=user.id, password_set=password is not None)
    note = ", password set" if action == "promoted" and password is not None else ""
    click.echo(f"{action} admin {email} (id {user.id}{note})")


def _check_strength(password: str, email: str) -> None:
    try:
        check_password_strength(password, email)
    except DomainError as exc:
        raise _refused(exc) from exc


def _refused(exc: DomainError) -> click.BadParameter:
    reasons = " ".join(m for messages in (exc.errors or {}).values() for m in messages)
    return click.BadParameter(reasons or exc.detail, param_hint="--password")


@click.command("cleanup-tokens")
@with_appcontext
def cleanup_tokens_command() -> None:
    """Delete now, with no time limit, what the scheduled clean-up deletes: expired tokens,
    logins, challenges and sign-ins, old security events and finished outbox emails; safe
    beside a scheduled run."""
    counts = delete_expired_tokens()
    for kind, count in counts.items():
        click.echo(f"{kind}: {count} deleted")


def _app_with_redis() -> Flask:
    app: Flask = current_app._get_current_object()  # type: ignore[attr-defined]
    if not app.config["REDIS_URL"]:
        # Without it the queue would be redis://localhost by accident, or a traceback.
        raise click.UsageError(
            "REDIS_URL is not set: the worker, scheduler and dashboard need Redis."
        )
    return app


@rq_cli.command("worker")
@click.option("--burst", is_flag=True, help="Stop when the queue is empty.")
def rq_worker_command(burst: bool) -> None:
    """Run an RQ worker for this service's queue: each job in this process (no fork), in a
    fresh app context, its emails over one kept SMTP connection. Start several for more."""
    run_worker(_app_with_redis(), burst=burst)


@rq_cli.command("scheduler")
@click.option("--burst", is_flag=True, help="Move due jobs once, then stop.")
def rq_scheduler_command(burst: bool) -> None:
    """Run rq-scheduler with the token cleanup and the outbox sweep, registered again
    whenever they go missing."""
    # Imported here: rq-scheduler brings freezegun and croniter, which no other command needs.
    from app.periodic.scheduler import make_scheduler

    scheduler = make_scheduler(_app_with_redis())
    try:
        registered = scheduler.register_all()
    except RedisError:
        click.echo("Redis is not answering: the jobs are registered once it does")
    else:
        for periodic in scheduler.periodic:
            state = "scheduled" if periodic in registered else "already scheduled"
            click.echo(f"{periodic.what} {state} every {periodic.every} s")
    scheduler.run(burst=burst)


@rq_cli.command("dashboard")
@click.option("--port", default=9181, show_default=True, help="Port on 127.0.0.1.")
def rq_dashboard_command(port: int) -> None:
    """Serve the RQ dashboard of this service's Redis on http://127.0.0.1:PORT."""
    # REDIS_URL as every process reads it (.env included): the worker's Redis, not a default.
    redis_url = _app_with_redis().config["REDIS_URL"]
    # Imported here: no other command needs them.
    import rq_dashboard
    from rq_dashboard.web import setup_rq_connection
    from werkzeug.serving import run_simple

    # rq-dashboard embedded as its README shows, served by the server its own command runs
    # (whose app.run() refuses to start inside a flask command). On 127.0.0.1 only: the
    # dashboard has no authentication.
    dashboard = Flask("rq_dashboard")
    dashboard.config["RQ_DASHBOARD_REDIS_URL"] = redis_url
    setup_rq_connection(dashboard)
    dashboard.register_blueprint(rq_dashboard.blueprint)
    run_simple("127.0.0.1", port, dashboard, threaded=True)


def register_cli(app: Flask) -> None:
    for command in (seed_groups_command, create_admin_command, cleanup_tokens_command):
        app.cli.add_command(command)
    app.cli.add_command(keys_cli)
    app.cli.add_command(mfa_cli)
    app.cli.add_command(rq_cli)
    app.cli.add_command(outbox_cli)
