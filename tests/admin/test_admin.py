"""The admin blueprint: who may do what, listing and filters, and the three mutations."""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

import pytest
import sqlalchemy as sa
from flask import Flask
from flask.testing import FlaskClient

from app.core.db import db
from app.identity.models import GroupName, User, UserGroup, UserProfile
from app.links.models import ActivationToken
from app.sessions.models import LoginSession
from tests.support.http import PASSWORD, assert_problem, bearer
from tests.support.mail import Mailbox
from tests.support.staff import ADMIN, MODERATOR, USER, Staff, emails, listing
from tests.support.statements import recorded_statements


def mutations(user_id: int) -> list[tuple[str, str, dict[str, Any] | None]]:
    return [
        ("POST", f"/admin/users/{user_id}/activate", None),
        ("POST", f"/admin/users/{user_id}/deactivate", None),
        ("POST", f"/admin/users/{user_id}/change-group", {"group": "ADMIN"}),
    ]


def reads(user_id: int) -> list[tuple[str, str, dict[str, Any] | None]]:
    return [("GET", "/admin/users", None), ("GET", f"/admin/users/{user_id}", None)]


def call(staff: Staff, email: str | None, method: str, path: str, body: Any) -> Any:
    headers = staff.headers(email) if email else {}
    return staff.client.open(path, method=method, json=body, headers=headers)


# --- who may do what ------------------------------------------------------------------------


def test_a_user_gets_403_on_every_admin_endpoint(staff: Staff) -> None:
    target = staff.id_of(USER)
    before = staff.stored(USER)
    for method, path, body in reads(target) + mutations(target):
        assert_problem(call(staff, USER, method, path, body), 403)
    after = staff.stored(USER)
    assert (after.is_active, after.group_id) == (before.is_active, before.group_id)


def test_a_moderator_reads_but_gets_403_on_every_mutation(staff: Staff) -> None:
    target = staff.id_of(USER)
    for method, path, body in reads(target):
        assert call(staff, MODERATOR, method, path, body).status_code == 200
    for method, path, body in mutations(target):
        assert_problem(call(staff, MODERATOR, method, path, body), 403)
    after = staff.stored(USER)
    assert after.is_active
    assert staff.client.get("/auth/me", headers=staff.headers(USER)).json["group"] == "USER"


def test_an_admin_may_do_everything(staff: Staff) -> None:
    target = staff.id_of(USER)
    for method, path, body in reads(target) + mutations(target):
        assert call(staff, ADMIN, method, path, body).status_code == 200, path


def test_no_token_is_401_on_every_admin_endpoint(staff: Staff) -> None:
    target = staff.id_of(USER)
    for method, path, body in reads(target) + mutations(target):
        response = call(staff, None, method, path, body)
        assert_problem(response, 401)
        assert response.headers["WWW-Authenticate"] == "Bearer"


# --- listing --------------------------------------------------------------------------------


def add_users(app: Flask, count: int, **overrides: Any) -> None:
    """Users straight in the database: hashing a password per user would only slow tests."""
    with app.app_context():
        groups = {g.name: g for g in db.session.scalars(sa.select(UserGroup))}
        for n in range(count):
            group = overrides.get("group", GroupName.USER)
            db.session.add(
                User(
                    email=overrides.get("email", "bulk{n:03d}@example.org").format(n=n),
                    password_hash="unused",
                    is_active=overrides.get("is_active", True),
                    group=groups[group],
                    profile=UserProfile(first_name=f"Bulk {n}"),
                )
            )
        db.session.commit()


def test_the_list_is_a_page_of_full_user_objects_in_id_order(staff: Staff) -> None:
    add_users(staff.app, 22)
    response = listing(staff)
    body = response.json
    assert (body["page"], body["per_page"], body["total"]) == (1, 20, 25)
    assert len(body["items"]) == 20
    ids = [item["id"] for item in body["items"]]
    assert ids == sorted(ids)
    first = body["items"][0]
    assert set(first) == {
        "id",
        "email",
        "is_active",
        "group",
        "mfa_enabled",
        "created_at",
        "updated_at",
        "profile",
    }
    assert first["email"] == ADMIN and first["group"] == "ADMIN"
    assert set(first["profile"]) == {
        "first_name",
        "last_name",
        "gender",
        "date_of_birth",
        "info",
        "avatar_url",
    }
    assert "password_hash" not in response.get_data(as_text=True)
    second = listing(staff, page=2).json
    second_ids = [item["id"] for item in second["items"]]
    assert len(second_ids) == 5
    assert second_ids == sorted(second_ids) and second_ids[0] > ids[-1]
    beyond = listing(staff, page=9).json
    assert beyond["items"] == [] and beyond["total"] == 25


