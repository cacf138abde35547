"""The one error hierarchy of CommonWatch.

Every error a user can cause says what was wrong and how to fix it. Third-party
exceptions are translated where they enter (``raise X(...) from exc``); only
``web/`` maps these classes to HTTP statuses and only ``cli/`` to exit codes.

::

    CommonWatchError
    ├── ConfigError                 invalid settings, refused at start-up
    ├── InputError                  the caller sent something we cannot accept
    │   ├── InvalidStixObject       one STIX object breaks STIX 2.1
    │   ├── InvalidPattern          an indicator pattern does not parse
    │   ├── InvalidParameter        a query parameter or option is malformed
    │   └── InputTooLarge           a body, list or value exceeds a size limit
    ├── AuthenticationRequired      no credentials, or credentials that do not match
    ├── PermissionDenied            authenticated, but not allowed to do this
    ├── NotFound                    no such thing, or not visible to the caller
    ├── Conflict                    the request clashes with existing state
    ├── Unavailable                 the server is stopping; retry later
    └── StorageError                the database failed underneath us
"""

from __future__ import annotations


class CommonWatchError(Exception):
    """Root of every error CommonWatch raises on purpose."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class ConfigError(CommonWatchError):
    """Settings are missing or invalid; the process refuses to start."""


class InputError(CommonWatchError):
    """The caller sent input that cannot be accepted."""


class InvalidStixObject(InputError):
    """A STIX object violates STIX 2.1; ``message`` names the property and the rule."""

    def __init__(self, message: str, object_id: str | None = None) -> None:
        super().__init__(message)
        self.object_id = object_id


class InvalidPattern(InputError):
    """An indicator pattern is not valid STIX 2.1 patterning (STIX 2.1 §9)."""


class InvalidParameter(InputError):
    """A query parameter, header or option value is malformed."""


class InputTooLarge(InputError):
    """A request body, list or value is larger than the configured limit."""


class AuthenticationRequired(CommonWatchError):
    """No credentials were given, or they match no active token."""


class PermissionDenied(CommonWatchError):
    """The caller is known but lacks the right for this operation."""


class NotFound(CommonWatchError):
    """The resource does not exist or the caller may not know it exists.

    Both cases raise the same error with the same message: existence of an object
    the caller cannot see is secret (docs/sharing-model.md).
    """


class Conflict(CommonWatchError):
    """The request clashes with existing state (duplicate name, foreign object id...)."""


class Unavailable(CommonWatchError):
    """The server cannot take the request now (it is stopping); it may be retried."""


class StorageError(CommonWatchError):
    """The database failed; the operation was rolled back and nothing was stored."""
