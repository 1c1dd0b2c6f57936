"""CONTRACT "Files", row by row, over the real app on every stack (local disk or S3; SQLite or PostgreSQL)."""

from __future__ import annotations

import io
import zipfile

import pytest

from tests.integration.harness import S3_ROOT, STORAGE_STACKS, send, stacks

pytestmark = stacks(*STORAGE_STACKS)  # S3 also without PostgreSQL (s3-sqlite)

ROOT = ["artifact/", "config/", "data/", "log/", "output/"]


async def upload(client, user, folder: str, name: str, content: bytes):
    return await client.post(f"/files/{folder}/upload", headers=user.headers, files={"file": (name, content)})


async def test_root_lists_predefined_folders(client, alice):
    r = await client.get("/files/", headers=alice.headers)
    assert r.status_code == 200
    assert r.json() == [{"path": p, "type": "directory", "size": ""} for p in ROOT]
    r2 = await client.get("/files", headers=alice.headers)
    assert r2.status_code == 200 and r2.json() == r.json()


async def test_upload_list_download(client, alice):
    r = await upload(client, alice, "data/run1", "frames.tif", b"x" * 1200)
    assert r.status_code == 201, r.text
    assert r.json() == {"path": "data/run1/frames.tif", "type": "file", "size": "1.2 kB"}
    await upload(client, alice, "data", "calib.mat", b"c" * 19)

    r = await client.get("/files/data", headers=alice.headers)
    assert r.json() == [
        {"path": "data/calib.mat", "type": "file", "size": "19 Bytes"},
        {"path": "data/run1/", "type": "directory", "size": ""},
    ]
    r = await client.get("/files/data/?recursive=TRUE&show_dirs=False", headers=alice.headers)
    assert [f["path"] for f in r.json()] == ["data/calib.mat", "data/run1/frames.tif"]
    r = await client.get("/files/?recursive=true", headers=alice.headers)
    assert "data/run1/frames.tif" in [f["path"] for f in r.json()]

    r = await client.get("/files/data/run1/frames.tif/download", headers=alice.headers)
    assert r.status_code == 200 and r.content == b"x" * 1200
    assert r.headers["content-disposition"] == "attachment; filename=frames.tif"


async def test_listing_is_in_the_order_of_the_paths(client, alice):
    # " ", "-" and "." sort before the "/" that ends a folder's path.
    for folder, name in (("data/a", "x"), ("data", "a b"), ("data/a-b", "y"), ("data", "a.txt")):
        assert (await upload(client, alice, folder, name, b"1")).status_code == 201
    r = await client.get("/files/data/?recursive=true", headers=alice.headers)
    paths = ["data/a b", "data/a-b/", "data/a-b/y", "data/a.txt", "data/a/", "data/a/x"]
    assert [f["path"] for f in r.json()] == paths


async def test_list_errors(client, alice):
    await upload(client, alice, "data", "a.txt", b"a")
    assert (await client.get("/files/data/missing/", headers=alice.headers)).status_code == 404
    assert (await client.get("/files/data/a.txt", headers=alice.headers)).status_code == 404
    r = await client.get("/files/?recursive=maybe", headers=alice.headers)
    assert r.status_code == 400 and "recursive" in r.json()["detail"]


async def test_upload_only_into_input_folders(client, alice):
    for folder in ("output", "log", "other", ""):
        r = await upload(client, alice, folder or "", "x.txt", b"x")
        assert 400 <= r.status_code < 500, (folder, r.status_code)
        assert "detail" in r.json()


async def test_upload_without_file_field(client, alice):
    r = await client.post("/files/data/upload", headers=alice.headers, data={"other": "x"})
    assert r.status_code == 400 and r.json()["detail"]
    r = await client.post("/files/data/upload", headers={**alice.headers, "content-type": "application/json"}, content=b"{}")
    assert r.status_code == 400


