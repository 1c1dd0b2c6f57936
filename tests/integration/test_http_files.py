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
    assert r.status_code == 422 and "recursive" in r.json()["detail"]


async def test_upload_only_into_input_folders(client, alice):
    for folder in ("output", "log", "other", ""):
        r = await upload(client, alice, folder or "", "x.txt", b"x")
        assert 400 <= r.status_code < 500, (folder, r.status_code)
        assert "detail" in r.json()


async def test_upload_without_file_field(client, alice):
    r = await client.post("/files/data/upload", headers=alice.headers, data={"other": "x"})
    assert r.status_code == 422 and "file" in r.json()["detail"]
    r = await client.post("/files/data/upload", headers={**alice.headers, "content-type": "application/json"}, content=b"{}")
    assert r.status_code == 422 and "file" in r.json()["detail"]


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


@pytest.mark.parametrize(
    ("name", "media_type"),
    [
        ("frames.tif", "image/tiff"),
        ("stack.TIFF", "image/tiff"),
        ("param.yaml", "application/yaml"),
        ("param.yml", "application/yaml"),
        ("result.json", "application/json"),
        ("model.unknownext", "application/octet-stream"),
        ("no_extension", "application/octet-stream"),
    ],
)
async def test_download_content_type(client, alice, name, media_type):
    await upload(client, alice, "data", name, b"content")
    r = await client.get(f"/files/data/{name}/download", headers=alice.headers)
    assert r.status_code == 200 and r.content == b"content"
    assert r.headers["content-type"] == media_type
    assert r.headers["content-disposition"] == f"attachment; filename={name}"


async def test_folder_download_content_type(client, alice):
    await upload(client, alice, "data/run", "a.tif", b"a")
    r = await client.get("/files/data/run/download", headers=alice.headers)
    assert r.headers["content-type"] == "application/zip"
    assert r.headers["content-disposition"] == "attachment; filename=run.zip"


async def test_download_url_content_type(client, alice):
    # Local storage: the API's own download; S3: S3 answers the pre-signed GET with the same headers.
    for name, media_type in (("p.yaml", "application/yaml"), ("f.tif", "image/tiff"), ("w.unknownext", "application/octet-stream")):
        await upload(client, alice, "config", name, b"1")
        request = (await client.get(f"/files/config/{name}/url", headers=alice.headers)).json()
        got = await send(client, request)
        assert got.status_code == 200 and got.content == b"1"
        assert got.headers["content-type"] == media_type, name
        assert got.headers["content-disposition"] == f"attachment; filename={name}"


async def test_folder_upload_as_browsers_send_it(client, alice):
    # <input type=file webkitdirectory>: each file's name carries the chosen folder; old Windows
    # browsers send the whole client path. Only the last component counts (RFC 7578).
    r = await upload(client, alice, "data/run", "batch2/frames2.tif", b"t")
    assert r.status_code == 201 and r.json() == {"path": "data/run/frames2.tif", "type": "file", "size": "1 Byte"}
    r = await upload(client, alice, "data/run", "C:\\Users\\ada\\calib.mat", b"c")
    assert r.status_code == 201 and r.json()["path"] == "data/run/calib.mat"
    for bad in ("batch2/", "..", "batch2/..", "a/.", ""):
        r = await upload(client, alice, "data/run", bad, b"x")
        assert r.status_code == 422 and r.json()["detail"], bad
    r = await client.get("/files/data/?recursive=true", headers=alice.headers)
    assert [f["path"] for f in r.json()] == ["data/run/", "data/run/calib.mat", "data/run/frames2.tif"]


async def test_upload_of_several_files(client, alice):
    files = [("file", ("batch/a.tif", b"a")), ("file", ("b.yaml", b"bb")), ("file", ("c", b"ccc"))]
    r = await client.post("/files/data/set/upload", headers=alice.headers, files=files)
    assert r.status_code == 201, r.text
    assert r.json() == [
        {"path": "data/set/a.tif", "type": "file", "size": "1 Byte"},
        {"path": "data/set/b.yaml", "type": "file", "size": "2 Bytes"},
        {"path": "data/set/c", "type": "file", "size": "3 Bytes"},
    ]
    got = await client.get("/files/data/set/b.yaml/download", headers=alice.headers)
    assert got.content == b"bb"


async def test_upload_of_several_files_is_all_or_nothing(client, alice, settings, raw_storage):
    too_big = b"x" * (settings.max_upload_bytes + 1)
    files = [("file", ("a.tif", b"a")), ("file", ("b.tif", b"b")), ("file", ("big.bin", too_big))]
    r = await client.post("/files/data/set/upload", headers=alice.headers, files=files)
    assert r.status_code == 413
    files = [("file", ("a.tif", b"a")), ("file", ("..", b"b"))]
    r = await client.post("/files/data/set/upload", headers=alice.headers, files=files)
    assert r.status_code == 422
    # A folder upload whose subfolders hold files of one name: refused, rather than one replacing the other.
    files = [("file", ("run/a/frame.tif", b"a")), ("file", ("run/b/frame.tif", b"b"))]
    r = await client.post("/files/data/set/upload", headers=alice.headers, files=files)
    assert r.status_code == 409 and "frame.tif" in r.json()["detail"]
    listing = await client.get("/files/data/?recursive=true&show_dirs=false", headers=alice.headers)
    assert listing.json() == []
    assert [k for k in raw_storage.keys(raw_storage.uri(alice, "data/")) if not k.endswith("/")] == []
    assert raw_storage.pending_uploads() == []


async def test_create_folder_only_where_users_upload(client, alice, raw_storage):
    for url in ("/files/output/mine/", "/files/log/mine/", "/files/output/", "/files/other/x/", "/files/"):
        r = await client.post(url, headers=alice.headers)
        r_upload = await upload(client, alice, url.removeprefix("/files/").rstrip("/"), "x.txt", b"x")
        assert r.status_code == r_upload.status_code == 422, (url, r.status_code, r_upload.status_code)
        assert r.json()["detail"]
    assert (await client.get("/files/output/", headers=alice.headers)).json() == []
    assert (await client.get("/files/log/", headers=alice.headers)).json() == []
    assert not raw_storage.exists(raw_storage.uri(alice, "output/mine/"))
    for folder in ("config", "data", "artifact"):
        assert (await client.post(f"/files/{folder}/new/", headers=alice.headers)).status_code == 201
