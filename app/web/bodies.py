"""The request-body policy: which bodies are read, how big they may be, and how JSON is
parsed, before any schema or use case sees them."""

from __future__ import annotations

import json
from typing import Any

from flask import Request, current_app, request
from marshmallow import Schema
from marshmallow.utils import missing
from webargs.flaskparser import FlaskParser
from werkzeug.exceptions import BadRequest, RequestEntityTooLarge, UnsupportedMediaType

BODY_TYPES = {"application/json", "multipart/form-data"}
# The largest JSON body of ours is a reset: a token and a 128-character password, well under
# 1 KiB. Anything near the cap is an attack, and reading it is the cost (600,000 keys took 8 s).
MAX_JSON_BODY = 16 * 1024
MAX_JSON_DEPTH = 32
_TOO_DEEP = f"The JSON body is nested more than {MAX_JSON_DEPTH} levels deep."


class JSONBodyParser(FlaskParser):
    """webargs reads a missing JSON body as `{}`, which an all-optional schema (the profile
    PATCH) would accept as a request that changes nothing. A body is required unless the
    schema says `OPTIONAL_BODY = True` (the refresh token may come in a header instead).

    webargs turns only a JSONDecodeError into its 400; JSON that Python reads badly is a
    400 here too, before any use case sees it."""

    def load_json(self, req: Request, schema: Schema) -> Any:
        data = super().load_json(req, schema)
        if data is missing and not getattr(schema, "OPTIONAL_BODY", False):
            raise BadRequest("This request needs a JSON body (Content-Type: application/json).")
        return data

    def _raw_load_json(self, req: Request) -> Any:
        try:
            data = super()._raw_load_json(req)
        except json.JSONDecodeError:
            raise  # webargs answers malformed JSON itself
        except RecursionError:  # the parser's own limit, deeper than any body we take
            raise BadRequest(_TOO_DEEP) from None
        except ValueError as exc:
            # json.loads refuses a number of over 4300 digits with a plain ValueError.
            raise BadRequest("The JSON body holds a number too long to read.") from exc
        unreadable = _not_unicode_text(data)
        if unreadable:
            raise BadRequest(unreadable)
        return data


def _not_unicode_text(data: Any) -> str | None:
    """Why a parsed body cannot be handled as text, or None.

    JSON may escape a lone surrogate (`"\\ud800"`), which no UTF-8 text can hold: hashing,
    storing or logging it fails, so every string and key must encode. Walked without
    recursion, and only so deep: no body of ours nests more than two levels."""
    stack: list[tuple[Any, int]] = [(data, 0)]
    while stack:
        value, depth = stack.pop()
        if isinstance(value, str):
            try:
                value.encode("utf-8")
            except UnicodeEncodeError:
                return (
                    "The JSON body has a lone surrogate escape (\\ud800-\\udfff): not Unicode text."
                )
        elif isinstance(value, dict | list):
            if depth >= MAX_JSON_DEPTH:
                return _TOO_DEEP
            items = [*value.keys(), *value.values()] if isinstance(value, dict) else value
            stack.extend((item, depth + 1) for item in items)
    return None


def body_policy() -> None:
    """Every request's body, before any view reads it: one we cannot read is a 415, before a
    schema turns it into missing fields; JSON bodies get a few KiB, and only a multipart
    upload (the avatar) gets MAX_CONTENT_LENGTH.

    Werkzeug refuses a Content-Length over the cap before reading, but a chunked body (no
    Content-Length) it only stops reading at the cap: what was read so far would be handled
    as the whole body. So a chunked body is read here, one byte past the cap: more than the
    cap is a 413 like any other body, and the rest of the request reads what was kept."""
    environ = request.environ
    if "CONTENT_LENGTH" not in environ and "HTTP_TRANSFER_ENCODING" not in environ:
        return  # no body at all (every GET): skip parsing the headers below
    chunked = _is_chunked()
    if (request.content_length or chunked) and (
        request.mimetype not in BODY_TYPES and not request.mimetype.endswith("+json")
    ):
        raise UnsupportedMediaType(
            "Send the body as application/json (multipart/form-data for the avatar upload)."
        )
    upload_cap = current_app.config["MAX_CONTENT_LENGTH"]
    cap = upload_cap if request.mimetype == "multipart/form-data" else MAX_JSON_BODY
    cap = min(cap, upload_cap)
    request.max_content_length = cap
    if request.content_length is None and chunked:
        request.max_content_length = cap + 1
        if len(request.get_data(cache=True)) > cap:
            raise RequestEntityTooLarge()
        request.max_content_length = cap


def _is_chunked() -> bool:
    return "chunked" in request.headers.get("Transfer-Encoding", "").lower()
