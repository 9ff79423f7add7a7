"""The one place where every error (a domain error, werkzeug's, the database's, any other)
becomes an RFC 9457 problem response."""

from __future__ import annotations

import logging
from typing import Any

from flask import Flask, Response, jsonify
from sqlalchemy import exc as sa_exc
from werkzeug.exceptions import HTTPException, InternalServerError

from app.core.errors import DomainError, NextStep

log = logging.getLogger(__name__)

PROBLEM_JSON = "application/problem+json"
# A 422 names at most this many fields: a body of thousands of unknown keys must not come
# back as a response many times its size.
MAX_FIELD_ERRORS = 20

# The database could not be reached or did not answer: stopped, restarting, hung, or the
# pool's connections all taken.
DATABASE_UNAVAILABLE = (
    sa_exc.OperationalError,
    sa_exc.InterfaceError,
    sa_exc.DisconnectionError,
    sa_exc.TimeoutError,
)
# A restart takes a few seconds; so does the wait for a hung server to be noticed.
DATABASE_RETRY_AFTER = 5
# A database that answers without the tables or columns the code reads: never migrated, or
# behind the code. PostgreSQL's SQLSTATEs undefined_table and undefined_column; SQLite only
# says it in words.
UNDEFINED_TABLE_OR_COLUMN = {"42P01", "42703"}
SQLITE_SCHEMA_MISSING = ("no such table", "no such column", "has no column named")


# The next steps services name, in words: the endpoints are the web layer's to say.
NEXT_STEPS = {
    NextStep.ASK_ACTIVATION_LINK: "Ask for a new activation link with POST /auth/activate/resend.",
    NextStep.ASK_RESET_LINK: "Ask for a new reset link with POST /auth/password/forgot.",
    NextStep.ASK_EMAIL_CHANGE_LINK: (
        "Sign in and ask for the change again with POST /auth/email/change."
    ),
    NextStep.TURN_ON_MFA: (
        "Turn on two-factor with POST /auth/mfa/totp/setup and /auth/mfa/totp/confirm."
    ),
}


def problem(
    status: int,
    title: str,
    detail: str,
    *,
    errors: dict[str, Any] | None = None,
    headers: dict[str, str] | None = None,
) -> Response:
    body: dict[str, Any] = {
        "type": "about:blank",
        "title": title,
        "status": status,
        "detail": detail,
    }
    if errors:
        # Field names as strings: a multipart part whose name Werkzeug cannot read is None.
        body["errors"] = {str(name): messages for name, messages in errors.items()}
    response = jsonify(body)
    response.status_code = status
    response.mimetype = PROBLEM_JSON
    if status == 401:
        response.headers["WWW-Authenticate"] = "Bearer"
    for name, value in (headers or {}).items():
        response.headers[name] = value
    return response


def _field_errors(messages: Any) -> dict[str, list[str]]:
    """Flatten webargs' `{location: {field: [msg]}}` into `{field: [msg]}`."""
    flat: dict[str, list[str]] = {}
    if not isinstance(messages, dict):
        return {"_schema": [str(messages)]}
    for location_errors in messages.values():
        if not isinstance(location_errors, dict):
            flat.setdefault("_schema", []).extend(_as_list(location_errors))
            continue
        for field, field_messages in location_errors.items():
            flat.setdefault(str(field), []).extend(_as_list(field_messages))
    return flat


def _as_list(messages: Any) -> list[str]:
    if isinstance(messages, list):
        return [str(m) for m in messages]
    if isinstance(messages, dict):
        return [f"{key}: {value}" for key, value in messages.items()]
    return [str(messages)]


def handle_http_exception(exc: HTTPException) -> Response:
    status = exc.code or 500
    data = getattr(exc, "data", None) or {}
    headers = dict(exc.get_headers()) if status in (405, 429) else {}
    headers.pop("Content-Type", None)
    if status == 422 and "messages" in data:
        errors = _field_errors(data["messages"])
        detail = "The request body or query has invalid fields."
        if len(errors) > MAX_FIELD_ERRORS:
            detail += f" The first {MAX_FIELD_ERRORS} of {len(errors)} are listed."
            errors = dict(list(errors.items())[:MAX_FIELD_ERRORS])
        return problem(422, "Unprocessable Content", detail, errors=errors)
    if status == 400 and "messages" in data:
        return problem(400, "Bad Request", "The request body is not valid JSON.")
    detail = exc.description or ""
    if status == 429:
        detail = "Too many requests; retry after the time given in Retry-After."
        retry_after = getattr(exc, "retry_after", None)
        if retry_after is not None and "Retry-After" not in headers:
            headers["Retry-After"] = str(retry_after)
    return problem(status, exc.name, detail, headers=headers)


def handle_domain_error(exc: DomainError) -> Response:
    retry_after = getattr(exc, "retry_after", None)
    headers = {"Retry-After": str(retry_after)} if retry_after is not None else None
    detail = exc.detail
    if exc.next_step is not None:
        detail = f"{detail} {NEXT_STEPS[exc.next_step]}"
    return problem(exc.status, exc.title, detail, errors=exc.errors, headers=headers)


def schema_not_migrated(exc: Exception) -> bool:
    cause = getattr(exc, "orig", None)
    if getattr(cause, "pgcode", None) in UNDEFINED_TABLE_OR_COLUMN:
        return True
    return isinstance(exc, sa_exc.OperationalError) and any(
        words in str(cause) for words in SQLITE_SCHEMA_MISSING
    )


def handle_database_error(exc: Exception) -> Response:
    """A database that does not answer, or that answers without our schema: both are 503,
    each said truly. Any other programming error is a bug, a 500."""
    # The driver's message names the failure (refused, closed, timed out, the missing table)
    # and, with hide_parameters, carries no bound value; the first line is enough.
    cause = getattr(exc, "orig", None) or exc
    reason = str(cause).strip().splitlines()
    fields = {"error": type(cause).__name__, "reason": reason[0] if reason else ""}
    if schema_not_migrated(exc):
        log.error(
            "database_not_migrated",
            extra={**fields, "action": "run `flask --app wsgi db upgrade`"},
        )
        return problem(
            503,
            "Service Unavailable",
            "The service's database is not ready (its schema is not migrated); "
            "retry after the time given in Retry-After.",
            headers={"Retry-After": str(DATABASE_RETRY_AFTER)},
        )
    if isinstance(exc, sa_exc.ProgrammingError):
        return handle_unexpected(exc)
    log.warning("database_unavailable", extra=fields)
    return problem(
        503,
        "Service Unavailable",
        "The database is not answering; retry after the time given in Retry-After.",
        headers={"Retry-After": str(DATABASE_RETRY_AFTER)},
    )


def handle_unexpected(exc: Exception) -> Response:
    log.exception("unhandled error", exc_info=exc)
    return problem(500, "Internal Server Error", InternalServerError.description)


def register_error_handlers(app: Flask) -> None:
    app.register_error_handler(HTTPException, handle_http_exception)
    app.register_error_handler(DomainError, handle_domain_error)
    for error in (*DATABASE_UNAVAILABLE, sa_exc.ProgrammingError):
        app.register_error_handler(error, handle_database_error)
    app.register_error_handler(Exception, handle_unexpected)