def test_per_page_bounds(staff: Staff) -> None:
    add_users(staff.app, 100)
    assert len(listing(staff, per_page=100).json["items"]) == 100
    assert len(listing(staff, per_page=1).json["items"]) == 1


def test_email_filter_is_a_case_insensitive_substring(staff: Staff) -> None:
    add_users(staff.app, 2, email="film_fan{n}@cinema.org")
    add_users(staff.app, 1, email="filmxfan{n}@cinema.org")
    assert emails(listing(staff, email="@EXAMPLE.COM")) == [ADMIN, MODERATOR, USER]
    assert emails(listing(staff, email="Mod")) == [MODERATOR]
    # "_" is a literal character, not a LIKE wildcard (and "%" no filter at all: a 422).
    assert emails(listing(staff, email="film_fan")) == [
        "film_fan0@cinema.org",
        "film_fan1@cinema.org",
    ]
    assert listing(staff, email="nobody").json["total"] == 0


def test_group_and_active_filters_combine(staff: Staff) -> None:
    add_users(staff.app, 2, email="off{n}@example.org", is_active=False)
    add_users(staff.app, 1, email="offmod{n}@example.org", is_active=False, group="MODERATOR")
    assert emails(listing(staff, group="ADMIN")) == [ADMIN]
    assert emails(listing(staff, group="MODERATOR")) == [MODERATOR, "offmod0@example.org"]
    inactive = ["off0@example.org", "off1@example.org", "offmod0@example.org"]
    assert emails(listing(staff, is_active="false")) == inactive
    assert emails(listing(staff, is_active="0")) == inactive
    assert emails(listing(staff, is_active="true")) == [ADMIN, MODERATOR, USER]
    response = listing(staff, group="MODERATOR", is_active="false", email="OFF")
    assert emails(response) == ["offmod0@example.org"]
    assert response.json["total"] == 1


@pytest.mark.parametrize(
    "query",
    [
        {"group": "ROOT"},
        {"group": "admin"},
        {"group": ""},
        {"is_active": "maybe"},
        {"page": "0"},
        {"page": "-1"},
        {"page": "two"},
        {"page": "1.5"},
        {"page": "99999999999999999999"},
        {"per_page": "0"},
        {"per_page": "101"},
        {"email": ""},
        {"email": "x" * 321},
        {"email": "a\x00b"},  # PostgreSQL text cannot hold NUL
        {"after": "-1"},
        {"after": "two"},
        {"after": str(2**31)},
        {"sort": "email"},
        {"is_admin": "true"},
    ],
)
def test_bad_filters_are_422(staff: Staff, query: dict[str, str]) -> None:
    body = assert_problem(listing(staff, **query), 422)
    assert set(body["errors"]) == set(query)


def test_a_page_costs_a_fixed_number_of_queries(staff: Staff) -> None:
    add_users(staff.app, 40)
    with recorded_statements(staff.app) as one:
        assert len(listing(staff, per_page=1).json["items"]) == 1
    with recorded_statements(staff.app) as many:
        response = listing(staff, email="example", per_page=30)
        assert len(response.json["items"]) == 30
        assert all(item["profile"]["first_name"] for item in response.json["items"][3:])
    # Who is calling (token family, user) + count + the page with group and profile joined.
    assert len(many) == len(one) <= 4, many


def test_get_one_user(staff: Staff) -> None:
    user_id = staff.id_of(USER)
    response = staff.client.get(f"/admin/users/{user_id}", headers=staff.headers(MODERATOR))
    assert response.status_code == 200
    assert response.json["id"] == user_id
    assert response.json["email"] == USER
    assert response.json["profile"]["avatar_url"] is None


# 9999 and 0: no such row. 2**31 and beyond: past the id column, and past 64 bits SQLite
# cannot even bind the number (that was a 500); the route's row-id converter sends them to 404.
@pytest.mark.parametrize("user_id", [9999, 0, 2**31, 2**63, 10**20, 10**30])
@pytest.mark.parametrize(
    ("method", "suffix", "body"),
    [
        ("GET", "", None),
        ("POST", "/activate", None),
        ("POST", "/deactivate", None),
        ("POST", "/change-group", {"group": "USER"}),
    ],
)
def test_unknown_users_are_404(
    staff: Staff, user_id: int, method: str, suffix: str, body: Any
) -> None:
    assert_problem(call(staff, ADMIN, method, f"/admin/users/{user_id}{suffix}", body), 404)


