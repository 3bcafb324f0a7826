"""Domain errors with a stable code and a message in both languages.

Every rejection names the rule it broke (UK ETS habit): `code` is stable for clients,
`status` maps to HTTP, and the API renders it as RFC 9457 problem+json.
"""

from __future__ import annotations

from typing import Any


class DomainError(Exception):
    status = 422

    def __init__(self, code: str, message: str, message_zh: str = "", **context: Any) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.message_zh = message_zh or message
        self.context = context

    def __str__(self) -> str:
        return f"{self.code}: {self.message}"

    def __reduce__(self) -> tuple[Any, ...]:
        """Pickles whole (code, both messages, context): the order writer's process sends
        refusals back to the API's."""
        return (_rebuild, (type(self), self.code, self.message, self.message_zh, self.context))


def _rebuild(
    cls: type[DomainError], code: str, message: str, message_zh: str, context: dict[str, Any]
) -> DomainError:
    return cls(code, message, message_zh, **context)


class NotFound(DomainError):
    status = 404


class Conflict(DomainError):
    status = 409


class Forbidden(DomainError):
    status = 403


class Unauthorized(DomainError):
    status = 401


class InvalidInput(DomainError):
    status = 422


class Unavailable(DomainError):
    status = 503
