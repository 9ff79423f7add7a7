"""The use case of a person downloading their data: everything the service holds on them,
as GDPR's right of access asks, and nothing secret.

What is left out on purpose: the password hash, every token and token hash (refresh tokens
and the emailed links'), the ids of logins (an access token names its login by one), the
storage key of the avatar (its URL stands for it) and the keyed hash that pseudonymises the
person's security events once the account is deleted.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from app.core.db import utcnow
from app.events.models import SecurityEvent
from app.events.service import all_events_of
from app.identity.models import User
from app.oidc.models import LinkedIdentity
from app.oidc.service import identities_of
from app.passkeys.manage import passkeys_of
from app.passkeys.models import Passkey
from app.sessions.summaries import SessionSummary, sessions_of


@dataclass(frozen=True)
class AccountExport:
    exported_at: datetime
    user: User  # with its profile, as GET /auth/me shows it
    sessions: list[SessionSummary]
    security_events: list[SecurityEvent]
    # Each passkey as GET /auth/passkeys shows it: no public key, no credential id.
    passkeys: list[Passkey]
    # The sign-in providers linked (what each said of the person, never its subject id).
    identities: list[LinkedIdentity]


def export_account(user: User) -> AccountExport:
    """Everything held on `user`: the account with its profile, the live logins, every
    security event, newest first, and the passkeys."""
    return AccountExport(
        exported_at=utcnow(),
        user=user,
        sessions=sessions_of(user.id),
        security_events=all_events_of(user.id),
        passkeys=passkeys_of(user),
        identities=identities_of(user),
    )
