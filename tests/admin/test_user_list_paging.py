"""The admin user list at depth: paging by key (`after`), the bounded total, the email
filter's bounds and its trigram index, the per-caller limit, and migration 0014."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import sqlalchemy as sa
from flask import Flask

from app.admin.schemas import PAGE_DEPTH
from app.core.db import db
from app.identity.models import GroupName, User, UserGroup, UserProfile
from tests.support.http import Accounts, assert_problem
from tests.support.staff import ADMIN, MODERATOR, USER, Staff, emails, listing, make_staff
from tests.support.statements import recorded_statements

STAFF = [ADMIN, MODERATOR, USER]


def bulk_users(app: Flask, count: int, email: str = "bulk{n}@example.org") -> None:
    """`count` users in one Core INSERT (an executemany), with a profile each: ten thousand
    take a second, where the ORM or the API would take minutes. Every 7th is inactive, every
    11th has two-factor on, every 13th is a MODERATOR."""
    with app.app_context():
        rows = db.session.execute(sa.select(UserGroup.name, UserGroup.id))
        groups = {name: group_id for name, group_id in rows}
        db.session.execute(
            sa.insert(User),
            [
                {
                    "email": email.format(n=n),
                    "is_active": n % 7 != 0,
                    "mfa_enabled": n % 11 == 0,
                    "group_id": groups[GroupName.MODERATOR if n % 13 == 0 else GroupName.USER],
                }
                for n in range(count)
            ],
        )
        with_profile = sa.select(UserProfile.user_id)
        db.session.execute(
            sa.insert(UserProfile).from_select(
                ["user_id"], sa.select(User.id).where(User.id.not_in(with_profile))
            )
        )
        db.session.commit()


def stored_ids(app: Flask, *conditions: sa.ColumnElement[bool]) -> list[int]:
    with app.app_context():
        return list(db.session.scalars(sa.select(User.id).where(*conditions).order_by(User.id)))


def walk(staff: Staff, **query: Any) -> list[dict[str, Any]]:
    """Every page of a filter by key, from the start to `next_after: null`."""
    pages = []
    after = None
    while True:
        page_query = {**query, **({"after": after} if after is not None else {})}
        response = listing(staff, **page_query)
        assert response.status_code == 200, response.json
        pages.append(response.json)
        after = response.json["next_after"]
        if after is None:
            return pages
        assert len(pages) < 1_000, "paging does not end"


def ids_of(pages: list[dict[str, Any]]) -> list[int]:
    return [item["id"] for page in pages for item in page["items"]]


# --- paging by key --------------------------------------------------------------------------


def test_after_reaches_every_user_once_past_the_page_depth(staff: Staff) -> None:
    bulk_users(staff.app, PAGE_DEPTH + 50)
    everyone = stored_ids(staff.app)
    pages = walk(staff, per_page=100)
    assert ids_of(pages) == everyone  # in id order, each once, past the 10,000th
    assert len(everyone) == PAGE_DEPTH + 53
    assert all(page["page"] is None for page in pages[1:])  # paged by key
    assert pages[0]["page"] == 1  # the first page was asked for without after
    assert [len(page["items"]) for page in pages[:-1]] == [100] * (len(pages) - 1)
    assert pages[-1]["next_after"] is None
    for page in pages[:-1]:
        assert page["next_after"] == page["items"][-1]["id"]


@pytest.mark.parametrize(
    ("query", "condition"),
    [
        ({"is_active": "false"}, User.is_active.is_(False)),
        ({"mfa_enabled": "true"}, User.mfa_enabled.is_(True)),
        ({"group": "MODERATOR"}, User.group.has(UserGroup.name == GroupName.MODERATOR)),
        (
            {"is_active": "false", "mfa_enabled": "true", "group": "USER"},
            sa.and_(
                User.is_active.is_(False),
                User.mfa_enabled.is_(True),
                User.group.has(UserGroup.name == GroupName.USER),
            ),
        ),
        # Users 7, 17, 27, ...: the filter's own matches, whatever id they were given.
        ({"email": "7@EXAMPLE.org"}, User.email.like("%7@example.org")),
    ],
)
def test_after_reaches_every_match_once_with_each_filter(
    staff: Staff, query: dict[str, str], condition: sa.ColumnElement[bool]
) -> None:
    bulk_users(staff.app, 3_000)
    expected = stored_ids(staff.app, condition)
    assert 20 < len(expected) < 3_000
    pages = walk(staff, per_page=17, **query)
    assert ids_of(pages) == expected
    assert {page["total"] for page in pages} == {len(expected)}
    assert all(page["total_exact"] for page in pages)


def test_next_after_is_null_when_the_page_ends_the_list(staff: Staff) -> None:
    bulk_users(staff.app, 7)  # ten users: 5 + 5
    first = listing(staff, per_page=5).json
    assert len(first["items"]) == 5 and first["next_after"] == first["items"][-1]["id"]
    last = listing(staff, per_page=5, after=first["next_after"]).json
    assert len(last["items"]) == 5 and last["next_after"] is None
    beyond = listing(staff, per_page=5, after=last["items"][-1]["id"]).json
    assert beyond["items"] == [] and beyond["next_after"] is None
    assert beyond["total"] == 10  # the filter's total, not what is left after the key
    assert listing(staff, per_page=10).json["next_after"] is None
    assert listing(staff, per_page=9).json["next_after"] is not None


def test_after_needs_no_such_user(staff: Staff) -> None:
    """`after` is a position, not a row: a deleted user's id still pages on from there."""
    ids = stored_ids(staff.app)
    assert emails(listing(staff, after=0)) == STAFF
    assert emails(listing(staff, after=ids[0])) == [MODERATOR, USER]
    assert emails(listing(staff, after=2**31 - 1)) == []


