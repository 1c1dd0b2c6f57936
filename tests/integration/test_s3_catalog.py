"""S3CatalogSource on moto's server (`local_aws`): load at start, hot reload by ETag, keep the last
good catalog through bad versions, deleted objects and outages."""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import urlsplit

import aioboto3
import boto3
import pytest
from structlog.testing import capture_logs

from decode_userapi.adapters.catalog.s3 import S3CatalogSource, parse_s3_uri
from decode_userapi.domain.applications import CatalogError
from tests.fakes.aws import LocalAws
from tests.fakes.tcpproxy import TcpProxy
from tests.unit.test_catalog_source import BAD_KEY, FIT, SAMPLE, TRAIN, WITH_FIT

KEY = "config/application_config.yaml"


@pytest.fixture(scope="session")
def admin(local_aws: LocalAws) -> Any:
    """A plain boto3 client, to change the object behind the adapter's back."""
    return boto3.client("s3", **local_aws.client_kwargs())


@pytest.fixture(scope="session")
def aws_session() -> aioboto3.Session:
    return aioboto3.Session()


@pytest.fixture
def bucket(admin: Any, local_aws: LocalAws) -> str:
    name = f"test-{uuid.uuid4().hex}"
    admin.create_bucket(Bucket=name, CreateBucketConfiguration={"LocationConstraint": local_aws.region})
    admin.put_object(Bucket=name, Key=KEY, Body=SAMPLE.encode())
    return name


@pytest.fixture
def uri(bucket: str) -> str:
    return f"s3://{bucket}/{KEY}"


@pytest.fixture
async def proxy(local_aws: LocalAws) -> AsyncIterator[TcpProxy]:
    """A cuttable connection to moto: S3 going away and coming back."""
    target = urlsplit(local_aws.endpoint_url)
    assert target.hostname and target.port
    proxy = await TcpProxy(target.hostname, target.port).start()
    yield proxy
    await proxy.aclose()


def put(admin: Any, bucket: str, text: str | bytes) -> None:
    admin.put_object(Bucket=bucket, Key=KEY, Body=text.encode() if isinstance(text, str) else text)


def entrypoints(catalog: Any) -> set[str]:
    return set(catalog.applications["decode"]["v0_10_1"])


def events(logs: list[dict[str, Any]], name: str) -> list[dict[str, Any]]:
    return [entry for entry in logs if entry["event"] == name]


@pytest.fixture
async def source(uri: str, aws_session: aioboto3.Session) -> AsyncIterator[S3CatalogSource]:
    source = S3CatalogSource(uri, check_interval=0, session=aws_session, max_attempts=1)
    await source.start()
    yield source
    await source.aclose()


# -- loading and reloading ------------------------------------------------------------------------


async def test_loads_at_start(source: S3CatalogSource) -> None:
    catalog = await source.current()
    train = catalog.resolve(TRAIN)
    assert train.handler.files_up == {"log": "log", "artifact": "model"}
    assert catalog.document["decode"]["v0_10_1"]["train"]["aws_resources"]["timeout"] == 18000


async def test_reloads_a_new_version(source: S3CatalogSource, admin: Any, bucket: str) -> None:
    assert entrypoints(await source.current()) == {"train"}
    put(admin, bucket, WITH_FIT)
    with capture_logs() as logs:
        assert entrypoints(await source.current()) == {"train", "fit"}
    (await source.current()).resolve(FIT)
    assert len(events(logs, "catalog.reloaded")) == 1


async def test_an_unchanged_object_keeps_its_catalog(
    source: S3CatalogSource, admin: Any, bucket: str
) -> None:
    good = await source.current()
    with capture_logs() as logs:
        put(admin, bucket, SAMPLE)  # a new upload of the same bytes has the same ETag
        for _ in range(3):
            assert await source.current() is good
    assert logs == []


async def test_checks_at_most_once_per_interval(uri: str, admin: Any, bucket: str) -> None:
    source = S3CatalogSource(uri, check_interval=60)
    await source.start()
    try:
        put(admin, bucket, WITH_FIT)
        assert entrypoints(await source.current()) == {"train"}
    finally:
        await source.aclose()


@pytest.mark.parametrize(
    "broken",
    [BAD_KEY, "decode: [unclosed", "decode:\n  v1: 3\n", b"\xff\xfe not utf-8"],
    ids=["bad-key", "bad-yaml", "bad-shape", "not-utf8"],
)
async def test_a_bad_version_keeps_the_last_good_and_is_logged_once(
    source: S3CatalogSource, admin: Any, bucket: str, uri: str, broken: str | bytes
) -> None:
    good = await source.current()
    put(admin, bucket, broken)
    with capture_logs() as logs:
        for _ in range(3):
            assert await source.current() is good
    failures = events(logs, "catalog.reload_failed")
    assert len(failures) == 1 and uri in failures[0]["error"]
    assert [e["event"] for e in logs] == ["catalog.reload_failed"]

    put(admin, bucket, WITH_FIT)  # fixed again
    (await source.current()).resolve(FIT)


