"""Every error is an RFC 9457 problem body, and no request body Python reads badly is a 500."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from flask import Flask
from flask.testing import FlaskClient

from tests.support.http import PASSWORD, Accounts, assert_problem, bearer


class TestEveryErrorIsProblemJson:
    def test_400_malformed_json(self, client: FlaskClient) -> None:
        body = assert_problem(
            client.post("/auth/login", data="{not json", content_type="application/json"), 400
        )
        assert "JSON" in body["detail"]

    @pytest.mark.parametrize(
        ("path", "body"),
        [
            ("/auth/register", '{"email": "a@example.com", "password": "violet \\ud800 orbit"}'),
            ("/auth/login", '{"email": "a@example.com", "password": "x\\udfff"}'),
            ("/auth/activate", '{"token": "\\ud83d"}'),
            ("/auth/password/reset", '{"token": "t", "new_password": "\\udc00 orbit"}'),
            ("/auth/login", '{"\\ud800": 1}'),
        ],
    )
    def test_400_lone_surrogate(self, client: FlaskClient, path: str, body: str) -> None:
        # Valid JSON syntax, but no Unicode text: a lone surrogate cannot be encoded as UTF-8.
        response = client.post(path, data=body, content_type="application/json")
        assert "surrogate" in assert_problem(response, 400)["detail"]

    # 1,400 levels is past Python's recursion limit and still under the JSON body cap (16 KiB);
    # a deeper body is a 413 before it is parsed.
    @pytest.mark.parametrize("depth", [33, 900, 1_400])
    def test_400_nested_too_deep(self, client: FlaskClient, depth: int) -> None:
        # Python's parser gives up (RecursionError) near 1000 levels; no body of ours nests.
        for body in ("[" * depth + "]" * depth, '{"email": ' * depth + "1" + "}" * depth):
            response = client.post("/auth/login", data=body, content_type="application/json")
            assert "nested" in assert_problem(response, 400)["detail"]

    def test_401_no_token(self, client: FlaskClient) -> None:
        response = client.get("/auth/me")
        assert_problem(response, 401)
        assert response.headers["WWW-Authenticate"] == "Bearer"

    def test_401_garbage_token(self, client: FlaskClient) -> None:
        assert_problem(client.get("/auth/me", headers=bearer("not.a.jwt")), 401)

    def test_403_not_activated(self, client: FlaskClient, accounts: Accounts) -> None:
        accounts.register("pending@example.com")
        response = client.post(
            "/auth/login", json={"email": "pending@example.com", "password": PASSWORD}
        )
        assert_problem(response, 403)

    def test_404_unknown_route(self, client: FlaskClient) -> None:
        assert_problem(client.get("/no/such/page"), 404)

    def test_405_wrong_method(self, client: FlaskClient) -> None:
        response = client.delete("/health")
        assert_problem(response, 405)
        assert "GET" in response.headers["Allow"]

    def test_409_duplicate(self, client: FlaskClient, accounts: Accounts) -> None:
        accounts.register("twice@example.com")
        accounts.activate("twice@example.com")  # a never-activated account registers again
        response = client.post(
            "/auth/register", json={"email": "Twice@Example.com ", "password": PASSWORD}
        )
        assert_problem(response, 409)

    def test_413_body_too_large(self, app_factory: Callable[..., Flask]) -> None:
        client = app_factory(MAX_CONTENT_LENGTH=1024).test_client()
        response = client.post(
            "/auth/login",
            data=b'{"email": "' + b"a" * 4096 + b'"}',
            content_type="application/json",
        )
        assert_problem(response, 413)

    def test_415_wrong_content_type(self, client: FlaskClient) -> None:
        response = client.post(
            "/auth/login", data="email=a@b.c", content_type="application/x-www-form-urlencoded"
        )
        assert_problem(response, 415)

    def test_422_carries_the_field_map(self, client: FlaskClient) -> None:
        response = client.post(
            "/auth/register", json={"email": "nope", "password": PASSWORD, "is_active": True}
        )
        body = assert_problem(response, 422)
        assert body["errors"]["email"]
        assert body["errors"]["is_active"] == ["Unknown field."]

    def test_422_wrong_type(self, client: FlaskClient) -> None:
        body = assert_problem(client.post("/auth/login", json={"email": 5, "password": ["x"]}), 422)
        assert set(body["errors"]) == {"email", "password"}

    def test_422_body_not_an_object(self, client: FlaskClient) -> None:
        assert_problem(client.post("/auth/login", json=["a", "b"]), 422)

    def test_429_too_many(self, app_factory: Callable[..., Flask]) -> None:
        client = app_factory(RATELIMIT_ENABLED=True).test_client()
        guess = {"email": "flood@example.com", "password": "a wrong password for sure"}
        statuses = [client.post("/auth/login", json=guess).status_code for _ in range(6)]
        assert statuses == [401] * 5 + [429]
        response = client.post("/auth/login", json=guess)
        assert_problem(response, 429)
        assert int(response.headers["Retry-After"]) > 0

    def test_500_is_json_without_a_trace(self, app: Flask) -> None:
        @app.get("/boom")
        def boom() -> None:
            raise RuntimeError("secret internals")

        app.config["PROPAGATE_EXCEPTIONS"] = False
        body = assert_problem(app.test_client().get("/boom"), 500)
        assert "secret internals" not in str(body)


@pytest.mark.parametrize("limits", [False, True])
@pytest.mark.parametrize(
    ("method", "path"),
    [("POST", "/auth/login"), ("POST", "/auth/refresh"), ("POST", "/auth/password/forgot")],
)
def test_deeply_nested_json_is_400_not_500(
    app_factory: Callable[..., Flask], limits: bool, method: str, path: str
) -> None:
    # json.loads gives up with a RecursionError, which is no ValueError: it was a 500.
    client = app_factory(RATELIMIT_ENABLED=limits).test_client()
    nested = "[" * 5_000 + "]" * 5_000  # past the recursion limit, under the 16 KiB body cap
    response = client.open(path, method=method, data=nested, content_type="application/json")
    assert assert_problem(response, 400)["detail"]


UNREADABLE_BODIES = {
    "a number past Python's 4300 digits": '{"email": ' + "1" * 5000 + ', "password": "x"}',
    "an unpaired surrogate": '{"email": "ada@example.com", "password": "violet tangerine \\ud800"}',
    "an unpaired surrogate in a key": '{"email": "ada@example.com", "\\udfff": 1}',
}


@pytest.mark.parametrize("body", UNREADABLE_BODIES.values(), ids=UNREADABLE_BODIES.keys())
@pytest.mark.parametrize("path", ["/auth/register", "/auth/login", "/auth/password/forgot"])
def test_json_python_cannot_hold_as_text_is_400_not_500(
    app_factory: Callable[..., Flask], redis_url: str, path: str, body: str
) -> None:
    # json.loads raises a plain ValueError past 4300 digits, and "\ud800" decodes to a str
    # that has no UTF-8 form (argon2, zxcvbn, the database and Redis keys all failed on it).
    client = app_factory(RATELIMIT_ENABLED=True, REDIS_URL=redis_url).test_client()
    response = client.post(path, data=body, content_type="application/json")
    assert assert_problem(response, 400)["detail"]


def test_an_unpaired_surrogate_in_a_token_or_name_is_400(
    client: FlaskClient, accounts: Accounts
) -> None:
    headers = bearer(accounts.active_user("ada@example.com")["access_token"])
    for method, path in (("POST", "/auth/activate"), ("PATCH", "/auth/me/profile")):
        key = "token" if path == "/auth/activate" else "first_name"
        response = client.open(
            path,
            method=method,
            data='{"%s": "a\\ud800b"}' % key,  # noqa: UP031 - the escape must stay in the text
            content_type="application/json",
            headers=headers,
        )
        assert_problem(response, 400)
    assert client.get("/auth/me", headers=headers).json["profile"]["first_name"] is None


def test_a_204_has_no_body_and_no_content_type(client: FlaskClient, accounts: Accounts) -> None:
    pair = accounts.active_user("quiet@example.com")
    headers = bearer(pair["access_token"])
    responses = [
        client.delete("/auth/me/avatar", headers=headers),
        client.post(
            "/auth/password/change",
            json={"old_password": PASSWORD, "new_password": "marble lantern exquisite harbour"},
            headers=headers,
        ),
        client.post(
            "/auth/logout",
            json={
                "refresh_token": accounts.login(
                    "quiet@example.com", "marble lantern exquisite harbour"
                )["refresh_token"]
            },
        ),
    ]
    for response in responses:
        assert response.status_code == 204, response.json
        assert response.get_data() == b""
        assert "Content-Type" not in response.headers
