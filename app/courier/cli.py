"""`flask outbox sweep | list`: the email outbox, for the operator."""

from __future__ import annotations

import click
from flask.cli import AppGroup

from app.core.log import iso_utc as _iso
from app.courier.models import EmailOutbox
from app.courier.outbox import sweep_outbox, unsent_emails

outbox_cli = AppGroup("outbox", help="The email outbox.")


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
