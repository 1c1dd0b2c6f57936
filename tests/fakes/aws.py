"""A local AWS (moto's server) for S3, Cognito and Secrets Manager tests, one per test session."""

from __future__ import annotations

import functools
import os
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

REGION = "eu-central-1"


@dataclass(frozen=True)
class LocalAws:
    endpoint_url: str
    region: str = REGION
    access_key_id: str = "testing"
    secret_access_key: str = "testing"

    def client_kwargs(self) -> dict[str, str]:
        """Keyword arguments for boto3/aioboto3 clients talking to this server."""
        return {
            "endpoint_url": self.endpoint_url,
            "region_name": self.region,
            "aws_access_key_id": self.access_key_id,
            "aws_secret_access_key": self.secret_access_key,
        }


@pytest.fixture(scope="session")
def local_aws() -> Iterator[LocalAws]:
    """moto's server on a free loopback port. The AWS SDK variables point at it for the session,
    as a deployment would set them (AWS_ENDPOINT_URL, credentials, region)."""
    from moto.server import ThreadedMotoServer

    share_botocore_data_loader()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    aws = LocalAws(endpoint_url=f"http://{host}:{port}")
    saved = {k: os.environ.get(k) for k in _ENV}
    os.environ.update(
        AWS_ENDPOINT_URL=aws.endpoint_url,
        AWS_ACCESS_KEY_ID=aws.access_key_id,
        AWS_SECRET_ACCESS_KEY=aws.secret_access_key,
        AWS_DEFAULT_REGION=aws.region,
    )
    try:
        yield aws
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        server.stop()


def share_botocore_data_loader() -> None:
    """One botocore data loader for the whole test process.

    Every app under test builds its own `aioboto3.Session()`, as production does once per process,
    and a new session's loader parses the S3 and Cognito service models, endpoint rules and partition
    data again (~0.15 s per app, measured). The loader only reads botocore's bundled JSON files and
    caches what it read, so sharing it changes no behaviour; sessions, credentials, clients and their
    connections stay per app. Idempotent.
    """
    import botocore.loaders
    import botocore.session

    if not hasattr(botocore.session.create_loader, "cache_info"):
        botocore.session.create_loader = functools.cache(botocore.loaders.create_loader)


_ENV = ("AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION")
