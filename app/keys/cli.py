"""`flask keys ensure | rotate | list`: the signing keys, for the operator."""

from __future__ import annotations

from datetime import datetime

import click
from flask import current_app
from flask.cli import AppGroup

from app.core.db import utcnow
from app.core.errors import DomainError
from app.core.log import audit
from app.core.log import iso_utc as _iso
from app.keys import service as keys
from app.keys.models import SigningKey
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
