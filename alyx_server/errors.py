"""The one exception tree of Alyx.

    AlyxError(status, code)
    ├── ValidationError        400 VALIDATION_ERROR   details: [{field, code, message}]
    ├── InvalidJSON            400 INVALID_JSON
    ├── InvalidQuery           400 INVALID_QUERY
    ├── Unauthorized           401 UNAUTHORIZED (INVALID_TOKEN, TOKEN_EXPIRED, ...)
    ├── Forbidden              403 FORBIDDEN
    ├── NotFound               404 DOCUMENT_NOT_FOUND (COLLECTION_NOT_FOUND, ...)
    ├── Conflict               409 UNIQUE_VIOLATION | FOREIGN_KEY_VIOLATION
    ├── PayloadTooLarge        413 PAYLOAD_TOO_LARGE
    ├── RateLimited            429 RATE_LIMITED (retry_after seconds)
    ├── SchemaError            a bad schema.yaml (carries a source location)
    ├── ConfigError            a bad alyx.yaml or ALYX_* variable (carries a source location)
    ├── MigrationError         a migration that cannot or must not run
    ├── RuleError              a CEL rule that does not compile or evaluate
    └── FunctionError          a serverless function failure

Exactly three places translate these for the outside world: the HTTP error middleware,
the WebSocket handler and the CLI.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

__all__ = [
    "AlyxError",
    "ConfigError",
    "Conflict",
    "FieldIssue",
    "Forbidden",
    "FunctionError",
    "InvalidJSON",
    "InvalidQuery",
    "Location",
    "MigrationError",
    "NotFound",
    "PayloadTooLarge",
    "RateLimited",
    "RuleError",
    "SchemaError",
    "Unauthorized",
    "ValidationError",
]


@dataclass(frozen=True, slots=True)
class Location:
    """Where in a user's file something is: file name, 1-based line and column, key path."""

    file: str
    line: int | None = None
    column: int | None = None
    path: str | None = None

    def __str__(self) -> str:
        where = self.file
        if self.line is not None:
            where += f":{self.line}"
            if self.column is not None:
                where += f":{self.column}"
        if self.path:
            where += f": {self.path}"
        return where


@dataclass(frozen=True, slots=True)
class FieldIssue:
    """One failed field check, as it appears in a VALIDATION_ERROR's details."""

    field: str
    code: str
    message: str

    def to_dict(self) -> dict[str, str]:
        return {"field": self.field, "code": self.code, "message": self.message}


class AlyxError(Exception):
    """Base of every error Alyx raises on purpose; carries an HTTP status and a code."""

    status: int = 500
    code: str = "INTERNAL_ERROR"

    def __init__(
        self,
        message: str,
        *,
        code: str | None = None,
        status: int | None = None,
        details: Sequence[Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        if status is not None:
            self.status = status
        self.details: list[Any] = list(details) if details else []

    def __str__(self) -> str:
        return self.message


class ValidationError(AlyxError):
    status = 400
    code = "VALIDATION_ERROR"

    def __init__(
        self,
        message: str,
        issues: Sequence[FieldIssue] = (),
        *,
        code: str | None = None,
    ) -> None:
        super().__init__(message, code=code, details=[i.to_dict() for i in issues])
        self.issues = list(issues)


class InvalidJSON(AlyxError):
    status = 400
    code = "INVALID_JSON"


class InvalidQuery(AlyxError):
    status = 400
    code = "INVALID_QUERY"


class Unauthorized(AlyxError):
    status = 401
    code = "UNAUTHORIZED"


class Forbidden(AlyxError):
    status = 403
    code = "FORBIDDEN"


class NotFound(AlyxError):
    status = 404
    code = "DOCUMENT_NOT_FOUND"


class Conflict(AlyxError):
    status = 409
    code = "UNIQUE_VIOLATION"

    def __init__(self, message: str, *, code: str | None = None, field: str | None = None) -> None:
        details = (
            [{"field": field, "code": (code or self.code).lower(), "message": message}] if field else None
        )
        super().__init__(message, code=code, details=details)
        self.field = field


class PayloadTooLarge(AlyxError):
    status = 413
    code = "PAYLOAD_TOO_LARGE"


class RateLimited(AlyxError):
    status = 429
    code = "RATE_LIMITED"

    def __init__(self, message: str, *, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class _LocatedError(AlyxError):
    """An error in a user's file: the message is prefixed with where it is."""

    def __init__(self, message: str, location: Location | None = None, *, hint: str | None = None) -> None:
        self.location = location
        self.bare_message = message
        self.hint = hint
        text = f"{location}: {message}" if location else message
        if hint:
            text += f" ({hint})"
        super().__init__(text)


class SchemaError(_LocatedError):
    status = 400
    code = "SCHEMA_ERROR"


class ConfigError(_LocatedError):
    status = 500
    code = "CONFIG_ERROR"


class MigrationError(AlyxError):
    status = 409
    code = "MIGRATION_ERROR"


class RuleError(_LocatedError):
    status = 400
    code = "RULE_ERROR"


class FunctionError(AlyxError):
    status = 500
    code = "INVOCATION_ERROR"
