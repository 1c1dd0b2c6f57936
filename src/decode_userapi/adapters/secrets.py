"""Secrets in settings: a plain value, AWS Secrets Manager JSON (`{"password": ...}`), or the ARN of
a Secrets Manager secret, fetched once at start-up (CONTRACT "Settings").

The fetch uses boto3 synchronously, with the region named in the ARN; endpoint and credentials come
from the AWS SDK's own variables (`AWS_ENDPOINT_URL_SECRETS_MANAGER`, `AWS_ENDPOINT_URL`, ...).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable

ARN = re.compile(
    r"^arn:(?P<partition>aws[a-z-]*):secretsmanager:(?P<region>[a-z0-9-]+):(?P<account>\d{12}):secret:(?P<name>.+)$"
)


class SecretError(ValueError):
    """A secret that cannot be read; the message names where it was looked for, never its value."""


def resolve_secret(value: str | None, *, fetch: Callable[[str], str] | None = None) -> str | None:
    """The secret `value` stands for. `fetch(arn)` returns a secret's SecretString (default: boto3)."""
    if value is None:
        return None
    arn = value.strip()
    if ARN.match(arn) is None:
        return _password_or_value(value)
    try:
        secret_string = (fetch or fetch_secret_string)(arn)
    except SecretError:
        raise
    except Exception as e:  # any failure to read it means the same to the caller
        raise SecretError(f"cannot read the secret {arn}: {_describe(e)}") from e
    return _password_or_value(secret_string)


def fetch_secret_string(arn: str) -> str:
    """The SecretString of the Secrets Manager secret `arn`, asked of the region the ARN names."""
    import boto3
    from botocore.config import Config

    match = ARN.match(arn)
    if match is None:
        raise SecretError(f"{arn!r} is not the ARN of a Secrets Manager secret")
    client = boto3.client(
        "secretsmanager",
        region_name=match["region"],
        config=Config(connect_timeout=5, read_timeout=10, retries={"max_attempts": 3, "mode": "standard"}),
    )
    response = client.get_secret_value(SecretId=arn)
    secret_string = response.get("SecretString")
    if not isinstance(secret_string, str):
        raise SecretError(f"the secret {arn} holds binary data, not a string")
    return secret_string


def _password_or_value(value: str) -> str:
    """The "password" of a JSON object (how Secrets Manager stores credentials), else `value` itself."""
    if value.lstrip().startswith("{"):
        try:
            data = json.loads(value)
        except ValueError:
            return value
        password = data.get("password") if isinstance(data, dict) else None
        if isinstance(password, str):
            return password
    return value


def _describe(error: Exception) -> str:
    """`ClientError: An error occurred (ResourceNotFoundException) ...`: botocore names the error code
    and the operation, never the secret's value."""
    message = " ".join(str(error).split())
    return f"{type(error).__name__}: {message}" if message else type(error).__name__
