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


class MissingExtension(GeoserviceError):
    """PostGIS or pgRouting is not in the database and cannot be created by the connecting role (or server)."""

    status = 503
    code = "MissingExtension"


class BackupError(GeoserviceError):
    """A backup could not be made or restored; the message says why and what to do."""

    status = 500
    code = "BackupError"


class EmbeddedDatabaseError(GeoserviceError):
    """The embedded PostgreSQL cluster could not be created, started or stopped."""

    status = 503
    code = "EmbeddedDatabaseError"


class InvalidFeature(InvalidParameter):
    """A feature sent to be written breaks a rule: ``errors`` maps each field (``geometry`` for the shape) to why.

    The body carries them as ``errors: [{"field", "reason"}]`` next to the usual code and description, so that a
    form can show each one beside its field.
    """

    def __init__(self, errors: dict[str, str]) -> None:
        super().__init__("; ".join(f"{name}: {reason}" for name, reason in errors.items()))
        self.errors = dict(errors)

    def to_dict(self) -> dict:
        """The error body, with each field's reason."""
        body: dict = super().to_dict()
        body["errors"] = [{"field": name, "reason": reason} for name, reason in self.errors.items()]
        return body


class Unauthorized(GeoserviceError):
    """The request changes data and carries no valid login or token."""

    status = 401
    code = "Unauthorized"


class Forbidden(GeoserviceError):
    """The user is known but their role (or their squad's grids, or their assigned points) does not allow this."""

    status = 403
    code = "Forbidden"


class Conflict(GeoserviceError):
    """The change cannot be made in the data's current state (a name already taken, a feature still referenced)."""

    status = 409
    code = "Conflict"


class PreconditionFailed(GeoserviceError):
    """``If-Match`` names a version of the feature that is no longer current: someone changed it meanwhile."""

    status = 412
    code = "PreconditionFailed"


class PreconditionRequired(GeoserviceError):
    """A write without ``If-Match``: the client must say which version of the feature it read."""

    status = 428
    code = "PreconditionRequired"


class TooManyAttempts(GeoserviceError):
    """Too many failed logins for this account or from this address: try again after ``retry_after`` seconds."""

    status = 429
    code = "TooManyAttempts"

    def __init__(self, description: str, *, retry_after: int) -> None:
        super().__init__(description)
        self.retry_after = retry_after