# --- the depth of numbered pages -------------------------------------------------------------


@pytest.mark.parametrize(("page", "per_page"), [(100, 100), (500, 20), (10_000, 1), (333, 30)])
def test_page_reaches_the_first_ten_thousand_rows(staff: Staff, page: int, per_page: int) -> None:
    response = listing(staff, page=page, per_page=per_page)
    assert response.status_code == 200, response.json
    assert response.json["page"] == page


@pytest.mark.parametrize(
    ("page", "per_page"), [(101, 100), (501, 20), (501, None), (334, 30), (10_001, 1)]
)
def test_a_page_past_ten_thousand_rows_is_422_naming_after(
    staff: Staff, page: int, per_page: int | None
) -> None:
    query = {"page": page, **({"per_page": per_page} if per_page else {})}
    body = assert_problem(listing(staff, **query), 422)
    assert set(body["errors"]) == {"page"}
    (message,) = body["errors"]["page"]
    assert "`after`" in message and "10,000" in message


def test_page_and_after_together_are_422(staff: Staff) -> None:
    body = assert_problem(listing(staff, page=1, after=5), 422)
    assert set(body["errors"]) == {"after"}


# --- the total --------------------------------------------------------------------------------


def test_the_total_is_exact_up_to_ten_thousand_and_an_estimate_beyond(staff: Staff) -> None:
    bulk_users(staff.app, PAGE_DEPTH, email="bulk{n}@counted.example.org")
    counted = listing(staff, email="counted.example").json
    assert (counted["total"], counted["total_exact"]) == (PAGE_DEPTH, True)
    everyone = listing(staff).json  # 10,003: past the count
    assert everyone["total_exact"] is False
    assert everyone["total"] > PAGE_DEPTH
    bulk_users(staff.app, 1, email="one-more@counted.example.org")
    more = listing(staff, email="counted.example").json
    assert more["total_exact"] is False
    assert more["total"] > PAGE_DEPTH
    # A filter that matches few is still counted exactly, however large the table.
    few = listing(staff, group="ADMIN").json
    assert (few["total"], few["total_exact"]) == (1, True)


# --- the email filter ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "email",
    [
        "ab",  # too short for a trigram
        "x" * 255,  # longer than any address
        "%_" * 160,  # LIKE wildcards: today's 2-second pattern
        "a%b",
        "a b",
        "a\\b",
        "ünï",
        "a!b",
        'a"b',
        "a#b",  # an address may hold it, the filter does not
        "a\nb",
    ],
)
def test_an_email_filter_outside_its_bounds_is_422(staff: Staff, email: str) -> None:
    body = assert_problem(listing(staff, email=email), 422)
    assert set(body["errors"]) == {"email"}
    assert "3 to 254" in body["errors"]["email"][0]


def test_the_email_filter_matches_exactly_what_is_written(staff: Staff) -> None:
    """The trigram index reads the address spelt in letters (`.` as `qd`); the filter still
    matches only the characters as written, and each of the allowed separators."""
    for email in [
        "x.ave@example.org",  # spelt xqdave: holds "dave" spelt, not written
        "dave@example.org",
        "aq.b@example.org",  # spelt aqqqdb: holds "qdb" spelt (qqdb), not written
        "o'brien+films@cinema-club.example.org",
        "first_last@example.org",
        "firstxlast@example.org",
    ]:
        bulk_users(staff.app, 1, email=email)
    assert emails(listing(staff, email="dave")) == ["dave@example.org"]
    assert emails(listing(staff, email="q.b")) == ["aq.b@example.org"]
    assert emails(listing(staff, email="qdb")) == []
    assert emails(listing(staff, email="O'Brien+Films@Cinema-Club")) == [
        "o'brien+films@cinema-club.example.org"
    ]
    assert emails(listing(staff, email="t_l")) == ["first_last@example.org"]
    assert emails(listing(staff, email="example.com")) == STAFF
    assert emails(listing(staff, email="com.example")) == []
    assert emails(listing(staff, email="x" * 254)) == []