# --- activate -------------------------------------------------------------------------------


def test_activate_spends_the_emailed_link(staff: Staff, mailbox: Mailbox) -> None:
    staff.accounts.register("late@example.com")
    emailed_token = mailbox.last_token("late@example.com")
    user_id = staff.id_of("late@example.com")
    response = staff.client.post(f"/admin/users/{user_id}/activate", headers=staff.headers(ADMIN))
    assert response.status_code == 200
    assert response.json["is_active"] is True
    with staff.app.app_context():
        assert (
            db.session.scalar(sa.select(ActivationToken).where(ActivationToken.user_id == user_id))
            is None
        )
    assert_problem(staff.client.post("/auth/activate", json={"token": emailed_token}), 400)
    staff.accounts.login("late@example.com")


def test_activate_is_idempotent(staff: Staff) -> None:
    user_id = staff.id_of(USER)
    first = staff.client.post(f"/admin/users/{user_id}/activate", headers=staff.headers(ADMIN))
    second = staff.client.post(f"/admin/users/{user_id}/activate", headers=staff.headers(ADMIN))
    assert first.status_code == second.status_code == 200
    assert first.json == second.json
    assert second.json["is_active"] is True


# --- deactivate -----------------------------------------------------------------------------


def test_deactivate_ends_every_session_at_once(staff: Staff) -> None:
    second_login = staff.accounts.login(USER)
    user_id = staff.id_of(USER)
    response = staff.client.post(f"/admin/users/{user_id}/deactivate", headers=staff.headers(ADMIN))
    assert response.status_code == 200
    assert response.json["is_active"] is False
    for pair in (staff.tokens[USER], second_login):
        assert_problem(staff.client.get("/auth/me", headers=bearer(pair["access_token"])), 401)
        assert_problem(
            staff.client.post("/auth/refresh", json={"refresh_token": pair["refresh_token"]}),
            401,
        )
    with staff.app.app_context():
        ended = db.session.scalars(
            sa.select(LoginSession.ended_at).where(LoginSession.user_id == user_id)
        ).all()
    assert ended and all(ended)  # and a login's refresh token ends with it
    assert_problem(
        staff.client.post("/auth/login", json={"email": USER, "password": PASSWORD}), 403
    )
    # Other users keep working.
    assert staff.client.get("/auth/me", headers=staff.headers(MODERATOR)).status_code == 200


def test_deactivate_is_idempotent_and_activate_undoes_it(staff: Staff) -> None:
    user_id = staff.id_of(USER)
    for _ in range(2):
        response = staff.client.post(
            f"/admin/users/{user_id}/deactivate", headers=staff.headers(ADMIN)
        )
        assert response.status_code == 200
        assert response.json["is_active"] is False
    staff.client.post(f"/admin/users/{user_id}/activate", headers=staff.headers(ADMIN))
    staff.accounts.login(USER)


def test_the_last_active_admin_cannot_be_deactivated(staff: Staff) -> None:
    admin_id = staff.id_of(ADMIN)
    body = assert_problem(
        staff.client.post(f"/admin/users/{admin_id}/deactivate", headers=staff.headers(ADMIN)),
        409,
    )
    assert "admin" in body["detail"]
    assert staff.stored(ADMIN).is_active
    assert staff.client.get("/auth/me", headers=staff.headers(ADMIN)).status_code == 200


def test_an_admin_can_go_when_another_active_admin_stays(staff: Staff) -> None:
    staff.accounts.set_group(staff.app, MODERATOR, "ADMIN")
    add_users(staff.app, 1, email="sleeping-admin{n}@example.org", group="ADMIN", is_active=False)
    admin_id, other_id = staff.id_of(ADMIN), staff.id_of(MODERATOR)
    response = staff.client.post(
        f"/admin/users/{admin_id}/deactivate", headers=staff.headers(MODERATOR)
    )
    assert response.status_code == 200
    # An inactive admin does not count: the remaining active one must stay.
    assert_problem(
        staff.client.post(f"/admin/users/{other_id}/deactivate", headers=staff.headers(MODERATOR)),
        409,
    )
    # Deactivating an already inactive admin leaves the active one in place: allowed.
    sleeping = staff.id_of("sleeping-admin0@example.org")
    response = staff.client.post(
        f"/admin/users/{sleeping}/deactivate", headers=staff.headers(MODERATOR)
    )
    assert response.status_code == 200


