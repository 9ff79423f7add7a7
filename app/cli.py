"""Flask CLI commands: `flask --app wsgi seed-groups | create-admin | cleanup-tokens | keys … |
outbox … | rq …`."""

from __future__ import annotations

from datetime import datetime

import click
from flask import Flask, current_app
from flask.cli import AppGroup, with_appcontext
from redis.exceptions import RedisError

from app.auth import passwords
from app.auth.service import set_password
from app.db import db
from app.errors import DomainError
from app.jobs.cleanup import delete_expired_tokens
from app.jobs.outbox import sweep_outbox
from app.jobs.worker import run_worker
from app.keys import service as keys
from app.keys.ring import keyring
from app.log import audit
from app.models import GroupName, User, UserProfile, utcnow
from app.schemas import NormalisedEmail
from app.users import find_user_by_email, get_group, seed_groups

rq_cli = AppGroup("rq", help="Run the RQ worker, scheduler or dashboard of this service.")
keys_cli = AppGroup(
    "keys", help="The keys that sign access tokens (published at /.well-known/jwks.json)."
)
outbox_cli = AppGroup("outbox", help="The email outbox.")


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
    except Exception as exc:
        raise click.BadParameter("not a valid email address", param_hint="--email") from exc
    seed_groups()
    admin_group = get_group(GroupName.ADMIN)
    user = find_user_by_email(email)
    if user is None:
        # Asked only now: an existing user keeps their password unless --password is given.
        password = password or click.prompt("Password", hide_input=True, confirmation_prompt=True)
        _check_strength(password, email)
        user = User(
            email=email, password_hash=passwords.hash_password(password), profile=UserProfile()
        )
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
        passwords.check_password_strength(password, email)
    except DomainError as exc:
        raise _refused(exc) from exc


def _refused(exc: DomainError) -> click.BadParameter:
    reasons = " ".join(m for messages in (exc.errors or {}).values() for m in messages)
    return click.BadParameter(reasons or exc.detail, param_hint="--password")


@click.command("cleanup-tokens")
@with_appcontext
def cleanup_tokens_command() -> None:
    """Delete expired activation, reset and refresh tokens now."""
    counts = delete_expired_tokens()
    for kind, count in counts.items():
        click.echo(f"{kind}: {count} deleted")


@keys_cli.command("ensure")
def keys_ensure_command() -> None:
    """Create a signing key if there is none (running it again changes nothing)."""
    key = keys.ensure_key()
    if key is None:
        click.echo("a signing key is already current")
        return
    audit("signing_key_created", kid=key.kid)
    click.echo(f"created signing key {key.kid}")


@keys_cli.command("rotate")
def keys_rotate_command() -> None:
    """Make a new signing key current; older keys stay published until their tokens expire."""
    try:
        key = keys.rotate_key()
    except DomainError as exc:
        raise click.ClickException(exc.detail) from exc
    keyring().forget()
    audit("signing_key_rotated", kid=key.kid)
    click.echo(
        f"signing key {key.kid} is current; every process signs with it within "
        f"{current_app.config['SIGNING_KEY_CACHE_SECONDS']} s"
    )


@keys_cli.command("list")
def keys_list_command() -> None:
    """Each key: kid, created, current or retired (and until when it is published)."""
    now = utcnow()
    for key in keys.all_keys():
        until = keys.published_until(key)
        if until is None:
            state = "current"
        elif until > now:
            state = f"retired {_iso(key.retired_at)}, published until {_iso(until)}"
        else:
            state = f"retired {_iso(key.retired_at)}, no longer published"
        click.echo(f"{key.kid}  created {_iso(key.created_at)}  {state}")


def _iso(moment: datetime | None) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ") if moment else "-"


@outbox_cli.command("sweep")
def outbox_sweep_command() -> None:
    """Dispatch again every email not sent in time (the scheduler does this every minute)."""
    click.echo(f"{sweep_outbox()} email(s) dispatched again")


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
    """Run an RQ worker for this service's queue; each job runs in a fresh app context."""
    run_worker(_app_with_redis(), burst=burst)


@rq_cli.command("scheduler")
@click.option("--burst", is_flag=True, help="Move due jobs once, then stop.")
def rq_scheduler_command(burst: bool) -> None:
    """Run rq-scheduler with the token cleanup and the outbox sweep, registered again
    whenever they go missing."""
    # Imported here: rq-scheduler brings freezegun and croniter, which no other command needs.
    from app.jobs.schedule import make_scheduler

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
    app.cli.add_command(rq_cli)
    app.cli.add_command(outbox_cli)
