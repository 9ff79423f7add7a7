"""`flask mfa reencrypt`: the TOTP secrets after a SECRET_KEY change, for the operator."""

from __future__ import annotations

import click
from flask.cli import AppGroup

from app.core.log import audit
from app.mfa import service

mfa_cli = AppGroup("mfa", help="Two-factor sign-in: the TOTP secrets encrypted at rest.")


@mfa_cli.command("reencrypt")
@click.option(
    "--previous-secret-key",
    envvar="PREVIOUS_SECRET_KEY",
    prompt="Previous SECRET_KEY",
    hide_input=True,
    help="The SECRET_KEY the secrets were encrypted with (asked for, or read from the "
    "PREVIOUS_SECRET_KEY variable: never typed on a command line others can read).",
)
def mfa_reencrypt_command(previous_secret_key: str) -> None:
    """Encrypt again with SECRET_KEY every TOTP secret the previous key encrypted (running it
    again changes nothing)."""
    counts = service.reencrypt_secrets(previous_secret_key)
    audit("totp_secrets_reencrypted", **counts)
    for state, count in counts.items():
        click.echo(f"{state}: {count}")
    if counts["unreadable"]:
        raise click.ClickException(
            f"{counts['unreadable']} secrets are readable by neither key: their people need an"
            " admin's POST /admin/users/{id}/mfa/reset"
        )
