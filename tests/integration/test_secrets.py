"""resolve_secret: plain values, Secrets Manager JSON, and ARNs fetched from moto's server."""

from __future__ import annotations

import json
import secrets
from typing import Any

import boto3
import pytest

from decode_userapi.adapters.secrets import SecretError, resolve_secret
from tests.fakes.aws import LocalAws


def test_none_stays_none() -> None:
    assert resolve_secret(None) is None


@pytest.mark.parametrize(
    "value",
    [
        "s3cr3t",
        "",
        "{not json",
        '{"username": "decode"}',  # JSON without a password: taken as it is
        '["password"]',
        "arn:aws:s3:::a-bucket",  # an ARN, but not of a secret
    ],
)
def test_plain_values_are_used_as_they_are(value: str) -> None:
    assert resolve_secret(value, fetch=_no_fetch) == value


def test_secrets_manager_json_gives_its_password() -> None:
    value = json.dumps({"username": "decode", "password": "pa:ss{}word", "host": "db"})
    assert resolve_secret(value, fetch=_no_fetch) == "pa:ss{}word"


def test_an_arn_is_fetched_with_the_given_fetch() -> None:
    arn = "arn:aws:secretsmanager:eu-west-1:123456789012:secret:decode/api-key-AbCdEf"
    asked: list[str] = []

    def fetch(name: str) -> str:
        asked.append(name)
        return '{"password": "from-the-store"}'

    assert resolve_secret(f" {arn} ", fetch=fetch) == "from-the-store"
    assert asked == [arn]


def test_a_failing_fetch_names_the_arn() -> None:
    arn = "arn:aws:secretsmanager:eu-west-1:123456789012:secret:decode/missing"

    def fetch(name: str) -> str:
        raise ConnectionError("no route to host")

    with pytest.raises(SecretError, match="decode/missing") as raised:
        resolve_secret(arn, fetch=fetch)
    assert "no route to host" in str(raised.value)


@pytest.fixture
def secretsmanager(local_aws: LocalAws) -> Any:
    return boto3.client("secretsmanager", **local_aws.client_kwargs())


def test_arn_of_a_json_secret_on_the_local_aws(secretsmanager: Any, local_aws: LocalAws) -> None:
    password = secrets.token_urlsafe(16)
    created = secretsmanager.create_secret(
        Name=f"decode/db-{secrets.token_hex(4)}",
        SecretString=json.dumps({"username": "decode", "password": password, "engine": "postgres"}),
    )
    assert created["ARN"].startswith(f"arn:aws:secretsmanager:{local_aws.region}:")
    assert resolve_secret(created["ARN"]) == password


def test_arn_of_a_plain_string_secret_on_the_local_aws(secretsmanager: Any) -> None:
    value = secrets.token_urlsafe(16)
    created = secretsmanager.create_secret(Name=f"decode/key-{secrets.token_hex(4)}", SecretString=value)
    assert resolve_secret(created["ARN"]) == value


def test_missing_arn_raises_a_secret_error_naming_it(local_aws: LocalAws) -> None:
    arn = f"arn:aws:secretsmanager:{local_aws.region}:123456789012:secret:decode/nothing-here-AbCdEf"
    with pytest.raises(SecretError) as raised:
        resolve_secret(arn)
    assert arn in str(raised.value)
    assert "ResourceNotFoundException" in str(raised.value)


def _no_fetch(arn: str) -> str:
    raise AssertionError(f"nothing should be fetched, but {arn} was")
