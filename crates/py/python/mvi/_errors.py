"""The exceptions mvi raises: one class per ``mvi_core::ErrorKind`` under :class:`MviError`."""

from __future__ import annotations

from typing import Optional

__all__ = [
    "MviError", "NotFound", "AlreadyExists", "PreconditionFailed", "InvalidArgument",
    "PermissionDenied", "Unauthenticated", "RateLimited", "Unavailable", "Unsupported",
    "Timeout", "Internal",
]


class MviError(Exception):
    """An error from an mvi service or stack. ``str(e)`` is one sentence naming the service,
    operation and resource; the attributes give them separately."""

    kind: str = "internal error"
    service: Optional[str] = None
    operation: Optional[str] = None
    resource: Optional[str] = None
    retryable: bool = False


class NotFound(MviError, LookupError):
    """The resource does not exist."""


class AlreadyExists(MviError):
    """A resource of that name exists already."""


class PreconditionFailed(MviError):
    """A condition of a conditional operation did not hold."""


class InvalidArgument(MviError, ValueError):
    """An argument was wrong (the message says which and why)."""


class PermissionDenied(MviError, PermissionError):
    """The caller may not do this."""


class Unauthenticated(MviError):
    """The caller's credentials are missing or wrong."""


class RateLimited(MviError):
    """Too many requests; retrying later may help."""


class Unavailable(MviError):
    """The service cannot be reached or is not ready; retrying may help."""


class Unsupported(MviError):
    """The backend does not provide this service or operation."""


class Timeout(MviError, TimeoutError):
    """The operation took too long."""


class Internal(MviError):
    """An unexpected failure inside the backend."""


class DeploymentFailed(MviError):
    """A deployment of a new revision failed and was rolled back to the last good one."""