# --- change group ---------------------------------------------------------------------------


def test_a_promotion_applies_on_the_next_request(staff: Staff) -> None:
    user_id = staff.id_of(USER)
    assert_problem(listing(staff, USER), 403)
    response = staff.client.post(
        f"/admin/users/{user_id}/change-group",
        json={"group": "MODERATOR"},
        headers=staff.headers(ADMIN),
    )
    assert response.status_code == 200
    assert response.json["group"] == "MODERATOR"
    # The same access token: authorization reads the stored group.
    assert listing(staff, USER).status_code == 200
    assert staff.client.get("/auth/me", headers=staff.headers(USER)).json["group"] == "MODERATOR"


def test_a_demotion_applies_on_the_next_request(staff: Staff) -> None:
    staff.accounts.set_group(staff.app, MODERATOR, "ADMIN")
    target = staff.id_of(USER)
    assert call(staff, MODERATOR, *mutations(target)[0]).status_code == 200
    response = staff.client.post(
        f"/admin/users/{staff.id_of(MODERATOR)}/change-group",
        json={"group": "MODERATOR"},
        headers=staff.headers(ADMIN),
    )
    assert response.status_code == 200
    assert response.json["group"] == "MODERATOR"
    assert_problem(call(staff, MODERATOR, *mutations(target)[0]), 403)


def test_the_last_active_admin_cannot_be_demoted(staff: Staff) -> None:
    admin_id = staff.id_of(ADMIN)
    for group in ("MODERATOR", "USER"):
        assert_problem(
            staff.client.post(
                f"/admin/users/{admin_id}/change-group",
                json={"group": group},
                headers=staff.headers(ADMIN),
            ),
            409,
        )
    assert staff.client.get("/auth/me", headers=staff.headers(ADMIN)).json["group"] == "ADMIN"
    # Staying an admin is not a demotion.
    response = staff.client.post(
        f"/admin/users/{admin_id}/change-group",
        json={"group": "ADMIN"},
        headers=staff.headers(ADMIN),
    )
    assert response.status_code == 200


@pytest.mark.parametrize(
    "body",
    [
        {"group": "ROOT"},
        {"group": "admin"},
        {"group": None},
        {"group": 1},
        {},
        {"group": "ADMIN", "is_active": False},
    ],
)
def test_change_group_refuses_bad_bodies(staff: Staff, body: dict[str, Any]) -> None:
    user_id = staff.id_of(USER)
    assert_problem(
        staff.client.post(
            f"/admin/users/{user_id}/change-group", json=body, headers=staff.headers(ADMIN)
        ),
        422,
    )
    stored = staff.stored(USER)
    assert stored.is_active
    assert staff.client.get("/auth/me", headers=staff.headers(USER)).json["group"] == "USER"


# --- audit ----------------------------------------------------------------------------------


def test_every_admin_action_leaves_an_audit_line(
    staff: Staff, caplog: pytest.LogCaptureFixture
) -> None:
    admin_id, user_id = staff.id_of(ADMIN), staff.id_of(USER)
    caplog.set_level(logging.INFO, logger="app.audit")
    for method, path, body in [
        ("POST", f"/admin/users/{user_id}/deactivate", None),
        ("POST", f"/admin/users/{user_id}/activate", None),
        ("POST", f"/admin/users/{user_id}/change-group", {"group": "MODERATOR"}),
    ]:
        assert call(staff, ADMIN, method, path, body).status_code == 200
    lines = [
        (r.getMessage(), r.admin_id, r.target_id, r.change)  # type: ignore[attr-defined]
        for r in caplog.records
        if r.name == "app.audit" and r.getMessage().startswith("admin_")
    ]
    assert lines == [
        ("admin_user_deactivated", admin_id, user_id, {"is_active": {"from": True, "to": False}}),
        ("admin_user_activated", admin_id, user_id, {"is_active": {"from": False, "to": True}}),
        ("admin_group_changed", admin_id, user_id, {"group": {"from": "USER", "to": "MODERATOR"}}),
    ]


