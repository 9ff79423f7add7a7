"""PATCH /auth/me/profile: the caller edits their own profile fields, and nothing else."""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

import pytest
from flask.testing import FlaskClient

from app.core.db import utcnow
from tests.support.http import Accounts, assert_problem, bearer

EMAIL = "viewer@example.com"
EMPTY_PROFILE = {
    "first_name": None,
    "last_name": None,
    "gender": None,
    "date_of_birth": None,
    "info": None,
    "avatar_url": None,
}


@pytest.fixture
def headers(accounts: Accounts) -> dict[str, str]:
    return bearer(accounts.active_user(EMAIL)["access_token"])


def me(client: FlaskClient, headers: dict[str, str]) -> dict[str, Any]:
    response = client.get("/auth/me", headers=headers)
    assert response.status_code == 200
    return response.json  # type: ignore[no-any-return]


def test_every_field_can_be_set_and_is_returned(
    client: FlaskClient, headers: dict[str, str]
) -> None:
    body = {
        "first_name": "Ada",
        "last_name": "Lovelace",
        "gender": "WOMAN",
        "date_of_birth": "1990-12-10",
        "info": "Likes silent films.\nAnd noir.",
    }
    response = client.patch("/auth/me/profile", json=body, headers=headers)
    assert response.status_code == 200, response.json
    assert response.json == {**body, "avatar_url": None}
    assert me(client, headers)["profile"] == {**body, "avatar_url": None}


def test_only_the_fields_sent_change_and_null_clears(
    client: FlaskClient, headers: dict[str, str]
) -> None:
    client.patch("/auth/me/profile", json={"first_name": "Ada", "gender": "WOMAN"}, headers=headers)
    response = client.patch(
        "/auth/me/profile", json={"last_name": "Byron", "gender": None}, headers=headers
    )
    assert response.status_code == 200
    assert response.json == {
        **EMPTY_PROFILE,
        "first_name": "Ada",
        "last_name": "Byron",
    }


def test_an_empty_body_changes_nothing(client: FlaskClient, headers: dict[str, str]) -> None:
    response = client.patch("/auth/me/profile", json={}, headers=headers)
    assert response.status_code == 200
    assert response.json == EMPTY_PROFILE


def test_boundaries_are_accepted(client: FlaskClient, headers: dict[str, str]) -> None:
    body = {
        "first_name": "a" * 100,
        "last_name": "ü" * 100,
        "date_of_birth": "1900-01-01",
        "info": "i" * 2000,
        "gender": "MAN",
    }
    response = client.patch("/auth/me/profile", json=body, headers=headers)
    assert response.status_code == 200, response.json
    assert response.json == {**body, "avatar_url": None}
    today = utcnow().date().isoformat()
    response = client.patch("/auth/me/profile", json={"date_of_birth": today}, headers=headers)
    assert response.status_code == 200
    assert response.json["date_of_birth"] == today


TOMORROW = (date.today() + timedelta(days=2)).isoformat()


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"first_name": "a" * 101}, "first_name"),
        ({"last_name": "b" * 101}, "last_name"),
        ({"first_name": "Ada\nLovelace"}, "first_name"),
        ({"first_name": 42}, "first_name"),
        ({"info": "i" * 2001}, "info"),
        ({"info": "before\x00after"}, "info"),  # PostgreSQL text cannot hold NUL
        ({"gender": "OTHER"}, "gender"),
        ({"gender": "man"}, "gender"),
        ({"date_of_birth": TOMORROW}, "date_of_birth"),
        ({"date_of_birth": "1899-12-31"}, "date_of_birth"),
        ({"date_of_birth": "2000-02-30"}, "date_of_birth"),
        ({"date_of_birth": "10/12/1990"}, "date_of_birth"),
        ({"date_of_birth": "1990-12-10T00:00:00"}, "date_of_birth"),
        # Mass assignment: none of these may be set through the profile.
        ({"group": "ADMIN"}, "group"),
        ({"is_active": False}, "is_active"),
        ({"email": "other@example.com"}, "email"),
        ({"id": 999}, "id"),
        ({"avatar_url": "http://evil.test/x.png"}, "avatar_url"),
        ({"avatar_key": "avatars/1/x.webp"}, "avatar_key"),
        ({"user_id": 2}, "user_id"),
    ],
)
def test_bad_values_are_refused_and_nothing_changes(
    client: FlaskClient, headers: dict[str, str], body: dict[str, Any], field: str
) -> None:
    before = me(client, headers)
    response = client.patch(
        "/auth/me/profile", json={"first_name": "Changed", **body}, headers=headers
    )
    problem = assert_problem(response, 422)
    assert field in problem["errors"]
    assert me(client, headers) == before


