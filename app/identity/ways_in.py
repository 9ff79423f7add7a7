"""The ways an account has to sign in, and the rule that it keeps at least one.

A password lives on the user's row; passkeys and linked identities live in packages above
this one (app/passkeys, app/oidc), which this package must not import. So each of those
packages registers, when it is imported, a counter of the ways in it holds for a user, and
every package that removes a way in calls `keep_a_way_in` first: one rule over all of them,
whoever adds the next kind.
"""

from __future__ import annotations

from collections.abc import Callable

from app.core.errors import Conflict
from app.identity.models import User

_COUNTERS: dict[str, Callable[[int], int]] = {}


def register_way_in(kind: str, count: Callable[[int], int]) -> None:
    """Count the ways in of `kind` ("passkey", "identity") a user has, by the user's id."""
    _COUNTERS[kind] = count


def ways_in(user: User) -> int:
    """How many ways the account has to sign in: its password, then each registered kind."""
    has_password = 1 if user.password_hash is not None else 0
    return has_password + sum(count(user.id) for count in _COUNTERS.values())


def keep_a_way_in(user: User) -> None:
    """Refuse (409) to remove one way in when it is the account's last: it could never sign
    in again. The caller checks before it removes the way in, in the same transaction."""
    if ways_in(user) <= 1:
        raise Conflict(
            "This is the account's last way to sign in; add another (a password, a passkey"
            " or another provider) before removing it."
        )
