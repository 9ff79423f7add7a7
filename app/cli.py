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
from app.jobs.outbox import sweep_outbox, unsent_emails
from app.jobs.worker import run_worker
from app.keys import service as keys
from app.keys.models import SigningKey
from app.keys.ring import keyring
from app.log import audit
from app.models import EmailOutbox, GroupName, User, UserProfile, utcnow
from app.schemas import NormalisedEmail
from app.users import find_user_by_email, get_group, seed_groups

rq_cli = AppGroup("rq", help="Run the RQ worker or scheduler of this service.")
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
@click.option(
    "--now",
    "at_once",
    is_flag=True,
    help="Sign with the new key at once, for a compromised key: services that cached the "
    "JWKS refuse its tokens until they fetch it again.",
)
def keys_rotate_command(at_once: bool) -> None:
    """Publish a new signing key now; it signs once every cached JWKS has expired (or at once
    with --now). Older keys stay published until their tokens expire."""
    try:
        key = keys.rotate_key(at_once=at_once)
    except DomainError as exc:
        raise click.ClickException(exc.detail) from exc
    keyring().forget()
    audit("signing_key_rotated", kid=key.kid, signs_from=_iso(key.signs_from), at_once=at_once)
    cache = current_app.config["SIGNING_KEY_CACHE_SECONDS"]
    if at_once:
        click.echo(
            f"signing key {key.kid} signs now (every process within {cache} s); a service "
            "holding a JWKS fetched before may answer 401 to its tokens for up to "
            f"{int(keys.publish_ahead().total_seconds())} s, unless it fetches the JWKS again on "
            "an unknown kid"
        )
        return
    click.echo(
        f"signing key {key.kid} is published now (by every process within {cache} s) and "
        f"signs from {_iso(key.signs_from)}, once every JWKS cached before has expired "
        f"(max-age {keys.JWKS_MAX_AGE} s + {cache} s)"
    )


@keys_cli.command("list")
def keys_list_command() -> None:
    """Each key: kid, created, and next (signs from), current or retired (published until)."""
    now = utcnow()
    for key in keys.all_keys():
        click.echo(f"{key.kid}  created {_iso(key.created_at)}  {_key_state(key, now)}")


def _key_state(key: SigningKey, now: datetime) -> str:
    retired, until = key.retired_at, keys.published_until(key)
    if key.signs_from > now:
        return f"next, signs from {_iso(key.signs_from)}"
    if retired is None or until is None:
        return "current"
    if retired > now:
        return f"current, signs until {_iso(retired)}"
    published = f"published until {_iso(until)}" if until > now else "no longer published"
    return f"retired {_iso(retired)}, {published}"


def _iso(moment: datetime | None) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ") if moment else "-"


@outbox_cli.command("sweep")
def outbox_sweep_command() -> None:
    """Dispatch again every email not sent in time (the scheduler does this every minute)."""
    click.echo(f"{sweep_outbox()} email(s) dispatched again")


@outbox_cli.command("list")
@click.option("--failed", is_flag=True, help="Only the emails the mail server refused for good.")
def outbox_list_command(failed: bool) -> None:
    """Emails not sent: id, Message-ID, created, and pending, failed (the server's answer) or
    given up."""
    for row in unsent_emails(failed_only=failed):
        click.echo(
            f"{row.id}  {row.message_id}  created {_iso(row.created_at)}  {_email_state(row)}"
        )


def _email_state(row: EmailOutbox) -> str:
    if row.failed_at is not None:
        return f"failed {_iso(row.failed_at)}: {row.failure}"
    if row.payload is None:
        return "given up"
    return (
        f"pending, dispatched again {row.attempts} time(s), next look {_iso(row.next_attempt_at)}"
    )


def _app_with_redis() -> Flask:
    app: Flask = current_app._get_current_object()  # type: ignore[attr-defined]
    if not app.config["REDIS_URL"]:
        # Without it the queue would be redis://localhost by accident, or a traceback.
        raise click.UsageError("REDIS_URL is not set: the worker and scheduler need Redis.")
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


def register_cli(app: Flask) -> None:
    for command in (seed_groups_command, create_admin_command, cleanup_tokens_command):
        app.cli.add_command(command)
    app.cli.add_command(keys_cli)
    app.cli.add_command(rq_cli)
    app.cli.add_command(outbox_cli)
