"""`AsyncClient.upload`'s requests, counted on an `httpx.MockTransport` playing the service and S3:
one upload request (`POST /files/{folder}/url`) serves every file of its folder, a reused one that
S3 refuses (expired) is replaced, and a resumed upload looks up no exact size for a file whose listed
(rounded) size already shows it differs; a resumed download asks whether a local file is complete
with a one-byte ranged GET (whose connection stays usable), and only where the listing allows it."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import httpx

from decode_cloud import AsyncClient
from decode_cloud._transfer import may_be_size


class FakeS3Service:
    def __init__(self, listing: list[dict[str, str]] | None = None, refuse_posts: int = 0) -> None:
        self.calls: Counter[str] = Counter()
        self.listing = listing or []
        self.refuse_posts = refuse_posts

    def __call__(self, request: httpx.Request) -> httpx.Response:
        path = request.url.path
        if request.url.host == "bucket":  # the pre-signed requests
            self.calls[f"{request.method} s3"] += 1
            if request.method == "POST" and self.refuse_posts:
                self.refuse_posts -= 1
                return httpx.Response(403, text="<Error><Message>Invalid according to Policy: Policy expired.</Message></Error>")
            if request.method == "POST":
                return httpx.Response(204)
            if "range" in request.headers:
                self.calls["GET s3 one byte"] += 1
                return httpx.Response(206, headers={"content-range": "bytes 0-0/999", "etag": '"x"'}, content=b"x")
            # (a whole GET only comes from the blocking client that moves download bytes: a sync stream)
            return httpx.Response(200, headers={"etag": '"x"', "content-length": "999"}, content=iter([b"x" * 999]))
        self.calls[f"{request.method} {path}"] += 1
        if path.endswith("/url") and request.method == "POST":
            return httpx.Response(201, json={"method": "post", "url": "http://bucket/", "data": {"key": "u/data/run/${filename}"}})
        if path.endswith("/url"):
            return httpx.Response(200, json={"method": "get", "url": "http://bucket/u/data/run/a.bin"})
        if request.method == "GET" and path == "/files/data/run":
            return httpx.Response(200, content=json.dumps(self.listing))
        return httpx.Response(201, json=None)


def folder(tmp_path: Path, files: int) -> Path:
    root = tmp_path / "frames"
    root.mkdir()
    for i in range(files):
        (root / f"f{i:02d}.bin").write_bytes(b"x" * 10)
    return root


async def test_one_upload_request_serves_the_whole_folder(tmp_path: Path):
    service = FakeS3Service()
    async with AsyncClient("http://service", token="t", parallel=1, transport=httpx.MockTransport(service)) as client:
        summary = await client.upload(folder(tmp_path, 20), "data/run")
    assert summary.files_transferred == 20
    assert service.calls["POST /files/data/run/url"] == 1 and service.calls["POST s3"] == 20


async def test_a_reused_upload_request_that_is_refused_is_replaced(tmp_path: Path):
    service = FakeS3Service()
    async with AsyncClient("http://service", token="t", parallel=1, transport=httpx.MockTransport(service)) as client:
        source = folder(tmp_path, 2)
        await client.upload(source / "f00.bin", "data/run/")  # makes the request the next upload reuses
        service.refuse_posts = 1
        assert (await client.upload(source / "f01.bin", "data/run/")).files_transferred == 1
    assert service.calls["POST /files/data/run/url"] == 2 and service.calls["POST s3"] == 3


async def test_a_resumed_upload_looks_up_exact_sizes_only_where_the_listing_allows_a_match(tmp_path: Path):
    listing = [
        {"path": "data/run/f00.bin", "type": "file", "size": "999 Bytes"},
        {"path": "data/run/f01.bin", "type": "file", "size": "10 Bytes"},
    ]
    service = FakeS3Service(listing=listing)
    async with AsyncClient("http://service", token="t", parallel=1, transport=httpx.MockTransport(service)) as client:
        summary = await client.upload(folder(tmp_path, 2), "data/run")
    # f00 (999 Bytes listed, 10 here): sent without a look-up; f01 looked up (999 bytes in S3): sent
    assert summary.files_transferred == 2
    assert service.calls["GET /files/data/run/f01.bin/url"] == 1 and service.calls["GET /files/data/run/f00.bin/url"] == 0


async def test_a_resumed_download_checks_complete_files_with_one_byte(tmp_path: Path):
    listing = [
        {"path": "data/run/a.bin", "type": "file", "size": "999 Bytes"},
        {"path": "data/run/b.bin", "type": "file", "size": "999 Bytes"},
        {"path": "data/run/c.bin", "type": "file", "size": "999 Bytes"},
    ]
    service = FakeS3Service(listing=listing)
    local = tmp_path / "run"
    local.mkdir()
    (local / "a.bin").write_bytes(b"x" * 999)  # complete: skipped after a one-byte GET
    (local / "b.bin").write_bytes(b"x" * 10)  # the listing rules it out: fetched, no probe
    mock = httpx.MockTransport(service)  # downloads move their bytes on a thread, with a blocking client
    async with AsyncClient("http://service", token="t", parallel=1, transport=mock, blocking_transport=mock) as client:
        summary = await client.download("data/run", local)
    assert (summary.files_skipped, summary.files_transferred) == (1, 2)
    assert service.calls["GET s3"] == 3 and service.calls["GET s3 one byte"] == 1
    assert (local / "b.bin").read_bytes() == (local / "c.bin").read_bytes() == b"x" * 999


def test_a_listed_size_rules_out_only_sizes_it_cannot_be():
    assert may_be_size("19 Bytes", 19) and not may_be_size("19 Bytes", 20)
    assert may_be_size("1.0 MB", 999_950) and may_be_size("5.4 MB", 5_368_709) and may_be_size("5.4 MB", 5_449_999)
    assert not may_be_size("5.4 MB", 5_500_000) and not may_be_size("1.2 kB", 1_300)
    assert may_be_size("something else", 3)  # unreadable: looked up
