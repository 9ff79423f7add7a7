"""The service's frame: health, problem responses, migrations, jobs after commit, config, CLI."""

from __future__ import annotations

import secrets
from collections.abc import Callable
from datetime import timedelta

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from flask import Flask
from flask.testing import FlaskClient

from app.config import ConfigError
from app.db import db
from app.jobs.emails import send_email
from app.jobs.queue import enqueue_after_commit
from app.models import ActivationToken, RefreshToken, User, UserGroup, utcnow
from tests.conftest import PASSWORD, PG_DATABASE, Accounts, Mailbox, bearer, run_worker

PROBLEM_KEYS = {"type", "title", "status", "detail"}


def assert_problem(response, status: int) -> dict:
    assert response.status_code == status, response.get_data(as_text=True)
    assert response.mimetype == "application/problem+json"
    body = response.json
    assert set(body) >= PROBLEM_KEYS
    assert body["status"] == status
    return body


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


def test_openapi_document_and_swagger_ui_are_served(client: FlaskClient) -> None:
    spec = client.get("/openapi.json").json
    assert spec["openapi"].startswith("3.")
    for path in ("/auth/register", "/auth/login", "/auth/refresh", "/auth/me", "/health/ready"):
        assert path in spec["paths"]
    docs = client.get("/docs")
    assert docs.status_code == 200
    assert b"swagger" in docs.data.lower()


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


def test_migrations_match_the_models(app: Flask) -> None:
    with app.app_context(), db.engine.connect() as conn:
        diff = compare_metadata(
            MigrationContext.configure(conn, opts={"compare_type": True}), db.metadata
        )
    assert diff == []


def test_email_is_stored_lower_case_by_the_database_rule(app: Flask) -> None:
    with app.app_context():
        group = db.session.scalar(sa.select(UserGroup))
        db.session.add(User(email="Mixed@Example.com", password_hash="x", group=group))
        with pytest.raises(sa.exc.IntegrityError):
            db.session.commit()


class TestJobsRunAfterCommit:
    def _queue_and(self, app: Flask, finish: str) -> None:
        with app.app_context():
            enqueue_after_commit(send_email, "someone@example.com", "Hello", "text", "<p>html</p>")
            getattr(db.session, finish)()

    def test_committed_job_is_sent_in_process(self, app: Flask, mailbox: Mailbox) -> None:
        self._queue_and(app, "commit")
        assert [m["Subject"] for m in mailbox.to("someone@example.com")] == ["Hello"]

    def test_rolled_back_job_is_never_sent(self, app: Flask, mailbox: Mailbox) -> None:
        self._queue_and(app, "rollback")
        with app.app_context():
            db.session.commit()  # a later commit must not send what was rolled back
        assert mailbox.to("someone@example.com") == []

    def test_committed_job_goes_through_rq(self, redis_app: Flask, mailbox: Mailbox) -> None:
        self._queue_and(redis_app, "commit")
        assert mailbox.to("someone@example.com") == []  # queued, not sent by the request
        run_worker(redis_app)
        assert [m["Subject"] for m in mailbox.to("someone@example.com")] == ["Hello"]

    def test_rolled_back_job_never_reaches_rq(self, redis_app: Flask, mailbox: Mailbox) -> None:
        self._queue_and(redis_app, "rollback")
        run_worker(redis_app)
        assert mailbox.to("someone@example.com") == []

    def test_without_mail_server_the_email_is_printed_and_kept(
        self, app_factory: Callable[..., Flask], capsys: pytest.CaptureFixture[str], tmp_path
    ) -> None:
        app = app_factory(MAIL_SERVER=None, MAIL_OUTBOX_DIR=str(tmp_path / "box"))
        self._queue_and(app, "commit")
        assert "Hello" in capsys.readouterr().out
        saved = list((tmp_path / "box").glob("*.eml"))
        assert len(saved) == 1
        assert b"someone@example.com" in saved[0].read_bytes()