def test_a_body_that_is_not_an_object_is_refused(
    client: FlaskClient, headers: dict[str, str]
) -> None:
    assert_problem(client.patch("/auth/me/profile", json=["Ada"], headers=headers), 422)
    assert_problem(
        client.patch(
            "/auth/me/profile", data="{oops", content_type="application/json", headers=headers
        ),
        400,
    )


def test_needs_an_access_token(client: FlaskClient) -> None:
    response = client.patch("/auth/me/profile", json={"first_name": "Ada"})
    assert_problem(response, 401)
    assert response.headers["WWW-Authenticate"] == "Bearer"


def test_each_user_edits_only_their_own_profile(
    client: FlaskClient, accounts: Accounts, headers: dict[str, str]
) -> None:
    other = bearer(accounts.active_user("other@example.com")["access_token"])
    client.patch("/auth/me/profile", json={"first_name": "Ada"}, headers=headers)
    assert me(client, other)["profile"] == EMPTY_PROFILE


def test_the_openapi_document_describes_the_profile_routes(client: FlaskClient) -> None:
    spec = client.get("/openapi.json").json
    paths = spec["paths"]
    assert "patch" in paths["/auth/me/profile"]
    assert {"put", "delete"} <= set(paths["/auth/me/avatar"])
    body = paths["/auth/me/avatar"]["put"]["requestBody"]["content"]["multipart/form-data"]
    name = body["schema"]["$ref"].rsplit("/", 1)[1]
    assert spec["components"]["schemas"][name]["properties"]["avatar"] == {
        "type": "string",
        "format": "binary",
        "description": "A PNG, JPEG or WebP image of at most 5 MiB",
    }


def test_a_request_without_a_body_is_400_and_changes_nothing(
    client: FlaskClient, headers: dict[str, str]
) -> None:
    client.patch("/auth/me/profile", json={"first_name": "Ada"}, headers=headers)
    response = client.patch("/auth/me/profile", headers=headers)
    assert_problem(response, 400)
    assert "JSON body" in response.json["detail"]
    assert me(client, headers)["profile"]["first_name"] == "Ada"


@pytest.mark.parametrize("name", ["", "   ", "\u00a0\u2003"])
@pytest.mark.parametrize("field", ["first_name", "last_name"])
def test_a_blank_name_is_422_and_changes_nothing(
    client: FlaskClient, headers: dict[str, str], field: str, name: str
) -> None:
    # A name of spaces shows as nobody's name; null is the way to clear one.
    client.patch("/auth/me/profile", json={field: "Ada"}, headers=headers)
    response = client.patch("/auth/me/profile", json={field: name}, headers=headers)
    assert field in assert_problem(response, 422)["errors"]
    assert me(client, headers)["profile"][field] == "Ada"


@pytest.mark.parametrize("breaker", ["\u0085", "\u2028", "\u2029", "\u009b"])
def test_unicode_line_breaks_and_c1_controls_in_a_name_are_422(
    client: FlaskClient, headers: dict[str, str], breaker: str
) -> None:
    # A name is one line: NEL, LINE and PARAGRAPH SEPARATOR break lines as "\n" does.
    response = client.patch(
        "/auth/me/profile", json={"first_name": f"Ada{breaker}Lovelace"}, headers=headers
    )
    assert "first_name" in assert_problem(response, 422)["errors"]


@pytest.mark.parametrize(
    "value", ["10/12/1990", "2000-02-30", "1990-12-10T00:00:00", "1899-12-31", TOMORROW]
)
def test_every_date_of_birth_error_says_the_format(
    client: FlaskClient, headers: dict[str, str], value: str
) -> None:
    response = client.patch("/auth/me/profile", json={"date_of_birth": value}, headers=headers)
    (message,) = assert_problem(response, 422)["errors"]["date_of_birth"]
    assert "YYYY-MM-DD" in message