async def test_upload_too_large_leaves_nothing(client, alice, settings, raw_storage):
    r = await upload(client, alice, "data", "big.bin", b"x" * (settings.max_upload_bytes + 1))
    assert r.status_code == 413 and "limit" in r.json()["detail"]
    listing = await client.get("/files/data/?recursive=true", headers=alice.headers)
    assert listing.json() == []
    assert raw_storage.keys(raw_storage.uri(alice, "data/")) == []
    assert raw_storage.pending_uploads() == []


async def test_upload_url(client, alice, settings):
    r = await client.post("/files/data/run1/url", headers=alice.headers)
    assert r.status_code == 201
    body = r.json()
    assert body["method"] == "post"
    if settings.filesystem == "s3":
        # A pre-signed POST: the form fields go with the file, no credentials of ours.
        assert body["url"].rstrip("/").endswith(settings.s3_bucket) and body["headers"] == {}
        assert body["data"]["key"] == f"{S3_ROOT}/alice@example.org/data/run1/${{filename}}"
        assert {"policy", "x-amz-signature"} <= set(body["data"])
    else:
        assert body["url"].endswith("/files/data/run1/upload")
        assert body["headers"] == {"authorization": alice.headers["Authorization"]}
        assert body["data"] == {}
    # The client sends it as it is (to S3 with a plain HTTP client, as a browser would) ...
    sent = await send(client, body, files={"file": ("f.txt", b"hello")})
    assert sent.is_success, sent.text
    # ... and finds the file through the API.
    r = await client.get("/files/data/run1/", headers=alice.headers)
    assert r.json() == [{"path": "data/run1/f.txt", "type": "file", "size": "5 Bytes"}]
    r = await client.get("/files/data/run1/f.txt/download", headers=alice.headers)
    assert r.status_code == 200 and r.content == b"hello"


async def test_download_url(client, alice, settings):
    await upload(client, alice, "config", "p.yaml", b"a: 1")
    r = await client.get("/files/config/p.yaml/url", headers=alice.headers)
    assert r.status_code == 200
    body = r.json()
    assert body["method"] == "get"
    if settings.filesystem == "s3":
        assert f"/{settings.s3_bucket}/{S3_ROOT}/alice%40example.org/config/p.yaml?" in body["url"]
        assert "X-Amz-Signature=" in body["url"] and body["headers"] == {}
    else:
        assert body["url"].endswith("/files/config/p.yaml/download")
        assert body["headers"] == {"authorization": alice.headers["Authorization"]}
    got = await send(client, body)
    assert got.status_code == 200 and got.content == b"a: 1"
    assert (await client.get("/files/config/nope.yaml/url", headers=alice.headers)).status_code == 404


async def test_create_folder(client, alice):
    r = await client.post("/files/data/new/sub/", headers=alice.headers)
    assert r.status_code == 201
    r = await client.get("/files/data/new/", headers=alice.headers)
    assert r.json() == [{"path": "data/new/sub/", "type": "directory", "size": ""}]


async def test_rename(client, alice):
    await upload(client, alice, "data", "a.txt", b"a")
    r = await client.put("/files/data/a.txt", headers=alice.headers, json={"path": "data/moved/b.txt"})
    assert r.status_code == 200, r.text
    assert r.json() == {"path": "data/moved/b.txt", "type": "file", "size": "1 Byte"}
    assert (await client.put("/files/data/a.txt", headers=alice.headers, json={"path": "data/c"})).status_code == 404
    # A non-empty folder, and the predefined ones, cannot be renamed.
    assert (await client.put("/files/data/moved/", headers=alice.headers, json={"path": "data/m2/"})).status_code == 405
    assert (await client.put("/files/data/", headers=alice.headers, json={"path": "data2/"})).status_code == 405
    # An empty folder can.
    await client.post("/files/data/empty/", headers=alice.headers)
    r = await client.put("/files/data/empty", headers=alice.headers, json={"path": "data/full"})
    assert r.status_code == 200 and r.json()["path"] == "data/full/"
    # Onto an existing path: conflict.
    await upload(client, alice, "data", "x.txt", b"x")
    r = await client.put("/files/data/x.txt", headers=alice.headers, json={"path": "data/moved/b.txt"})
    assert r.status_code == 409