@pytest.mark.postgres("pg_trgm and its index are PostgreSQL's")
def test_the_email_filter_can_use_the_trigram_index(staff: Staff) -> None:
    """The expression the query filters by is the index's: were it not (a parameter where
    the index has a literal, another spelling), PostgreSQL would read the whole table."""
    with recorded_statements(staff.app) as captured:
        assert emails(listing(staff, email="mod@ex")) == [MODERATOR]
    (count, parameters) = next((s, p) for s, p in captured if "count(" in s)
    with staff.app.app_context(), db.engine.connect() as conn, conn.begin():
        conn.exec_driver_sql("SET LOCAL enable_seqscan = off")
        conn.exec_driver_sql("SET LOCAL enable_indexscan = off")
        plan = "\n".join(conn.exec_driver_sql(f"EXPLAIN {count}", parameters).scalars())
    assert "ix_users_email_trigrams" in plan, plan


# --- the per-caller limit -----------------------------------------------------------------


def test_each_caller_has_a_limit_of_lists(
    app_factory: Callable[..., Flask], accounts: Accounts, password_hash: str
) -> None:
    app = app_factory(RATELIMIT_ENABLED=True, ADMIN_LIST_RATE_LIMIT="3/minute")
    client = app.test_client()
    staff = make_staff(app, client, accounts, password_hash)
    statuses = [listing(staff, MODERATOR).status_code for _ in range(2)]
    statuses.append(listing(staff, MODERATOR, email="%").status_code)  # a refusal counts too
    refused = listing(staff, MODERATOR)
    assert statuses == [200, 200, 422]
    body = assert_problem(refused, 429)
    assert int(refused.headers["Retry-After"]) > 0
    assert "Retry-After" in body["detail"]
    assert listing(staff, ADMIN).status_code == 200  # another caller has a count of its own
    assert listing(staff, MODERATOR, email="%").status_code == 429


def test_the_list_limit_is_off_with_rate_limiting(
    app_factory: Callable[..., Flask], accounts: Accounts, password_hash: str
) -> None:
    app = app_factory(RATELIMIT_ENABLED=False, ADMIN_LIST_RATE_LIMIT="1/minute")
    staff = make_staff(app, app.test_client(), accounts, password_hash)
    assert [listing(staff).status_code for _ in range(3)] == [200] * 3


# --- migration 0014 ------------------------------------------------------------------------

NOW = "2026-01-01 00:00:00"
NEW_INDEXES = {"ix_users_group_id_id", "ix_users_inactive_id", "ix_users_mfa_enabled_id"}


def index_names(engine: sa.Engine) -> set[str]:
    return {str(index["name"]) for index in sa.inspect(engine).get_indexes("users")}


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_migration_0014_upgrades_and_downgrades_a_table_with_users(
    backend: str, tmp_path: Any, make_postgres_database: Callable[[str], str]
) -> None:
    from flask_migrate import downgrade, upgrade

    from app import create_app
    from app.identity.users import seed_groups

    if backend == "sqlite":
        url = f"sqlite:///{tmp_path / 'indexes.sqlite3'}"
    else:
        url = make_postgres_database("admin_indexes")
    app = create_app({"SQLALCHEMY_DATABASE_URI": url, "REDIS_URL": None})
    with app.app_context():
        upgrade(revision="0013_oidc")
        seed_groups()
        group = db.session.scalar(sa.select(UserGroup.id).where(UserGroup.name == "USER"))
        db.session.execute(
            sa.text(
                "INSERT INTO users (email, is_active, mfa_enabled, group_id, created_at,"
                " updated_at) VALUES (:email, :active, false, :group, :now, :now)"
            ),
            [
                {"email": f"old{n}@example.org", "active": n % 2 == 0, "group": group, "now": NOW}
                for n in range(50)
            ],
        )
        db.session.commit()
        assert "ix_users_group_id" in index_names(db.engine)
        upgrade(revision="0014_admin_list_indexes")
        after_upgrade = index_names(db.engine)
        downgrade(revision="0013_oidc")
        after_downgrade = index_names(db.engine)
        if backend == "postgresql":
            with db.engine.connect() as conn:
                extension = conn.exec_driver_sql(
                    "SELECT count(*) FROM pg_extension WHERE extname = 'pg_trgm'"
                ).scalar_one()
                statistics = conn.exec_driver_sql(
                    "SELECT count(*) FROM pg_statistic_ext WHERE stxname = 'users_admin_filters'"
                ).scalar_one()
            assert (extension, statistics) == (1, 0)  # the extension stays
        upgrade()
        assert index_names(db.engine) == after_upgrade
        assert db.session.scalar(sa.select(sa.func.count()).select_from(User)) == 50
        db.engine.dispose()
    expected = NEW_INDEXES | ({"ix_users_email_trigrams"} if backend == "postgresql" else set())
    assert expected <= after_upgrade
    assert "ix_users_group_id" not in after_upgrade
    assert not expected & after_downgrade
    assert "ix_users_group_id" in after_downgrade
