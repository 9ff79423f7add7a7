"""Liveness and readiness: /health says the process is up, /health/ready checks its services."""

from __future__ import annotations

from collections.abc import Callable

from flask import Flask
from flask.testing import FlaskClient


def test_health_says_the_process_is_up(client: FlaskClient) -> None:
    response = client.get("/health")
    assert response.status_code == 200
    assert response.json == {"status": "ok"}


def test_ready_checks_database_and_redis(app_factory: Callable[..., Flask], redis_url: str) -> None:
    response = app_factory(REDIS_URL=redis_url).test_client().get("/health/ready")
    assert response.status_code == 200
    assert response.json == {"status": "ok", "checks": {"database": "ok", "redis": "ok"}}


def test_ready_names_what_is_down(app_factory: Callable[..., Flask]) -> None:
    # Nothing listens on port 1.
    response = app_factory(REDIS_URL="redis://127.0.0.1:1/0").test_client().get("/health/ready")
    assert response.status_code == 503
    assert response.json == {"status": "down", "checks": {"database": "ok", "redis": "down"}}


def test_the_documented_503_of_ready_is_the_body_it_sends(
    app_factory: Callable[..., Flask],
) -> None:
    client = app_factory(REDIS_URL="redis://127.0.0.1:1/0").test_client()
    documented = client.get("/openapi.json").json["paths"]["/health/ready"]["get"]["responses"]
    response = client.get("/health/ready")
    assert response.status_code == 503
    assert response.mimetype == "application/json"
    assert documented["503"]["content"] == {
        "application/json": {"schema": {"$ref": "#/components/schemas/Ready"}}
    }
