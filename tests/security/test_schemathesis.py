"""Checklist item 26: Schemathesis over the served /openapi.json, in-process through WSGI.

Every operation is called as a USER and as an ADMIN with every default check on, so the
document must describe exactly what the server answers (status codes, content types,
bodies, headers), refuse what it calls invalid, and refuse missing credentials.

It runs on PostgreSQL only: that is the production database, and the failures that only a
strict database shows (NUL bytes in text, integers past 32 bits, …) are found there; the
same code on SQLite doubles the time and adds no defect class.
"""

from __future__ import annotations

import os
import zlib
from collections.abc import Callable
from typing import Any

import pytest
import schemathesis
from flask import Flask
from schemathesis import Case

from tests.support.http import Accounts

# A deeper run once in a while: SCHEMATHESIS_MAX_EXAMPLES=500 pytest tests/security/...
MAX_EXAMPLES = int(os.environ.get("SCHEMATHESIS_MAX_EXAMPLES", "30"))
# positive_data_acceptance expects schema-valid requests to succeed. These operations refuse
# well-formed data by rules of the contract that JSON Schema cannot state (a token we issued,
# the current password, zxcvbn's guessability): they may also answer what the contract says.
ACCEPTED = ["2xx", "3xx", "401", "403", "404", "409", "429"]
REFUSALS_OF_WELL_FORMED_DATA = {
    "POST /auth/register": ["422"],  # password too guessable or built from the email
    "POST /auth/activate": ["400"],  # token unknown, spent or expired
    "POST /auth/password/change": ["400", "422"],  # current password wrong; new one too weak
    "POST /auth/password/reset": ["400", "422"],  # token unknown, spent or expired; too weak
    "POST /auth/email/change": ["400", "422"],  # password wrong; the caller's own address
    "POST /auth/email/confirm": ["400"],  # token unknown, spent or expired
    "PATCH /auth/me/profile": ["422"],  # date of birth in the future or before 1900
    "PUT /auth/me/avatar": ["413", "415", "422"],  # the bytes, not the schema, make an image
    "DELETE /auth/me": ["400"],  # the password is wrong
    "POST /auth/mfa/totp/confirm": ["400"],  # not the code the app shows now
    "DELETE /auth/mfa/totp": ["400"],  # current password or code wrong
    "POST /auth/mfa/recovery-codes": ["400"],  # current password or code wrong
    "POST /auth/passkeys": ["400"],  # challenge unknown, spent or expired; not verified
    "GET /auth/oidc/{provider}/callback": ["400"],  # a state never issued, or spent
    "POST /auth/oidc/exchange": ["400"],  # code unknown, spent or expired
    "GET /admin/users": ["422"],  # page with after; page * per_page past 10,000
}
# negative_data_rejection expects schema-violating requests to be refused. Schemathesis's
# own list, plus 413: a value far past its maxLength makes a body over the 16 KiB JSON cap,
# refused before it is read.
REFUSALS_OF_INVALID_DATA = [
    *("400", "401", "403", "404", "405", "406", "409", "413", "415", "422", "428", "429"),
    "5xx",
]


@pytest.fixture(params=["USER", "ADMIN"])
def role(request: pytest.FixtureRequest) -> str:
    return str(request.param)


# The operations are run in three parts, each a test of its own, so that the suite's workers
# share them: one test of every operation took 40-50 s a role, the longest of the suite, and
# set when it ended.
PARTS = 3


def part(number: int) -> Callable[[Any], bool]:
    """Whether an operation is in part `number` (of PARTS): a stable hash of its label."""
    return lambda context: zlib.crc32(context.operation.label.encode()) % PARTS == number - 1


@pytest.fixture
def api_schema(
    request: pytest.FixtureRequest, app: Flask, accounts: Accounts, role: str
) -> schemathesis.BaseSchema:
    # schemathesis 4.32 reads `Node._nodeid`, which pytest 9.2 dropped for `nodeid`; give it back.
    if not hasattr(request.node, "_nodeid"):
        request.node._nodeid = request.node.nodeid
    address = f"{role.lower()}@example.com"
    access_token = accounts.active_user(address)["access_token"]
    accounts.set_group(app, address, role)
    config = schemathesis.Config.from_dict(
        {
            "generation": {"mode": "all", "max-examples": MAX_EXAMPLES},
            "checks": {"negative_data_rejection": {"expected-statuses": REFUSALS_OF_INVALID_DATA}},
            "operations": [
                {
                    "include-name": operation,
                    "checks": {
                        "positive_data_acceptance": {"expected-statuses": ACCEPTED + refusals}
                    },
                }
                for operation, refusals in REFUSALS_OF_WELL_FORMED_DATA.items()
            ],
            # Explicit credentials: `ignored_auth` retries each 2xx without them, expecting 401.
            "auth": {
                "openapi": {"bearerAuth": {"bearer": access_token}},
                "auto-signup": False,
            },
        }
    )
    return schemathesis.openapi.from_wsgi("/openapi.json", app, config=config)


schema = schemathesis.pytest.from_fixture("api_schema")


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
@schema.include(part(1)).parametrize()
def test_every_operation_keeps_the_documented_contract_part_1(case: Case) -> None:
    case.call_and_validate()


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
@schema.include(part(2)).parametrize()
def test_every_operation_keeps_the_documented_contract_part_2(case: Case) -> None:
    case.call_and_validate()


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
@schema.include(part(3)).parametrize()
def test_every_operation_keeps_the_documented_contract_part_3(case: Case) -> None:
    case.call_and_validate()
