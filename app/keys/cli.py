"""`flask keys ensure | rotate | list`: the signing keys, for the operator."""

from __future__ import annotations

from datetime import datetime

import click
from flask import current_app
from flask.cli import AppGroup

from app.core.db import utcnow
from app.core.errors import DomainError
from app.core.log import audit
from app.keys import service as keys
from app.keys.ring import keyring

keys_cli = AppGroup(
    "keys", help="The keys that sign access tokens (published at /.well-known/jwks.json)."
)


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
