"""Two-factor as a person uses it: an authenticator app (pyotp) on the test's travelled clock,
and the requests of enrolling and signing in with it."""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import pyotp
import time_machine
from flask.testing import FlaskClient

from tests.support.http import PASSWORD, bearer

STEP = 30  # seconds of one TOTP time step


@contextmanager
def step_clock() -> Iterator[time_machine.Traveller]:
    """A frozen clock one second into a time step (of the real date: the signing key signs
    from the moment it was made), moved only by the test."""
    start = math.ceil(time.time() / STEP) * STEP + 1
    with time_machine.travel(start, tick=False) as clock:
        yield clock


@dataclass
class Authenticator:
    """The person's app: the secret it scanned, read on the travelled clock."""

    secret: str
    clock: time_machine.Traveller

    def code(self, steps: int = 0) -> str:
        """The code of the step `steps` steps from now (what a fast or slow phone shows)."""
        return str(pyotp.TOTP(self.secret).at(time.time(), counter_offset=steps))

    def next_code(self) -> str:
        """Wait for the app's next code (a code works once, so each use needs a new step)."""
        self.clock.shift(STEP)
        return self.code()


def set_up(client: FlaskClient, access_token: str) -> Any:
    return client.post("/auth/mfa/totp/setup", headers=bearer(access_token))


def confirm(client: FlaskClient, access_token: str, code: str) -> Any:
    return client.post("/auth/mfa/totp/confirm", json={"code": code}, headers=bearer(access_token))


def enrol(
    client: FlaskClient, access_token: str, clock: time_machine.Traveller
) -> tuple[Authenticator, list[str]]:
    """Set up and confirm two-factor; the app and the recovery codes."""
    started = set_up(client, access_token)
    assert started.status_code == 200, started.json
    app = Authenticator(started.json["secret"], clock)
    confirmed = confirm(client, access_token, app.code())
    assert confirmed.status_code == 200, confirmed.json
    return app, confirmed.json["recovery_codes"]


def second_step(client: FlaskClient, mfa_token: str, code: str, **headers: str) -> Any:
    return client.post(
        "/auth/login/mfa", json={"mfa_token": mfa_token, "code": code}, headers=headers
    )


def mfa_token_of(client: FlaskClient, email: str, password: str = PASSWORD, **headers: str) -> str:
    """The password step of an account with two-factor on: its mfa_token."""
    response = client.post(
        "/auth/login", json={"email": email, "password": password}, headers=headers
    )
    assert response.status_code == 200, response.json
    assert set(response.json) == {"mfa_required", "mfa_token", "expires_in"}
    return str(response.json["mfa_token"])


def sign_in(client: FlaskClient, email: str, app: Authenticator) -> dict[str, Any]:
    """Both steps, with the app's next code; the token pair."""
    response = second_step(client, mfa_token_of(client, email), app.next_code())
    assert response.status_code == 200, response.json
    return response.json  # type: ignore[no-any-return]


def turn_off(client: FlaskClient, access_token: str, code: str, password: str = PASSWORD) -> Any:
    return client.delete(
        "/auth/mfa/totp", json={"password": password, "code": code}, headers=bearer(access_token)
    )


def renew_codes(client: FlaskClient, access_token: str, code: str, password: str = PASSWORD) -> Any:
    return client.post(
        "/auth/mfa/recovery-codes",
        json={"password": password, "code": code},
        headers=bearer(access_token),
    )


def event_types(client: FlaskClient, access_token: str) -> list[str]:
    """The types of the account's security events, newest first."""
    response = client.get("/auth/me/events", headers=bearer(access_token))
    assert response.status_code == 200, response.json
    return [item["type"] for item in response.json["items"]]
