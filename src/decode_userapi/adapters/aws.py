"""What the S3 adapters (file storage, application config) share: one way to configure a client."""

from __future__ import annotations

from botocore.config import Config


def s3_client_config(
    region: str | None,
    *,
    connect_timeout: float,
    read_timeout: float,
    max_attempts: int,
    addressing_style: str | None = None,
) -> Config:
    """SigV4, the given timeouts, and standard retries (`max_attempts` counts the first try)."""
    return Config(
        region_name=region,
        signature_version="s3v4",
        s3={"addressing_style": addressing_style} if addressing_style else None,
        connect_timeout=connect_timeout,
        read_timeout=read_timeout,
        retries={"total_max_attempts": max_attempts, "mode": "standard"},
    )
