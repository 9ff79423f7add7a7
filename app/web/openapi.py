"""The OpenAPI side of the API: the problem body, the bearer scheme and the one `api`.

Every error response in /openapi.json is documented as the problem body `errors.problem()`
sends, in one place (the `ProblemResponses` plugin), so no route can document it wrongly.
"""

from __future__ import annotations

import threading
from http import HTTPStatus
from typing import Any, cast

from apispec import APISpec, BasePlugin
from flask_smorest import Api
from marshmallow import Schema, fields

from app.web.problems import PROBLEM_JSON
from app.web.requests import HEX_ID, HexIdConverter

# The security requirement of every operation that takes an access token.
BEARER: list[dict[str, list[str]]] = [{"bearerAuth": []}]
BEARER_SCHEME = {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}


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


class ProblemApi(Api):  # type: ignore[misc]
    """flask-smorest's Api, whose routes are documented when the document is first read.

    Documenting a blueprint's routes (schemas to OpenAPI, every operation through the
    plugins) was over half of what building an app cost (30 of 55 ms of CPU), paid by every
    process at start - gunicorn's workers, each `flask` command, the RQ worker - and by
    every app a test builds, while only /openapi.json, /docs and the schema tests read the
    document. `register_blueprint` registers the blueprint with the app at once, as
    flask-smorest does, and keeps its documentation for the first read of `spec`, which
    writes each in the order they were registered: the same document.
    """

    # flask-smorest's own error body ("Error") would otherwise be published unused.
    ERROR_SCHEMA = ProblemSchema

    _spec: APISpec | None = None
    _undocumented: list[tuple[Any, str, Any]]

    # Two threads of a worker reading the document first at once write it once, in order.
    _documenting = threading.Lock()

    @property
    def spec(self) -> APISpec | None:
        if self._undocumented:
            with self._documenting:
                while self._spec is not None and self._undocumented:
                    blp, name, parameters = self._undocumented[0]
                    blp.register_views_in_doc(
                        self, self._app, self._spec, name=name, parameters=parameters
                    )
                    self._spec.tag({"name": name, "description": blp.description})
                    self._undocumented.pop(0)
        return self._spec

    @spec.setter
    def spec(self, spec: APISpec | None) -> None:
        # Set by init_app: a new app's document, which holds none of an earlier app's routes.
        self._spec, self._undocumented = spec, []

    def init_app(self, app: Any, *args: Any, **kwargs: Any) -> None:
        super().init_app(app, *args, **kwargs)
        cast(APISpec, self.spec).components.security_scheme("bearerAuth", BEARER_SCHEME)

    def register_blueprint(self, blp: Any, *, parameters: Any = None, **options: Any) -> None:
        """flask-smorest's, with the blueprint's documentation left for the first read."""
        name = options.get("name", blp.name)
        self._app.extensions["flask-smorest"]["blp_name_to_api"][name] = self
        self._app.register_blueprint(blp, **options)
        self._undocumented.append((blp, name, parameters))


def _hex_id_schema(_converter: HexIdConverter) -> dict[str, Any]:
    return {"type": "string", "pattern": f"^{HEX_ID}$", "minLength": 32, "maxLength": 32}


# Every blueprint registers with it (app/factory.py); every error response in /openapi.json is
# the problem body the server sends.
api = ProblemApi(spec_kwargs={"extra_plugins": [ProblemResponses()]})
# Once, here: every app's spec documents the converters registered before it starts.
api.register_converter(HexIdConverter, _hex_id_schema)
