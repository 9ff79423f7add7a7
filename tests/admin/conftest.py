"""The admin tests' fixtures: the staff accounts, logged in."""

from __future__ import annotations

import pytest
from flask import Flask
from flask.testing import FlaskClient

from app.passwords import hashing
from tests.support.http import PASSWORD, Accounts
from tests.support.staff import Staff, make_staff


@pytest.fixture
def password_hash() -> str:
    # Made per test by the test's hasher, as every stored hash is: one made by another hasher
    # would be rehashed at the staff's next login, which the service does only for old hashes.
    return hashing.hash_password(PASSWORD)


@pytest.fixture
def staff(app: Flask, client: FlaskClient, accounts: Accounts, password_hash: str) -> Staff:
    return make_staff(app, client, accounts, password_hash)
