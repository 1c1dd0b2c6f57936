"""DECODE OpenCloud client: `Client` (sync) and `AsyncClient`, and the `decode-cloud` command line."""

from decode_cloud.aio import AsyncClient, NoProgress, Progress
from decode_cloud.errors import ApiError, AuthError, DecodeCloudError, WaitTimeout
from decode_cloud.models import (
    FINAL_STATUSES,
    Application,
    Attributes,
    FileHTTPRequest,
    FileInfo,
    FilesDown,
    Hardware,
    Job,
    JobCreate,
    JobEvent,
    TransferSummary,
    User,
)
from decode_cloud.sync import Client

__all__ = [
    "FINAL_STATUSES",
    "ApiError",
    "Application",
    "AsyncClient",
    "Attributes",
    "AuthError",
    "Client",
    "DecodeCloudError",
    "FileHTTPRequest",
    "FileInfo",
    "FilesDown",
    "Hardware",
    "Job",
    "JobCreate",
    "JobEvent",
    "NoProgress",
    "Progress",
    "TransferSummary",
    "User",
    "WaitTimeout",
]