# -- failed checks --------------------------------------------------------------------------------


async def test_a_deleted_object_keeps_the_last_good(source: S3CatalogSource, admin: Any, bucket: str) -> None:
    good = await source.current()
    admin.delete_object(Bucket=bucket, Key=KEY)
    with capture_logs() as logs:
        for _ in range(3):
            assert await source.current() is good
    assert [e["event"] for e in logs] == ["catalog.check_failed"]
    assert KEY in logs[0]["error"]

    put(admin, bucket, WITH_FIT)  # put back
    with capture_logs() as logs:
        assert entrypoints(await source.current()) == {"train", "fit"}
    assert [e["event"] for e in logs] == ["catalog.check_recovered", "catalog.reloaded"]


async def test_an_outage_keeps_the_last_good(
    proxy: TcpProxy, uri: str, admin: Any, bucket: str, aws_session: aioboto3.Session
) -> None:
    source = S3CatalogSource(
        uri,
        check_interval=0,
        endpoint_url=f"http://127.0.0.1:{proxy.port}",
        connect_timeout=0.5,
        max_attempts=1,
        session=aws_session,
    )
    await source.start()
    try:
        good = await source.current()
        await proxy.cut()
        started = time.monotonic()
        with capture_logs() as logs:
            for _ in range(3):
                assert await source.current() is good
        assert time.monotonic() - started < 5
        assert [e["event"] for e in logs] == ["catalog.check_failed"]
        assert "cannot be reached" in logs[0]["error"]

        await proxy.restore()
        put(admin, bucket, WITH_FIT)
        with capture_logs() as logs:
            (await source.current()).resolve(FIT)
        assert [e["event"] for e in logs] == ["catalog.check_recovered", "catalog.reloaded"]
    finally:
        await source.aclose()


async def test_a_closed_source_serves_its_last_catalog(
    source: S3CatalogSource, admin: Any, bucket: str
) -> None:
    good = await source.current()
    await source.aclose()
    put(admin, bucket, WITH_FIT)
    assert await source.current() is good


# -- start-up -------------------------------------------------------------------------------------


async def test_a_bad_object_at_start_names_the_uri_and_the_key(uri: str, admin: Any, bucket: str) -> None:
    put(admin, bucket, BAD_KEY)
    with pytest.raises(CatalogError) as caught:
        await S3CatalogSource(uri).start()
    assert uri in str(caught.value) and "bogus_id" in str(caught.value)


@pytest.mark.parametrize("text", ["decode: [unclosed", "- a list\n- not a mapping\n", b"\xff\xfe"])
async def test_unreadable_objects_at_start(uri: str, admin: Any, bucket: str, text: str | bytes) -> None:
    put(admin, bucket, text)
    with pytest.raises(CatalogError, match=uri):
        await S3CatalogSource(uri).start()


async def test_a_missing_object_at_start(bucket: str) -> None:
    uri = f"s3://{bucket}/nope.yaml"
    with pytest.raises(CatalogError) as caught:
        await S3CatalogSource(uri).start()
    assert uri in str(caught.value) and "no object 'nope.yaml'" in str(caught.value)


async def test_a_missing_bucket_at_start(local_aws: LocalAws) -> None:
    uri = f"s3://missing-{uuid.uuid4().hex}/{KEY}"
    with pytest.raises(CatalogError, match="does not exist") as caught:
        await S3CatalogSource(uri).start()
    assert uri in str(caught.value)


async def test_an_unreachable_s3_at_start(uri: str) -> None:
    source = S3CatalogSource(uri, endpoint_url="http://127.0.0.1:1", connect_timeout=0.5, max_attempts=1)
    with pytest.raises(CatalogError, match="cannot be reached"):
        await source.start()


async def test_current_before_start_is_a_programming_error(uri: str) -> None:
    with pytest.raises(RuntimeError, match="start"):
        await S3CatalogSource(uri).current()


# -- URIs -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("uri", "expected"),
    [
        ("s3://bucket/key.yaml", ("bucket", "key.yaml")),
        ("s3://my.bucket-1/a/b/application config.yaml", ("my.bucket-1", "a/b/application config.yaml")),
    ],
)
def test_parse_s3_uri(uri: str, expected: tuple[str, str]) -> None:
    assert parse_s3_uri(uri) == expected


@pytest.mark.parametrize(
    "uri",
    [
        "",
        "bucket/key.yaml",
        "s3:/bucket/key.yaml",
        "s3:bucket/key.yaml",
        "S3://bucket/key.yaml",
        "https://bucket/key.yaml",
        "s3://",
        "s3://bucket",
        "s3://bucket/",
        "s3:///key.yaml",
        "s3://bucket/folder/",
        "s3:// bucket/key.yaml",
    ],
)
def test_malformed_uris_are_refused(uri: str) -> None:
    with pytest.raises(ValueError, match="s3://bucket/key"):
        parse_s3_uri(uri)
    with pytest.raises(ValueError, match="s3://bucket/key"):
        S3CatalogSource(uri)
