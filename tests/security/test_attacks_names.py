"""Attacks through profile names (issue 10, item 18): bidirectional controls that reorder
what is shown, and names made of characters drawn as nothing. On SQLite and PostgreSQL.
"""

from __future__ import annotations

from flask.testing import FlaskClient

from tests.support.http import Accounts, assert_problem, bearer

BIDI_CONTROLS = [chr(c) for c in (*range(0x202A, 0x202F), *range(0x2066, 0x206A))]
INVISIBLE_NAMES = [
    "\u200b",
    "\u200b\u200c\u200d",
    "\u2060\ufeff",
    "\u00ad\u00ad",
    " \u200b \u3164 ",  # with a Hangul filler, a letter drawn as nothing
    "\u2800",  # the Braille blank
    "\u034f\ufe0f",  # a grapheme joiner and a variation selector, with nothing to join
]


def test_bidirectional_controls_in_a_name_are_422(client: FlaskClient, accounts: Accounts) -> None:
    headers = bearer(accounts.active_user("bidi@example.com")["access_token"])
    for field in ("first_name", "last_name"):
        for control in BIDI_CONTROLS:
            # "Ada" + RLO + "ecilA" shows as "AdaAlice"; the reordering spills past the name.
            name = f"Ada{control}ecilA"
            response = client.patch("/auth/me/profile", json={field: name}, headers=headers)
            body = assert_problem(response, 422)
            assert "bidirectional" in body["errors"][field][0], repr(control)
    profile = client.get("/auth/me", headers=headers).json["profile"]
    assert profile["first_name"] is None and profile["last_name"] is None


def test_a_name_of_invisible_characters_is_blank(client: FlaskClient, accounts: Accounts) -> None:
    headers = bearer(accounts.active_user("ghost@example.com")["access_token"])
    client.patch("/auth/me/profile", json={"first_name": "Ada"}, headers=headers)
    for name in INVISIBLE_NAMES:
        response = client.patch("/auth/me/profile", json={"first_name": name}, headers=headers)
        body = assert_problem(response, 422)
        assert "blank" in body["errors"]["first_name"][0], repr(name)
    assert client.get("/auth/me", headers=headers).json["profile"]["first_name"] == "Ada"


def test_names_with_joiners_between_letters_are_kept(
    client: FlaskClient, accounts: Accounts
) -> None:
    # Zero-width joiners and non-joiners belong inside real names (Persian, Indic scripts).
    headers = bearer(accounts.active_user("zwnj@example.com")["access_token"])
    name = "\u0645\u06cc\u200c\u062e\u0648\u0627\u0647\u0645"
    response = client.patch("/auth/me/profile", json={"first_name": name}, headers=headers)
    assert response.status_code == 200, response.json
    assert response.json["first_name"] == name
