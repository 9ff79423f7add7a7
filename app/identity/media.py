"""The route that serves avatars kept in the local folder (the embedded default).

Storage stores; this serves. With S3 the browser fetches presigned URLs from the bucket,
and `create_app` does not register this blueprint.
"""

from __future__ import annotations

from flask import Response, send_file
from werkzeug.exceptions import NotFound

from app.identity.storage import LOCAL_TYPES, PRESIGNED_URL_TTL, LocalStorage, avatar_storage
from app.web.blueprint import Blueprint

blp = Blueprint(
    "media",
    __name__,
    url_prefix="/media",
    description="Avatars, when kept in the local folder",
    cacheable=True,
)


@blp.route("/<path:key>", methods=["GET"])
@blp.doc(
    responses={
        "200": {
            "description": "The stored image",
            "content": {"image/webp": {"schema": {"type": "string", "format": "binary"}}},
        }
    }
)
@blp.alt_response(404, description="No such file")
def serve_media(key: str) -> Response:
    """A stored avatar. Only the types we write are served, never sniffed by the browser."""
    storage = avatar_storage()
    assert isinstance(storage, LocalStorage)
    try:
        path = storage.path(key)
    except ValueError as exc:
        raise NotFound() from exc
    content_type = LOCAL_TYPES.get(path.suffix)
    if content_type is None or not path.is_file():
        raise NotFound()
    response = send_file(path, mimetype=content_type, max_age=PRESIGNED_URL_TTL)
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Content-Security-Policy"] = "default-src 'none'; sandbox"
    return response
