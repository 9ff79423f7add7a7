"""The use cases of a login once it has started: refresh and logout. (A login starts with a
way in: app/passwords/service.py.)"""

from __future__ import annotations

from typing import Any

from app.core.db import db
from app.core.log import audit
from app.events.models import EventType
from app.events.service import record_event
from app.identity.users import active_user
from app.sessions.access_tokens import login_of_any_token
from app.sessions.refresh_tokens import end_login, issue_token_pair, spend_refresh_token


def refresh(refresh_token: str) -> dict[str, Any]:
    """Spend a refresh token for the next token pair of its login.

    A spent token presented again ends the login (reuse), unless it is the one just rotated,
    within REFRESH_REUSE_GRACE: then it gets a fresh pair of the same login. An account
    deleted or deactivated since is refused, and then the spend is never committed."""
    spent = spend_refresh_token(refresh_token)
    user = active_user(spent.user_id)
    pair = issue_token_pair(user, family_id=spent.family_id, family_expires_at=spent.expires_at)
    db.session.commit()
    audit("token_refreshed", user_id=user.id, family=spent.family_id)
    return pair


def logout(refresh_token: str, access_token: str | None) -> None:
    """End the login of the refresh token; and, when the access token sent with it belongs
    to another login of the same user, that one too."""
    spent = spend_refresh_token(refresh_token)
    end_login(spent.family_id)
    if access_token:
        login = login_of_any_token(access_token)
        if login is not None and login[0] == spent.user_id:
            end_login(login[1])
    record_event(EventType.LOGGED_OUT, spent.user_id)
    db.session.commit()
    audit("logged_out", user_id=spent.user_id, family=spent.family_id)