async def test_delete(client, alice):
    await upload(client, alice, "data/run", "a.txt", b"a")
    assert (await client.delete("/files/data/run/a.txt", headers=alice.headers)).status_code == 204
    assert (await client.delete("/files/data/run/a.txt", headers=alice.headers)).status_code == 204
    await upload(client, alice, "data/run", "b.txt", b"b")
    assert (await client.delete("/files/data/run", headers=alice.headers)).status_code == 204
    assert (await client.get("/files/data/", headers=alice.headers)).json() == []


async def test_deleting_predefined_folders_recreates_them(client, alice):
    await upload(client, alice, "data", "a.txt", b"a")
    assert (await client.delete("/files/data/", headers=alice.headers)).status_code == 204
    assert (await client.get("/files/data/", headers=alice.headers)).json() == []
    await upload(client, alice, "config", "c.yaml", b"c")
    assert (await client.delete("/files/", headers=alice.headers)).status_code == 204
    r = await client.get("/files/?recursive=true", headers=alice.headers)
    assert [f["path"] for f in r.json()] == ROOT


async def test_folder_download_is_a_zip(client, alice):
    await upload(client, alice, "data/run", "a.txt", b"alpha")
    await upload(client, alice, "data/run/sub", "b.bin", bytes(range(256)) * 100)
    r = await client.get("/files/data/run/download", headers=alice.headers)
    assert r.status_code == 200
    assert r.headers["content-disposition"] == "attachment; filename=run.zip"
    archive = zipfile.ZipFile(io.BytesIO(r.content))
    assert archive.testzip() is None
    assert sorted(archive.namelist()) == ["a.txt", "sub/b.bin"]
    assert archive.read("sub/b.bin") == bytes(range(256)) * 100
    assert (await client.get("/files/data/none/download", headers=alice.headers)).status_code == 404


async def test_unicode_filename_download_header(client, alice):
    await upload(client, alice, "data", "déjà vu.txt", b"x")
    r = await client.get("/files/data/d%C3%A9j%C3%A0%20vu.txt/download", headers=alice.headers)
    assert r.status_code == 200
    assert r.headers["content-disposition"] == (
        "attachment; filename=\"d_j_ vu.txt\"; filename*=UTF-8''d%C3%A9j%C3%A0%20vu.txt"
    )


@pytest.mark.parametrize(
    "attack",
    ["..%2Fbob", "%2e%2e/bob", "..%252Fbob", "data%2F..%2F..%2Fbob", "data/..%5C..%5Cbob", "%2F%2Fbob", "data/%00"],
)
async def test_no_path_leaves_the_tree(client, alice, bob, attack):
    await upload(client, bob, "data", "secret.txt", b"bob's data")
    for method, url in [
        ("GET", f"/files/{attack}/"),
        ("GET", f"/files/{attack}/data/secret.txt/download"),
        ("DELETE", f"/files/{attack}/data/secret.txt"),
        ("DELETE", f"/files/{attack}"),
        ("POST", f"/files/data/{attack}/x/"),
    ]:
        r = await client.request(method, url, headers=alice.headers)
        assert r.status_code < 500, (method, url)
        if r.status_code < 300:
            assert b"bob's data" not in r.content
    r = await client.put("/files/data/", headers=alice.headers, json={"path": "../bob/data/x"})
    assert 400 <= r.status_code < 500
    got = await client.get("/files/data/secret.txt/download", headers=bob.headers)
    assert got.content == b"bob's data"


async def test_needs_a_token(client, alice):
    for method, url in [("GET", "/files/"), ("POST", "/files/data/x/"), ("DELETE", "/files/data/x")]:
        r = await client.request(method, url)
        assert r.status_code == 401 and r.json()["detail"]
        r = await client.request(method, url, headers={"Authorization": "Bearer not-a-token"})
        assert r.status_code == 401


async def test_users_group_is_required(client):
    from tests.integration.harness import make_user

    outsider = await make_user(client, "outsider", groups=["guests"])
    r = await client.get("/files/", headers=outsider.headers)
    assert r.status_code == 403
