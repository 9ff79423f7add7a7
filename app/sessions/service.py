"""The use cases of a login once it has started: refresh and logout. (A login starts with a
way in: app/passwords/service.py.)"""

from __future__ import annotations

from typing import Any

from app.core.db import db
from app.core.log import audit
from app.events.models import EventType
from app.events.service import record_event
from app.sessions.access_tokens import login_of_any_token
from app.sessions.endings import end_login
from app.sessions.rotation import login_of_refresh_token, spend_refresh_token


def refresh(refresh_token: str) -> dict[str, Any]:
    """Spend a refresh token for the next token pair of its login.

    A spent token presented again ends the login (reuse), unless it is the one just rotated,
    within REFRESH_REUSE_GRACE: then it gets a fresh access token and the refresh token that
    rotation made, of the same login. An account deleted or deactivated since is refused,
    and nothing is spent then; nor when the new pair cannot be made (a signing key that
    cannot be read): the rotation commits once the pair is signed."""
    spent, pair = spend_refresh_token(refresh_token)
    audit("token_refreshed", user_id=spent.user_id, family=spent.family)
    return pair


def logout(refresh_token: str, access_token: str | None) -> None:
    """End the login of the refresh token; and, when the access token sent with it belongs
    to another login of the same user, that one too."""
    user_id, family = login_of_refresh_token(refresh_token)
    end_login(family)
    if access_token:
        login = login_of_any_token(access_token)
        if login is not None and login[0] == user_id:
            end_login(login[1])
    record_event(EventType.LOGGED_OUT, user_id)
    db.session.commit()
    audit("logged_out", user_id=user_id, family=family)
