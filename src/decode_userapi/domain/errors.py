"""Domain errors. Entry points map each class (along its MRO) to one answer."""

from __future__ import annotations


class DomainError(Exception):
    """Base of every error the core raises on purpose; `detail` is safe to show a client."""

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


class InvalidRequest(DomainError):
    """The request is well-formed but not acceptable (HTTP 422)."""


class BadRequest(DomainError):
    """The request is malformed (HTTP 400)."""


class InvalidPath(BadRequest):
    """A path that is not a plain path inside the caller's own tree."""


class MissingInput(BadRequest):
    """A job names an input file or folder that does not exist."""


class WeakPassword(BadRequest):
    """A password that does not meet the policy."""


class WrongPassword(BadRequest):
    """The password does not match the user's."""


class NotFound(DomainError):
    """Missing, or not the caller's (HTTP 404)."""


class UnknownUser(NotFound):
    """No such user in the identity provider."""


class Conflict(DomainError):
    """The request collides with existing state (HTTP 409)."""


class JobNameTaken(Conflict):
    """The user already has a job of that name."""


class UserExists(Conflict):
    """A user of that name exists already."""


class NotAllowed(DomainError):
    """The operation is not allowed on that resource (HTTP 405)."""


class Unauthenticated(DomainError):
    """No credentials, or credentials that do not prove who the caller is (HTTP 401)."""


class Forbidden(DomainError):
    """The caller is known but may not do this (HTTP 403)."""


class PayloadTooLarge(DomainError):
    """A body larger than the configured limit (HTTP 413)."""


class StorageFull(DomainError):
    """The file storage has no room left for this write (HTTP 507); nothing of it was kept."""


class DependencyUnavailable(DomainError):
    """Something we depend on is down; the client may retry later (HTTP 503)."""


class WorkerUnavailable(DependencyUnavailable):
    """The worker-facing API could not be reached or did not take the job; worth trying again.

    `kind` says why, for operators (see `ports.workers.FAULT_KINDS`); `retry_after` is the wait in
    seconds the API asked for, if any.
    """

    def __init__(self, detail: str, *, kind: str = "unavailable", retry_after: float | None = None) -> None:
        super().__init__(detail)
        self.kind = kind
        self.retry_after = retry_after


class WorkerRejected(WorkerUnavailable):
    """The worker-facing API refused this payload for good (400, 409, 422): retrying is pointless."""

    def __init__(self, detail: str) -> None:
        super().__init__(detail, kind="rejected")


class StoreUnavailable(DependencyUnavailable):
    """The database could not be reached."""


class StorageUnavailable(DependencyUnavailable):
    """The file storage could not be reached."""
