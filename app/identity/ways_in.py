"""The ways an account can sign in, and the one rule over them: the last one stays.

A way in is a password, a passkey, or an identity linked at a sign-in provider. The packages
that own passkeys and linked identities sit above this one (it must never import them), so
each registers, at import, a function that counts its ways for a user; a package removing a
way calls `keep_a_way_in` first. Without the rule, deleting the last passkey of an account
without a password would lock its owner out for good.
"""

from __future__ import annotations

from collections.abc import Callable

from app.core.errors import Conflict
from app.identity.models import User

_COUNTERS: dict[str, Callable[[int], int]] = {}

LAST_WAY_IN = (
    "This is the account's last way to sign in: add a password, another passkey or a linked"
    " sign-in provider first."
)


def register_way_in(kind: str, count: Callable[[int], int]) -> None:
    """Make `count(user_id)` (how many ways of this kind the user has) part of `ways_in`;
    registering a kind again replaces its counter."""
    _COUNTERS[kind] = count


def ways_in(user: User) -> int:
    """How many ways `user` has to sign in: 1 for a password, plus every registered kind's."""
    password = 1 if user.password_hash is not None else 0
    return password + sum(count(user.id) for count in _COUNTERS.values())


def keep_a_way_in(user: User) -> None:
    """Refuse (Conflict, 409) to remove one of `user`'s ways in when it is the last one."""
    if ways_in(user) <= 1:
        raise Conflict(LAST_WAY_IN)
