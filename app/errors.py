"""Domain errors and the one place where every error becomes an RFC 9457 problem response."""

from __future__ import annotations

import logging
from http import HTTPStatus
from typing import Any

from apispec import APISpec, BasePlugin
from flask import Flask, Response, jsonify
from marshmallow import Schema, fields
from werkzeug.exceptions import HTTPException, InternalServerError

log = logging.getLogger(__name__)

PROBLEM_JSON = "application/problem+json"


class DomainError(Exception):
    """An expected failure of a use case; `status` and `title` say how the API answers it."""

    status = 400
    title = "Bad Request"

    def __init__(self, detail: str, *, errors: dict[str, list[str]] | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        self.errors = errors


class InvalidInput(DomainError):
    status = 422
    title = "Unprocessable Content"


class InvalidToken(DomainError):
    status = 400
    title = "Invalid Token"


class WrongPassword(DomainError):
    status = 400
    title = "Wrong Password"


class NotAuthenticated(DomainError):
    status = 401
    title = "Unauthorized"


class PermissionDenied(DomainError):
    status = 403
    title = "Forbidden"


class NotFound(DomainError):
    status = 404
    title = "Not Found"


class Conflict(DomainError):
    status = 409
    title = "Conflict"


class ContentTooLarge(DomainError):
    status = 413
    title = "Content Too Large"


class UnsupportedMediaType(DomainError):
    status = 415
    title = "Unsupported Media Type"


class ProblemSchema(Schema):
    """The RFC 9457 body of every error response, as `problem()` builds it."""

    type = fields.String(required=True, metadata={"example": "about:blank"})
    title = fields.String(required=True)
    status = fields.Integer(required=True)
    detail = fields.String(required=True)
    errors = fields.Dict(
        keys=fields.String(),
        values=fields.List(fields.String()),
        metadata={"description": "Field name → messages, for invalid input"},
    )


# What the server can answer on top of what each route documents: a body it cannot read
# (400 malformed JSON, 413 too large, 415 wrong content type, 422 invalid fields), and 401
# on every operation that takes a bearer token.
_BODY_ERRORS = (400, 413, 415, 422)
_AUTH_ERRORS = (401,)
_HEADERS: dict[int, dict[str, Any]] = {
    401: {
        "WWW-Authenticate": {
            "description": "Always `Bearer`",
            "required": True,
            "schema": {"type": "string"},
        }
    },
    429: {
        "Retry-After": {
            "description": "Seconds to wait before trying again",
            "schema": {"type": "integer"},
        }
    },
}


class ProblemResponses(BasePlugin):
    """Document every error response the way `problem()` sends it, in one place.

    flask-smorest documents its errors (the `default` response, the 422 of
    `@blp.arguments`) as `application/json` with its own body; ours are
    `application/problem+json` with `ProblemSchema`. This replaces those, gives a problem
    body to the error responses routes declare with a description only (one declared with
    its own body, like the 503 of /health/ready, keeps it), and adds the errors every
    operation with a body or a bearer token can answer.
    """

    def init_spec(self, spec: APISpec) -> None:
        spec.components.schema("Problem", schema=ProblemSchema)

    def operation_helper(
        self, path: str | None = None, operations: dict[str, Any] | None = None, **kwargs: Any
    ) -> None:
        for operation in (operations or {}).values():
            responses: dict[Any, Any] = operation.setdefault("responses", {})
            codes: list[int] = []
            if "requestBody" in operation:
                codes.extend(_BODY_ERRORS)
            if operation.get("security"):
                codes.extend(_AUTH_ERRORS)
            for code in codes:
                responses.setdefault(code, {})
            responses["default"] = {"description": "Any other error"}
            for code, response in list(responses.items()):
                status = None if code == "default" else int(code)
                if status is not None and status < 400:
                    continue
                if not isinstance(response, dict):  # a flask-smorest component name
                    response = {}
                responses[code] = _problem_response(status, response)
            operation["responses"] = dict(sorted(responses.items(), key=_response_order))


def _response_order(item: tuple[Any, Any]) -> int:
    code = item[0]
    return 1000 if code == "default" else int(code)


def _problem_response(status: int | None, response: dict[str, Any]) -> dict[str, Any]:
    documented = dict(response)
    if status is not None:
        documented.setdefault("description", HTTPStatus(status).phrase)
        if status in _HEADERS:
            documented["headers"] = {**_HEADERS[status], **documented.get("headers", {})}
    # A route that declares its own error body (the 503 of /health/ready) sends that body.
    documented.setdefault("content", {PROBLEM_JSON: {"schema": "Problem"}})
    return documented


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
        return problem(
            422,
            "Unprocessable Content",
            "The request body or query has invalid fields.",
            errors=_field_errors(data["messages"]),
        )
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
    return problem(exc.status, exc.title, exc.detail, errors=exc.errors)


def handle_unexpected(exc: Exception) -> Response:
    log.exception("unhandled error", exc_info=exc)
    return problem(500, "Internal Server Error", InternalServerError.description)


def register_error_handlers(app: Flask) -> None:
    app.register_error_handler(HTTPException, handle_http_exception)
    app.register_error_handler(DomainError, handle_domain_error)
    app.register_error_handler(Exception, handle_unexpected)
