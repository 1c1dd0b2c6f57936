"""decode-userapi: the user-facing API of DECODE OpenCloud, as a library and a service.

`UserApi` is the in-process API; `decode_userapi.entrypoints.http.app.create_app` the HTTP one.
"""

from decode_userapi.config import Settings
from decode_userapi.domain.commands import JobCreate, JobFilter, JobPage, JobView, StatusUpdate
from decode_userapi.domain.errors import (
    Conflict,
    DomainError,
    Forbidden,
    InvalidPath,
    InvalidRequest,
    MissingInput,
    NotFound,
    Unauthenticated,
)
from decode_userapi.domain.files import FileInfo, UserPath
from decode_userapi.domain.identity import Principal
from decode_userapi.domain.jobs import ApplicationSpec, FilesDown, HardwareSpec, JobAttributes, JobStatus

__all__ = [
    "ApplicationSpec",
    "Conflict",
    "DomainError",
    "FileInfo",
    "FilesDown",
    "Forbidden",
    "HardwareSpec",
    "InvalidPath",
    "InvalidRequest",
    "JobAttributes",
    "JobCreate",
    "JobFilter",
    "JobPage",
    "JobStatus",
    "JobView",
    "MissingInput",
    "NotFound",
    "Principal",
    "Settings",
    "StatusUpdate",
    "Unauthenticated",
    "UserApi",
    "UserPath",
]


def __getattr__(name: str) -> object:
    # `UserApi` pulls in every adapter's library; import it on first use, not with the package.
    if name == "UserApi":
        from decode_userapi.entrypoints.embedded import UserApi

        return UserApi
    raise AttributeError(f"module 'decode_userapi' has no attribute {name!r}")
