"""Issue 11: every part of a request is bounded, and past a bound the answer is 413, 422 or 431 with a
`detail`, never a 5xx: headers, multipart parts, and the fields of a job's JSON."""

from __future__ import annotations

import pytest

from tests.integration.harness import stacks

pytestmark = stacks("local-sqlite")

COMET = {"application": "comet", "version": "v0_1_0", "entrypoint": "correct_drift"}


async def test_too_many_or_too_large_headers_are_431(client, alice) -> None:
    many = {**alice.headers, **{f"x-h{i}": "v" for i in range(120)}}
    r = await client.get("/files/", headers=many)
    assert r.status_code == 431 and "more than 100 headers" in r.json()["detail"]
    r = await client.get("/files/", headers={**alice.headers, "x-big": "a" * (65 * 1024)})
    assert r.status_code == 431 and "larger than" in r.json()["detail"]
    r = await client.get("/files/", headers={**alice.headers, "cookie": "c=" + "a" * 8000})
    assert r.status_code == 200  # ordinary large cookies pass


def multipart(*parts: bytes) -> bytes:
    return b"".join(b"--b\r\n" + part + b"\r\n" for part in parts) + b"--b--\r\n"


FILE_PART = b'content-disposition: form-data; name="file"; filename="f.txt"\r\n\r\nhello'


async def post_multipart(client, alice, body: bytes):
    headers = {**alice.headers, "content-type": "multipart/form-data; boundary=b"}
    return await client.post("/files/data/upload", headers=headers, content=body)


async def test_multipart_parts_are_bounded(client, alice) -> None:
    field = b'content-disposition: form-data; name="note"\r\n\r\nx'
    r = await post_multipart(client, alice, multipart(*[field] * 10, FILE_PART))
    assert r.status_code == 201, r.text  # a few fields before the file are fine
    r = await post_multipart(client, alice, multipart(*[field] * 40, FILE_PART))
    assert r.status_code == 413 and "parts" in r.json()["detail"]
    big_header = b'content-disposition: form-data; name="note"\r\nx-pad: ' + b"a" * 20_000 + b"\r\n\r\nx"
    r = await post_multipart(client, alice, multipart(big_header, FILE_PART))
    assert r.status_code == 422 and "header size" in r.json()["detail"], r.text  # python-multipart's bound
    big_field = b'content-disposition: form-data; name="note"\r\n\r\n' + b"a" * (2 * 1024**2)
    r = await post_multipart(client, alice, multipart(big_field, FILE_PART))
    assert r.status_code == 413 and "other than files" in r.json()["detail"]


@pytest.mark.parametrize(
    ("change", "where"),
    [
        ({"attributes": {"env_vars": {f"K{i}": "v" for i in range(65)}}}, "env_vars"),
        ({"attributes": {"env_vars": {"COMET_SEGMENTATION": "v" * 4097}}}, "env_vars['COMET_SEGMENTATION']"),
        ({"attributes": {"files_down": {"data_ids": ["d"] * 1001}}}, "data_ids"),
        ({"application": {**COMET, "version": "v" * 257}}, "application.version"),
        ({"hardware": {"gpu_model": "g" * 257}}, "hardware.gpu_model"),
        ({"job_name": "a\x00b"}, "job_name"),
        ({"hardware": {"gpu_archi": "\x00"}}, "hardware.gpu_archi"),
        ({"attributes": {"env_vars": {"COMET_SEGMENTATION": "\x00"}}}, "env_vars"),
    ],
)
async def test_job_fields_are_bounded_422_naming_the_field(client, alice, change, where) -> None:
    body = {"job_name": "j", "application": COMET, **change}
    r = await client.post("/jobs", headers=alice.headers, json=body)
    assert r.status_code == 422, r.text
    assert where in r.json()["detail"]
