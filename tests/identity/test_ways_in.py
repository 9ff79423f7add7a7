"""The last way in: an account keeps at least one way to sign in, whatever kinds exist."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from app.core.errors import Conflict
from app.identity import ways_in as registry
from app.identity.models import User


@pytest.fixture
def counters() -> Iterator[dict[str, int]]:
    """A kind of way in of the test's own, registered as a package registers its kind, alone
    (the packages' own kinds read the database, which these tests do not have)."""
    counts: dict[str, int] = {}
    saved = dict(registry._COUNTERS)
    registry._COUNTERS.clear()
    registry.register_way_in("test-kind", lambda user_id: counts.get(str(user_id), 0))
    yield counts
    registry._COUNTERS.clear()
    registry._COUNTERS.update(saved)


def _user(password_hash: str | None) -> User:
    return User(id=7, email="a@example.com", password_hash=password_hash)


def test_a_password_is_one_way_in(counters: dict[str, int]) -> None:
    assert registry.ways_in(_user("hash")) == 1
    assert registry.ways_in(_user(None)) == 0


def test_each_registered_kind_counts(counters: dict[str, int]) -> None:
    before = registry.ways_in(_user(None))
    counters["7"] = 2
    assert registry.ways_in(_user(None)) == before + 2


def test_the_last_way_in_cannot_be_removed(counters: dict[str, int]) -> None:
    with pytest.raises(Conflict) as refused:
        registry.keep_a_way_in(_user("hash"))  # the password alone
    assert refused.value.status == 409
    counters["7"] = 1
    registry.keep_a_way_in(_user("hash"))  # a password and one more: either may go
    with pytest.raises(Conflict):
        registry.keep_a_way_in(_user(None))  # the one other way alone
