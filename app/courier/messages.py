"""The emails themselves: a template of app/templates/email/ rendered as text and HTML, and
recorded in the outbox with the change that promises it."""

from __future__ import annotations

from typing import Any

from flask import current_app, render_template

from app.courier.outbox import queue_email
from app.courier.quota import notice_quota_allows


def queue_message(
    to: str, template: str, subject: str, *, user_id: int | None, **context: Any
) -> None:
    """Render `template` (its .txt and .html) and record the email in the current transaction.

    `user_id` is the account the email is for (required, so that no caller forgets it): an
    email still unsent when that account is deleted is deleted with it."""
    context.setdefault("base_url", current_app.config["PUBLIC_BASE_URL"])
    text = render_template(f"email/{template}.txt", **context)
    html = render_template(f"email/{template}.html", **context)
    queue_email(to, subject, text, html, user_id=user_id)


def queue_notice(
    to: str, user_id: int, kind: str, template: str, subject: str, **context: Any
) -> None:
    """A notice that something changed on the account (`kind`, say "password-changed"):
    queued as `queue_message` does, unless one of that kind went in the last few minutes
    (`notice_quota_allows`), so changes made in a loop cannot flood the owner's mailbox."""
    if notice_quota_allows(kind, user_id):
        queue_message(to, template, subject, user_id=user_id, **context)


def hours(seconds: int) -> str:
    """A link's lifetime as an email says it: "24 hours", "1 hour", "0.5 hours"."""
    count = seconds / 3600
    return f"{count:g} hour{'s' if count != 1 else ''}"
