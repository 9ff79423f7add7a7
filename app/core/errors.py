"""Domain errors: what a use case says went wrong. app/web/problems.py turns each into an
RFC 9457 problem response; services never build one."""

from __future__ import annotations

from http import HTTPStatus
from typing import Any


class DomainError(Exception):
    """An expected failure of a use case; `status` and `title` say how the API answers it.

    A subclass is one line: `class Conflict(DomainError, status=409)`; its title is the
    status's reason phrase unless it names one of its own. None of the names shadows a
    werkzeug exception, so an import can never silently swap one for the other.

    `detail` says what happened; `next_step` names what the person can do about it (one of
    the NextStep values), which the web layer says in words, with the endpoint to call.
    """

    status = 400
    title = "Bad Request"

    def __init_subclass__(cls, *, status: int, title: str | None = None, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls.status = status
        cls.title = title or HTTPStatus(status).phrase

    def __init__(
        self,
        detail: str,
        *,
        errors: dict[str, list[str]] | None = None,
        next_step: str | None = None,
    ) -> None:
        super().__init__(detail)
        self.detail = detail
        self.errors = errors
        self.next_step = next_step


class NextStep:
    """What a person can do after an error; app/web/problems.py words each one."""

    ASK_ACTIVATION_LINK = "ask_activation_link"
    ASK_RESET_LINK = "ask_reset_link"
    ASK_EMAIL_CHANGE_LINK = "ask_email_change_link"
    TURN_ON_MFA = "turn_on_mfa"


class InvalidInput(DomainError, status=422, title="Unprocessable Content"): ...


class InvalidToken(DomainError, status=400, title="Invalid Token"): ...


class DisallowedRedirect(DomainError, status=400, title="Bad Request"): ...


class WrongPassword(DomainError, status=400, title="Wrong Password"): ...


class InvalidPasskey(DomainError, status=400, title="Invalid Passkey"): ...


class NotAuthenticated(DomainError, status=401): ...


class PermissionDenied(DomainError, status=403): ...


class UserNotFound(DomainError, status=404): ...


class SessionNotFound(DomainError, status=404): ...


class UnknownProvider(DomainError, status=404, title="Not Found"): ...


class IdentityNotFound(DomainError, status=404, title="Not Found"): ...


class Conflict(DomainError, status=409): ...


class ContentTooLarge(DomainError, status=413, title="Content Too Large"): ...


class UnsupportedImage(DomainError, status=415): ...


class WrongCode(DomainError, status=400, title="Wrong Code"): ...


class ProviderUnavailable(DomainError, status=503, title="Service Unavailable"): ...


class TooManyAttempts(DomainError, status=429):
    def __init__(self, retry_after: int) -> None:
        super().__init__("Too many requests; retry after the time given in Retry-After.")
        self.retry_after = retry_after
