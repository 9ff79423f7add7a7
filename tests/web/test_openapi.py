"""The OpenAPI document and the Swagger UI are served from the same schemas that validate."""

from __future__ import annotations

from flask.testing import FlaskClient


def test_openapi_document_and_swagger_ui_are_served(client: FlaskClient) -> None:
    spec = client.get("/openapi.json").json
    assert spec["openapi"].startswith("3.")
    for path in ("/auth/register", "/auth/login", "/auth/refresh", "/auth/me", "/health/ready"):
        assert path in spec["paths"]
    docs = client.get("/docs")
    assert docs.status_code == 200
    assert b"swagger" in docs.data.lower()