def test_the_openapi_document_describes_the_admin_routes(client: FlaskClient) -> None:
    paths = client.get("/openapi.json").json["paths"]
    assert "get" in paths["/admin/users"]
    names = {p["name"] for p in paths["/admin/users"]["get"]["parameters"]}
    assert names == {"email", "group", "is_active", "mfa_enabled", "page", "per_page", "after"}
    page = client.get("/openapi.json").json["components"]["schemas"]["UserPage"]
    assert set(page["required"]) == {
        "items",
        "page",
        "per_page",
        "total",
        "total_exact",
        "next_after",
    }
    assert page["properties"]["next_after"]["nullable"] is True
    for suffix in ("", "/activate", "/deactivate", "/change-group"):
        assert f"/admin/users/{{user_id}}{suffix}" in paths
        (user_id,) = paths[f"/admin/users/{{user_id}}{suffix}"]["parameters"]
        assert user_id["schema"] == {"type": "integer", "minimum": 1, "maximum": 2**31 - 1}


@pytest.mark.postgres("row locks are PostgreSQL's; SQLite runs one writer at a time")
def test_two_admins_removing_each_other_at_once_leave_one(staff: Staff) -> None:
    """The guard locks the active admin rows; hold that lock so both requests queue behind it."""
    with staff.app.app_context():
        engine = db.engine
    staff.accounts.set_group(staff.app, MODERATOR, "ADMIN")
    first, second = staff.id_of(ADMIN), staff.id_of(MODERATOR)
    results: dict[str, int] = {}

    def deactivate(caller: str, target: int) -> None:
        client = staff.app.test_client()
        response = client.post(f"/admin/users/{target}/deactivate", headers=staff.headers(caller))
        results[caller] = response.status_code

    with engine.connect() as blocker:
        blocker.execute(
            sa.text("SELECT id FROM users WHERE id IN (:a, :b) FOR UPDATE"),
            {"a": first, "b": second},
        )
        threads = [
            threading.Thread(target=deactivate, args=(ADMIN, second)),
            threading.Thread(target=deactivate, args=(MODERATOR, first)),
        ]
        for thread in threads:
            thread.start()
        deadline = time.monotonic() + 20
        # AUTOCOMMIT: inside one transaction PostgreSQL would keep answering from its first
        # snapshot of pg_stat_activity, and a request that started waiting later never shows.
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as probe:
            while time.monotonic() < deadline:
                waiting = probe.scalar(
                    sa.text(
                        "SELECT count(*) FROM pg_stat_activity "
                        "WHERE datname = current_database() AND wait_event_type = 'Lock'"
                    )
                )
                if waiting == 2:
                    break
                time.sleep(0.05)
            assert waiting == 2, f"both requests should wait for the admin rows {results}"
        blocker.rollback()
    for thread in threads:
        thread.join(timeout=20)
    assert sorted(results.values()) == [200, 409]
    with staff.app.app_context():
        active_admins = db.session.scalar(
            sa.select(sa.func.count(User.id))
            .join(User.group)
            .where(UserGroup.name == GroupName.ADMIN, User.is_active.is_(True))
        )
    assert active_admins == 1


def test_a_deactivated_user_cannot_reactivate_with_a_new_link(
    staff: Staff, mailbox: Mailbox
) -> None:
    user_id = staff.id_of(USER)
    staff.client.post(f"/admin/users/{user_id}/deactivate", headers=staff.headers(ADMIN))
    resend = staff.client.post("/auth/activate/resend", json={"email": USER})
    assert resend.status_code == 202  # the same answer as for any other address…
    assert mailbox.to(USER) == []  # …but no link
    login = staff.client.post("/auth/login", json={"email": USER, "password": PASSWORD})
    assert "deactivated" in assert_problem(login, 403)["detail"]
    # Only an admin brings the account back.
    staff.client.post(f"/admin/users/{user_id}/activate", headers=staff.headers(ADMIN))
    staff.accounts.login(USER)


def test_an_activation_link_sent_before_deactivation_is_dead(
    staff: Staff, mailbox: Mailbox
) -> None:
    staff.accounts.register("late@example.com")
    user_id = staff.id_of("late@example.com")
    staff.client.post(f"/admin/users/{user_id}/deactivate", headers=staff.headers(ADMIN))
    response = staff.client.post(
        "/auth/activate", json={"token": mailbox.last_token("late@example.com")}
    )
    assert_problem(response, 400)
    assert staff.stored("late@example.com").is_active is False


def test_create_admin_brings_back_a_deactivated_user(staff: Staff) -> None:
    staff.client.post(f"/admin/users/{staff.id_of(USER)}/deactivate", headers=staff.headers(ADMIN))
    result = staff.app.test_cli_runner().invoke(args=["create-admin", "--email", USER])
    assert result.exit_code == 0, result.output
    assert (
        staff.client.post("/auth/login", json={"email": USER, "password": PASSWORD}).status_code
        == 200
    )
