"""One exception hierarchy for geoservice.

Every error a user can cause or meet carries an HTTP status, a stable machine ``code`` and a message that is
safe to show (never a DSN, a password or a stack trace). The web layer turns them into the one JSON error shape
``{"code": ..., "description": ...}``; the CLI prints the message on one line and exits non-zero.
"""

from __future__ import annotations


class GeoserviceError(Exception):
    """Base class: an error with a status and a message safe to show to a user."""

    status = 500
    code = "InternalError"
    retry_after: int | None = None
    """Seconds after which trying again may succeed (sent as ``Retry-After``); None when it will not."""

    def __init__(self, description: str) -> None:
        super().__init__(description)
        self.description = description

    def to_dict(self) -> dict[str, str]:
        """The JSON error body shared by /api and /ogc."""
        return {"code": self.code, "description": self.description}


class InvalidParameter(GeoserviceError):
    """A request parameter or command argument is not allowed; the message names it and what is allowed."""

    status = 400
    code = "InvalidParameterValue"


class NotFound(GeoserviceError):
    """The thing asked for does not exist."""

    status = 404
    code = "NotFound"


class DatabaseUnavailable(GeoserviceError):
    """The database cannot be reached."""

    status = 503
    code = "DatabaseUnavailable"
    retry_after = 5


class Busy(GeoserviceError):
    """Every slot for whole-city analyses is taken: try again shortly (cheap requests are not affected)."""

    status = 503
    code = "Busy"
    retry_after = 2


class TimedOut(GeoserviceError):
    """The request's work ran past its statement timeout and was stopped."""

    status = 503
    code = "Timeout"
    retry_after = 30


class ConfigError(GeoserviceError):
    """A setting has a value that does not parse or is not allowed."""

    status = 500
    code = "ConfigError"


class EmbeddedDatabaseError(GeoserviceError):
    """The embedded PostgreSQL cluster could not be created, started or stopped."""

    status = 503
    code = "EmbeddedDatabaseError"
