"""The API's Blueprint class: bodies parsed by our policy, answers kept by no cache."""

from __future__ import annotations

from typing import Any

import flask_smorest
from flask import Response

from app.web.bodies import JSONBodyParser


class Blueprint(flask_smorest.Blueprint):  # type: ignore[misc]
    """The API's blueprints. Their answers carry tokens or personal data, so no cache keeps
    them, unless the blueprint says `cacheable=True` and its views set Cache-Control (the
    JWKS, the avatars) or have nothing to keep private (/health)."""

    ARGUMENTS_PARSER = JSONBodyParser()

    def __init__(self, *args: Any, cacheable: bool = False, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if not cacheable:
            self.after_request(no_store)

    def arguments(self, schema: Any, **kwargs: Any) -> Any:
        """flask-smorest's, with a schema class made an instance once, here: webargs would
        otherwise build one for every request (0.1 ms of CPU, a tenth of a refresh)."""
        return super().arguments(schema() if isinstance(schema, type) else schema, **kwargs)


def no_store(response: Response) -> Response:
    """Responses that carry tokens or personal data are kept by no cache (RFC 6749 5.1)."""
    response.headers["Cache-Control"] = "no-store"
    response.headers["Pragma"] = "no-cache"
    return response