class TestConfiguration:
    def test_production_refuses_default_secrets_sqlite_and_no_redis(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        from app import create_app

        monkeypatch.setenv("APP_ENV", "production")
        for name in ("SECRET_KEY", "JWT_SECRET_KEY", "DATABASE_URL", "REDIS_URL"):
            monkeypatch.delenv(name, raising=False)
        with pytest.raises(ConfigError) as info:
            create_app()
        message = str(info.value)
        for name in ("SECRET_KEY", "JWT_SECRET_KEY", "DATABASE_URL", "REDIS_URL"):
            assert name in message

    def test_production_starts_with_safe_settings(self, monkeypatch: pytest.MonkeyPatch) -> None:
        from app import create_app

        monkeypatch.setenv("APP_ENV", "production")
        monkeypatch.setenv("SECRET_KEY", secrets.token_urlsafe(48))
        monkeypatch.setenv("JWT_SECRET_KEY", secrets.token_hex(16))
        monkeypatch.setenv("DATABASE_URL", "postgresql://user@db.invalid/accounts")
        monkeypatch.setenv("REDIS_URL", "redis://redis.invalid:6379/0")
        monkeypatch.setenv("MAIL_SERVER", "smtp.invalid")
        app = create_app()
        assert app.config["SQLALCHEMY_DATABASE_URI"].startswith("postgresql+psycopg2://")

    def test_bad_number_names_the_setting(self, monkeypatch: pytest.MonkeyPatch) -> None:
        from app import create_app

        monkeypatch.setenv("ACTIVATION_TOKEN_TTL", "a day")
        with pytest.raises(ConfigError, match="ACTIVATION_TOKEN_TTL"):
            create_app()


class TestCommandLine:
    def test_seed_groups_is_idempotent(self, app: Flask) -> None:
        runner = app.test_cli_runner()
        first = runner.invoke(args=["seed-groups"])
        second = runner.invoke(args=["seed-groups"])
        assert first.exit_code == 0 and second.exit_code == 0
        assert "already present" in second.output
        with app.app_context():
            assert sorted(db.session.scalars(sa.select(UserGroup.name))) == [
                "ADMIN",
                "MODERATOR",
                "USER",
            ]

    def test_create_admin_creates_an_active_admin_who_can_log_in(
        self, app: Flask, client: FlaskClient
    ) -> None:
        result = app.test_cli_runner().invoke(
            args=["create-admin", "--email", "Boss@Example.com", "--password", PASSWORD]
        )
        assert result.exit_code == 0, result.output
        tokens = client.post(
            "/auth/login", json={"email": "boss@example.com", "password": PASSWORD}
        ).json
        me = client.get("/auth/me", headers=bearer(tokens["access_token"])).json
        assert me["group"] == "ADMIN" and me["is_active"] is True

    def test_create_admin_prompts_for_the_password(self, app: Flask) -> None:
        result = app.test_cli_runner().invoke(
            args=["create-admin", "--email", "prompted@example.com"],
            input=f"{PASSWORD}\n{PASSWORD}\n",
        )
        assert result.exit_code == 0, result.output
        assert "created admin prompted@example.com" in result.output

    def test_create_admin_promotes_and_activates_an_existing_user(
        self, app: Flask, accounts: Accounts
    ) -> None:
        accounts.register("member@example.com")
        result = app.test_cli_runner().invoke(
            args=["create-admin", "--email", "member@example.com", "--password", "whatever"]
        )
        assert result.exit_code == 0, result.output
        assert "promoted" in result.output
        me = accounts.client.get(
            "/auth/me", headers=bearer(accounts.login("member@example.com")["access_token"])
        ).json
        assert me["group"] == "ADMIN"

    def test_create_admin_refuses_a_weak_password(self, app: Flask) -> None:
        result = app.test_cli_runner().invoke(
            args=["create-admin", "--email", "weak@example.com", "--password", "password"]
        )
        assert result.exit_code != 0
        assert "guess" in result.output

    def test_cleanup_tokens_deletes_only_expired_ones(self, app: Flask, accounts: Accounts) -> None:
        accounts.register("old@example.com")
        accounts.register("new@example.com")
        with app.app_context():
            old = db.session.scalar(sa.select(User).where(User.email == "old@example.com"))
            token = db.session.scalar(
                sa.select(ActivationToken).where(ActivationToken.user_id == old.id)
            )
            token.expires_at = utcnow() - timedelta(seconds=1)
            db.session.add(
                RefreshToken(
                    jti="x", user_id=old.id, family_id="f", expires_at=utcnow() - timedelta(days=1)
                )
            )
            db.session.commit()
        result = app.test_cli_runner().invoke(args=["cleanup-tokens"])
        assert result.exit_code == 0
        assert "activation: 1 deleted" in result.output
        assert "refresh: 1 deleted" in result.output
        with app.app_context():
            assert db.session.scalar(sa.select(sa.func.count()).select_from(ActivationToken)) == 1


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_downgrade_base_undoes_the_migrations_and_upgrade_redoes_them(
    backend: str, tmp_path
) -> None:
    from flask_migrate import downgrade, upgrade

    from app import create_app
    from tests.conftest import create_postgres_database

    if backend == "sqlite":
        url = f"sqlite:///{tmp_path / 'fresh.sqlite3'}"
    else:
        url = create_postgres_database(PG_DATABASE + "_migrations")
    app = create_app({"SQLALCHEMY_DATABASE_URI": url, "REDIS_URL": None})
    with app.app_context():
        upgrade()
        assert "users" in sa.inspect(db.engine).get_table_names()
        downgrade(revision="base")
        assert set(sa.inspect(db.engine).get_table_names()) <= {"alembic_version"}
        upgrade()
        tables = set(sa.inspect(db.engine).get_table_names())
        assert {
            "user_groups",
            "users",
            "user_profiles",
            "activation_tokens",
            "refresh_tokens",
        } <= tables
        db.engine.dispose()


def test_deleting_a_user_deletes_what_hangs_off_it(app: Flask, accounts: Accounts) -> None:
    accounts.register("gone@example.com")
    with app.app_context():
        db.session.execute(sa.delete(User).where(User.email == "gone@example.com"))
        db.session.commit()
        for table in ("user_profiles", "activation_tokens"):
            count = db.session.scalar(sa.text(f"SELECT count(*) FROM {table}"))  # noqa: S608
            assert count == 0, table


@pytest.mark.parametrize(("proxies", "seen"), [(0, "127.0.0.1"), (1, "203.0.113.7")])
def test_the_client_address_comes_from_x_forwarded_for_only_behind_trusted_proxies(
    app_factory: Callable[..., Flask], caplog: pytest.LogCaptureFixture, proxies: int, seen: str
) -> None:
    client = app_factory(TRUSTED_PROXIES=proxies).test_client()
    with caplog.at_level("INFO", logger="app.audit"):
        client.post(
            "/auth/login",
            json={"email": "nobody@example.com", "password": PASSWORD},
            headers={"X-Forwarded-For": "203.0.113.7"},
        )
    (record,) = [r for r in caplog.records if r.getMessage() == "login_failed"]
    assert record.ip == seen  # type: ignore[attr-defined]


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
