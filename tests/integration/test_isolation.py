"""Issue 5, acceptance: an attacker with a valid token tries every hostile spelling of a path on every
endpoint and in every JSON and multipart field, on every stack (local disk and S3).

alice attacks, bob is the victim. For each endpoint and each hostile form aimed at bob's tree the test
asserts one of two outcomes, chosen per form:
- `refused`: the path is not a path (`..`, encoded traversal, NUL, backslash, look-alikes that fold to
  `.`/`/`, invalid UTF-8, too long): 400 with a `detail`;
- `confined`: the path is a legal name, and the request acts on alice's own tree at that name (the
  expected answer is what the contract gives for that path in alice's tree; any 2xx is checked to
  have landed there).
Afterwards bob's tree (listing and bytes, through the API and in storage), bob's jobs and everything
in storage outside alice's tree are exactly as before, and no answer is a 5xx.

httpx normalises `..` segments in URLs (`/files/data/../x` goes out as `/files/x`), so file routes are
called through `raw_request`, which hands the app an ASGI request with the path bytes as given, as an
ASGI server does; `test_raw_requests_reach_the_app_unnormalised` shows the difference.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote

import httpx
import pytest

from tests.integration.harness import S3_ROOT, STORAGE_STACKS, RawStorage, User, outbox_drained, stacks

pytestmark = stacks(*STORAGE_STACKS)  # S3 also without PostgreSQL (s3-sqlite)

TRAIN = {"application": "decode", "version": "v0_10_1", "entrypoint": "train"}
ROOT_FOLDERS = ("config", "data", "artifact", "output", "log")
INPUT_FOLDERS = ("config", "data", "artifact")
BOB_FILES = {
    "data/secret.txt": b"bob's unpublished data\n",
    "data/run1/frames.tif": b"\x00\x01frames of bob\xff" * 50,
    "config/cfg/param.yaml": b"bob: config\n",
    "artifact/model/model.pt": b"bob's model weights",
}
ALICE_FILES = {"data/mine.txt": b"alice's own file\n", "config/acfg/param.yaml": b"alice: config\n"}


# --- sending requests exactly as written ---------------------------------------------------------


async def raw_request(
    client: Any, method: str, raw_path: str, *, headers: dict[str, str] | None = None, body: bytes = b""
) -> httpx.Response:
    """Call the app with this exact request target (ASCII, already percent-encoded), as uvicorn would:
    `raw_path` as sent, `path` percent-decoded once, the query string split off."""
    target = raw_path.encode("latin-1")
    path_part, _, query = target.partition(b"?")
    header_list = [(b"host", b"testserver.local"), (b"content-length", str(len(body)).encode())]
    header_list += [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in (headers or {}).items()]
    scope = {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": unquote(path_part.decode("ascii")),
        "raw_path": path_part,
        "root_path": "",
        "query_string": query,
        "headers": header_list,
        "client": ("testclient", 50000),
        "server": ("testserver.local", 80),
        "state": {},
    }

    async def run() -> tuple[int, list[tuple[bytes, bytes]], bytes]:
        sent_body = False
        status, response_headers, chunks = 0, [], []
        finished = asyncio.Event()

        async def receive() -> dict[str, Any]:
            nonlocal sent_body
            if not sent_body:
                sent_body = True
                return {"type": "http.request", "body": body, "more_body": False}
            await finished.wait()  # the client stays connected until the whole answer has arrived
            return {"type": "http.disconnect"}

        async def send(message: dict[str, Any]) -> None:
            nonlocal status, response_headers
            if message["type"] == "http.response.start":
                status, response_headers = message["status"], message.get("headers", [])
            elif message["type"] == "http.response.body":
                chunks.append(message.get("body", b""))
                if not message.get("more_body", False):
                    finished.set()

        try:
            await client.app(scope, receive, send)
        finally:
            finished.set()
        return status, response_headers, b"".join(chunks)

    # The test client runs the app (and its database and S3 clients) on its own event loop, in a
    # thread; so do we, blocking this loop meanwhile, as the test client's own requests do.
    status, response_headers, content = client.blocking_portal.call(run)
    request = httpx.Request(method, f"http://testserver.local{path_part.decode('latin-1')}")
    return httpx.Response(status, headers=response_headers, content=content, request=request)


def multipart(filename: bytes, content: bytes) -> tuple[bytes, str]:
    """A multipart body with a `file` part whose filename is these exact bytes (no client escaping)."""
    boundary = uuid.uuid4().hex
    body = (
        f"--{boundary}\r\n".encode()
        + b'Content-Disposition: form-data; name="file"; filename="' + filename + b'"\r\n'
        + b"Content-Type: application/octet-stream\r\n\r\n"
        + content
        + f"\r\n--{boundary}--\r\n".encode()
    )
    return body, f"multipart/form-data; boundary={boundary}"


def enc(path: str) -> str:
    """A path of alice's tree as a client writes it in a URL."""
    return quote(path, safe="/")


# --- the hostile forms -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Form:
    """A spelling of "bob's `target`", written from inside one of alice's folders.

    `spell(target, start)` is the raw, percent-encoded text that leads from alice's folder `start`
    (`"data"`, as seen from her root, in URLs; `""`, the folder itself, for job input ids) two levels
    up and into bob's tree. `confined(target)` is the path in alice's tree the URL form means when it is
    a legal path, or None when it must be refused."""

    name: str
    spell: Callable[[str, str], str]
    confined: Callable[[str], str] | None = None


def _path(start: str, sep: str, *parts: str) -> str:
    return sep.join([start, *parts] if start else parts)


def _via(dots: str, sep: str) -> Callable[[str, str], str]:
    """`<start>/../../bob/<target>` with `..` and `/` spelled as given."""
    return lambda target, start: _path(start, sep, dots, dots, "bob", *target.split("/"))


def _plain(*head: str) -> Callable[[str, str], str]:
    """`<start>/<head...>/bob/<target>` with plain slashes."""
    return lambda target, start: _path(start, "/", *head, "bob", target)


FULLWIDTH_DOT = quote("\uff0e")  # ．
ONE_DOT_LEADER = quote("\u2024")  # ․ (NFKC: ".")
TWO_DOT_LEADER = quote("\u2025")  # ‥ (NFKC: "..")
DIVISION_SLASH = "\u2215"  # ∕
FRACTION_SLASH = "\u2044"  # ⁄
FULLWIDTH_SOLIDUS = quote("\uff0f")  # ／ (NFKC: "/")
FULLWIDTH_BACKSLASH = quote("\uff3c")  # ＼ (NFKC: "\")


def _one_name(sep: str) -> tuple[Callable[[str, str], str], Callable[[str], str]]:
    """A look-alike separator that folds to nothing: all of it is one name inside alice's folder."""
    def text(target: str) -> str:
        return sep.join(["..", "..", "bob", *target.split("/")])

    return (lambda target, start: _path(start, "/", quote(text(target)))), (lambda target: f"data/{text(target)}")


FORMS = [
    Form("dotdot", _via("..", "/")),
    Form("dotdot-once", lambda t, start: f"../bob/{t}"),
    Form("dot-dotdot", _plain(".", "..", "..")),
    Form("pct-dotdot", _via("%2e%2e", "/")),
    Form("pct-dotdot-upper", _via("%2E%2E", "/")),
    Form("pct-half-dotdot", _via(".%2e", "/")),
    Form("double-pct-dotdot", _via("%252e%252e", "/")),
    Form("double-pct-slash", _via("..", "%252F")),
    Form("pct-slash", _via("..", "%2F")),
    Form("dotdot-pct2f-lower", _plain("..%2f..%2f")),
    Form("all-pct", _via("%2e%2e", "%2f")),
    Form("backslash", _via("..", "\\")),
    Form("pct-backslash", _via("..", "%5C")),
    Form("mixed-slashes", _plain("..\\..")),
    Form("double-slash", lambda t, start: f"/bob/{t}", confined=lambda t: f"bob/{t}"),
    Form("pct-double-slash", lambda t, start: f"%2F%2Fbob/{t}", confined=lambda t: f"bob/{t}"),
    Form("double-slash-dotdot", _via("..", "//")),
    Form("nul", _via("..%00", "/")),
    Form("nul-after-name", _plain("x%00", "..", "..", "..")),
    Form("overlong", _plain("a" * 5000, "..", "..", "..")),
    Form("many-dotdots", lambda t, start: "../" * 1700 + f"bob/{t}"),
    Form("fullwidth-dots", _via(FULLWIDTH_DOT * 2, "/")),
    Form("one-dot-leaders", _via(ONE_DOT_LEADER * 2, "/")),
    Form("two-dot-leader", _via(TWO_DOT_LEADER, "/")),
    Form("fullwidth-solidus", _via("..", FULLWIDTH_SOLIDUS)),
    Form("fullwidth-backslash", _via("..", FULLWIDTH_BACKSLASH)),
    Form("division-slash", *_one_name(DIVISION_SLASH)),
    Form("fraction-slash", *_one_name(FRACTION_SLASH)),
    Form("trailing-dots", _via("...", "/")),
    Form("trailing-space", _via("..%20", "/")),
    Form("trailing-dot-space", _via("..%20.", "/")),
    Form("overlong-utf8-dot", _via("%c0%ae%c0%ae", "/")),
    Form("overlong-utf8-slash", _via("..", "%c0%af")),
    Form("semicolon", _via("..;", "/"), confined=lambda t: f"data/..;/..;/bob/{t}"),
    Form("iis-unicode", _via("%u002e%u002e", "/"), confined=lambda t: f"data/%u002e%u002e/%u002e%u002e/bob/{t}"),
]


def absolute_forms(settings: Any) -> list[Form]:
    """Absolute spellings of bob's tree as storage names it (a disk path, or the S3 key prefix)."""
    root = settings.user_data_root_path if settings.filesystem == "s3" else str(raw_root(settings))
    root = root.strip("/")
    return [
        Form("abs-storage-path", lambda t, start: f"/{enc(root)}/bob/{t}", confined=lambda t: f"{root}/bob/{t}"),
        Form(
            "pct-abs-storage-path", lambda t, start: f"%2F{enc(root)}/bob/{t}", confined=lambda t: f"{root}/bob/{t}"
        ),
        Form("abs-storage-dotdot", lambda t, start: f"/{enc(root)}/alice@example.org/../bob/{t}"),
    ]


def raw_root(settings: Any) -> Path:
    return Path(settings.user_data_root_path).resolve()


# --- what may and may not change -------------------------------------------------------------------


async def api_snapshot(client: Any, user: User) -> dict[str, Any]:
    """A user's tree (every entry, every file's bytes) and jobs, as that user sees them."""
    r = await client.get("/files/?recursive=true", headers=user.headers)
    assert r.status_code == 200, r.text
    tree: dict[str, bytes | None] = {}
    for entry in r.json():
        if entry["type"] == "directory":
            tree[entry["path"]] = None
            continue
        got = await client.get(f"/files/{enc(entry['path'])}/download", headers=user.headers)
        assert got.status_code == 200, (entry, got.status_code)
        tree[entry["path"]] = got.content
    jobs = await client.get("/jobs", headers=user.headers)
    assert jobs.status_code == 200
    return {"tree": tree, "jobs": [(j["id"], j["job_name"], j["paths_out"]) for j in jobs.json()]}


def storage_snapshot(raw: RawStorage, alice: User, bob: User) -> dict[str, Any]:
    """Behind the app's back: bob's stored bytes, and every name in storage outside alice's tree."""
    bob_uri = raw.uri(bob)
    bob_bytes = {k: raw.read(bob_uri + k) for k in raw.keys(bob_uri) if not k.endswith("/")}
    if raw.is_s3:
        everything = raw.keys(f"s3://{raw.settings.s3_bucket}/")
        alice_prefix = f"{S3_ROOT}/{alice.name}/"
    else:
        data_dir = raw_root(raw.settings).parent
        everything = raw.keys(str(data_dir))
        alice_prefix = f"{raw_root(raw.settings).relative_to(data_dir)}/{alice.name}/"
    outside = sorted(k for k in everything if not k.startswith(alice_prefix))
    return {"bob": bob_bytes, "outside_alice": outside}


@dataclass
class Scene:
    client: Any
    alice: User
    bob: User
    raw: RawStorage
    settings: Any
    bob_job: dict[str, Any]

    async def snapshot(self) -> dict[str, Any]:
        return {
            "bob_api": await api_snapshot(self.client, self.bob),
            "storage": storage_snapshot(self.raw, self.alice, self.bob),
        }

    async def alice_tree(self) -> dict[str, bytes | None]:
        return (await api_snapshot(self.client, self.alice))["tree"]

    async def reset_alice(self) -> None:
        """Alice's own files, as at the start (earlier cases may have renamed or deleted them)."""
        for path, content in ALICE_FILES.items():
            folder, name = path.rsplit("/", 1)
            r = await self.client.post(
                f"/files/{folder}/upload", headers=self.alice.headers, files={"file": (name, content)}
            )
            assert r.status_code == 201, r.text


async def upload_as(client: Any, user: User, path: str, content: bytes) -> None:
    folder, name = path.rsplit("/", 1)
    r = await client.post(f"/files/{folder}/upload", headers=user.headers, files={"file": (name, content)})
    assert r.status_code == 201, r.text


@pytest.fixture
async def scene(client, alice, bob, raw_storage, settings, fake_workerfacing) -> Scene:
    for path, content in BOB_FILES.items():
        await upload_as(client, bob, path, content)
    r = await client.post(
        "/jobs",
        headers=bob.headers,
        json={
            "job_name": "bobs_job",
            "application": TRAIN,
            "attributes": {"files_down": {"config_id": "cfg", "data_ids": ["run1"], "artifact_ids": ["model"]}},
        },
    )
    assert r.status_code == 201, r.text
    await outbox_drained(client)  # bob's job has reached the worker-facing API: later counts are the test's
    for path, content in ALICE_FILES.items():
        await upload_as(client, alice, path, content)
    return Scene(client, alice, bob, raw_storage, settings, r.json())


def assert_refused(r: httpx.Response, what: str) -> None:
    assert r.status_code == 400, (what, r.status_code, r.text)
    assert r.json()["detail"], what


def assert_not_5xx(r: httpx.Response, what: str) -> None:
    assert r.status_code < 500, (what, r.status_code, r.text)


BOB_MARKERS = [b"bob's unpublished", b"frames of bob", b"bob: config", b"bob's model"]


def assert_no_bob_bytes(r: httpx.Response, what: str) -> None:
    for marker in BOB_MARKERS:
        assert marker not in r.content, what


# --- file endpoints, URL paths ---------------------------------------------------------------------


@dataclass(frozen=True)
class Endpoint:
    """One file route: the request for a spelled path, and the answer expected for a confined one."""

    name: str
    target: str  # what of bob's it aims at
    method: str
    suffix: str  # after the spelled path
    expect: Callable[[str], int]  # confined alice path -> status


def _top(path: str) -> str:
    return path.split("/", 1)[0]


ENDPOINTS = [
    Endpoint("list", "data/", "GET", "", lambda p: 404),
    Endpoint("list-root", "", "GET", "", lambda p: 404),
    Endpoint("download", "data/secret.txt", "GET", "/download", lambda p: 404),
    Endpoint("download-folder", "data/", "GET", "/download", lambda p: 404),
    Endpoint("url-for-download", "data/secret.txt", "GET", "/url", lambda p: 404),
    Endpoint("upload", "data/", "POST", "/upload", lambda p: 201 if _top(p) in INPUT_FOLDERS else 422),
    Endpoint("url-for-upload", "data/", "POST", "/url", lambda p: 201 if _top(p) in INPUT_FOLDERS else 422),
    Endpoint("mkdir", "data/newdir/", "POST", "", lambda p: 201 if _top(p) in INPUT_FOLDERS else 422),
    Endpoint("rename-source", "data/secret.txt", "PUT", "", lambda p: 404),
    Endpoint("delete-file", "data/secret.txt", "DELETE", "", lambda p: 204),
    Endpoint("delete-folder", "data/", "DELETE", "", lambda p: 204),
    Endpoint("delete-root", "", "DELETE", "", lambda p: 204),
]


async def call(scene: Scene, endpoint: Endpoint, spelled: str) -> httpx.Response:
    raw = f"/files/{spelled}{endpoint.suffix}"
    if endpoint.name == "mkdir" and not raw.endswith("/"):
        raw += "/"
    headers = dict(scene.alice.headers)
    body = b""
    if endpoint.name == "upload":
        body, headers["content-type"] = multipart(b"secret.txt", b"overwritten by alice")
    elif endpoint.name == "rename-source":
        body, headers["content-type"] = json.dumps({"path": "data/stolen.txt"}).encode(), "application/json"
    return await raw_request(scene.client, endpoint.method, raw, headers=headers, body=body)


async def check_confined_effect(scene: Scene, endpoint: Endpoint, path: str, r: httpx.Response) -> None:
    """A 2xx on a confined path: it happened at `path` in alice's tree, and shows nothing of bob's."""
    assert_no_bob_bytes(r, endpoint.name)
    if endpoint.name == "upload":
        expected = f"{path.rstrip('/')}/secret.txt"
        assert r.json()["path"] == expected
        assert (await scene.alice_tree())[expected] == b"overwritten by alice"
    elif endpoint.name == "url-for-upload":
        request = r.json()
        if scene.settings.filesystem == "s3":
            assert request["data"]["key"].startswith(f"{S3_ROOT}/{scene.alice.name}/data/")
        else:  # a POST to this API's own upload route for that folder, with alice's token
            assert request["url"].endswith("/upload") and request["method"] == "post"
            assert request["headers"] == {"authorization": scene.alice.headers["Authorization"]}
    elif endpoint.name == "mkdir":
        assert f"{path.rstrip('/')}/" in await scene.alice_tree()


@pytest.mark.parametrize("endpoint", ENDPOINTS, ids=[e.name for e in ENDPOINTS])
async def test_hostile_paths_in_urls(scene: Scene, endpoint: Endpoint) -> None:
    before = await scene.snapshot()
    outcomes: dict[str, int] = {}
    for form in [*FORMS, *absolute_forms(scene.settings)]:
        r = await call(scene, endpoint, form.spell(endpoint.target, "data"))
        what = f"{endpoint.name} {form.name}"
        outcomes[form.name] = r.status_code
        assert_not_5xx(r, what)
        assert_no_bob_bytes(r, what)
        if form.confined is None:
            assert_refused(r, what)
            continue
        path = form.confined(endpoint.target)
        assert r.status_code == endpoint.expect(path), (what, path, r.status_code, r.text)
        if r.is_success:
            await check_confined_effect(scene, endpoint, path, r)
    assert await scene.snapshot() == before, outcomes


async def test_rename_target_in_json_body(scene: Scene) -> None:
    """The new path of a rename is not percent-decoded: `%2e%2e` is a literal name there, refused."""
    before = await scene.snapshot()
    for form in [*FORMS, *absolute_forms(scene.settings)]:
        spelled = form.spell("data/moved.txt", "data")
        variants = {spelled: "as sent", unquote(spelled, errors="replace"): "decoded"}
        for text, kind in variants.items():
            r = await scene.client.put("/files/data/mine.txt", headers=scene.alice.headers, json={"path": text})
            what = f"rename-target {form.name} {kind}"
            assert_not_5xx(r, what)
            if r.status_code != 200:
                assert r.status_code in (400, 405), (what, r.status_code, r.text)
                continue
            # A legal name in one of alice's root folders: her file moved to exactly that name, in her tree.
            moved = r.json()["path"]
            assert moved == "/".join(part for part in text.split("/") if part), (what, moved)
            assert _top(moved) in ROOT_FOLDERS and ".." not in moved.split("/"), (what, moved)
            tree = await scene.alice_tree()
            assert tree.get(moved) == ALICE_FILES["data/mine.txt"] and "data/mine.txt" not in tree, what
            await scene.reset_alice()
    assert await scene.snapshot() == before


# --- multipart file names ------------------------------------------------------------------------

HOSTILE_FILENAMES: list[tuple[bytes, str | None]] = [
    # (filename as sent, the name it is stored under in alice's data/, or None: refused).
    # Folders in a file name count for nothing: only its last component is used (RFC 7578 4.2).
    (b"../x", "x"),
    (b"..\\x", "x"),
    (b"..\\\\x", "x"),
    (b"/etc/passwd", "passwd"),
    (b"x\x00y", None),
    (b"..", None),
    (b".", None),
    (b"", None),
    (b"x/..", None),
    (b"x/", None),
    (b"../../bob/data/secret.txt", "secret.txt"),
    (b"..%2F..%2Fbob%2Fdata%2Fsecret.txt", None),
    ("\uff0e\uff0e\uff0fx".encode(), None),  # ．．／x
    ("\u2025".encode(), None),  # ‥
    (b"secret.txt ", None),
    (b"secret.txt.", None),
    (b"\xc0\xae\xc0\xae", "\ufffd\ufffd\ufffd\ufffd"),  # invalid UTF-8 is replaced, then a plain name
    ("..\u2215bob\u2215x".encode(), "..\u2215bob\u2215x"),
    (b"..;x", "..;x"),
]


@pytest.mark.parametrize("folder", ["data", "data/sub"])
async def test_hostile_upload_filenames(scene: Scene, folder: str) -> None:
    before = await scene.snapshot()
    for filename, stored in HOSTILE_FILENAMES:
        body, content_type = multipart(filename, b"from alice")
        r = await raw_request(
            scene.client,
            "POST",
            f"/files/{folder}/upload",
            headers={**scene.alice.headers, "content-type": content_type},
            body=body,
        )
        what = f"upload filename {filename!r}"
        assert_not_5xx(r, what)
        if stored is None:
            assert r.status_code in (400, 422), (what, r.status_code, r.text)
            continue
        assert r.status_code == 201, (what, r.text)
        assert r.json()["path"] == f"{folder}/{stored}"
        assert (await scene.alice_tree())[f"{folder}/{stored}"] == b"from alice"
    assert await scene.snapshot() == before


# --- jobs --------------------------------------------------------------------------------------------


def _job(
    name: str, config_id: str = "acfg", data_ids: list[str] | None = None, artifact_ids: list[str] | None = None
) -> dict[str, Any]:
    files_down = {"config_id": config_id, "data_ids": data_ids or [], "artifact_ids": artifact_ids or []}
    return {"job_name": name, "application": TRAIN, "attributes": {"files_down": files_down}}


@pytest.mark.parametrize("field", ["config_id", "data_ids", "artifact_ids"])
async def test_hostile_job_inputs(scene: Scene, field: str, fake_workerfacing) -> None:
    """Inputs are named relative to alice's `config/`, `data/`, `artifact/`: no spelling reaches bob's."""
    before = await scene.snapshot()
    submitted = fake_workerfacing.requests
    target = {"config_id": "config/cfg", "data_ids": "data/run1", "artifact_ids": "artifact/model"}[field]
    for form in [*FORMS, *absolute_forms(scene.settings)]:
        spelled = form.spell(target, "")  # from inside the input folder: `../../bob/<folder>/<id>`
        for text in {spelled, unquote(spelled, errors="replace"), f"../../bob/{target}", f"/{target}"}:
            value: Any = text if field == "config_id" else [text]
            body = _job(f"j{uuid.uuid4().hex[:8]}", **{field: value})
            r = await scene.client.post("/jobs", headers=scene.alice.headers, json=body)
            what = f"{field} {form.name} {text[:80]!r}"
            assert_not_5xx(r, what)
            assert r.status_code == 400, (what, r.status_code, r.text)
    assert fake_workerfacing.requests == submitted
    assert (await api_snapshot(scene.client, scene.alice))["jobs"] == []
    assert await scene.snapshot() == before


HOSTILE_JOB_NAMES = [
    "..", ".", "../data", "../../bob/data", "..%2Fbob", "a/../../bob", "data\\..", "/abs", "//x", "x\x00",
    "a" * 5000, "\uff0e\uff0e", "..\u2215bob", "x.", "x ", " x", "%2e%2e", "%c0%ae", "bob/../../data",
]


async def test_hostile_job_names(scene: Scene) -> None:
    before = await scene.snapshot()
    for name in HOSTILE_JOB_NAMES:
        r = await scene.client.post("/jobs", headers=scene.alice.headers, json=_job(name))
        assert r.status_code == 422, (name, r.status_code, r.text)
    assert (await api_snapshot(scene.client, scene.alice))["jobs"] == []
    assert await scene.snapshot() == before


async def test_other_users_jobs_are_not_found(scene: Scene) -> None:
    before = await scene.snapshot()
    job_id = scene.bob_job["id"]
    for method in ("GET", "DELETE"):
        r = await scene.client.request(method, f"/jobs/{job_id}", headers=scene.alice.headers)
        assert r.status_code == 404, (method, r.text)
        assert "bobs_job" not in r.text
    listed = await scene.client.get("/jobs", headers=scene.alice.headers)
    assert listed.json() == []
    for raw in [
        f"/jobs/-{job_id}", "/jobs/0", f"/jobs/{job_id}.0", f"/jobs/{job_id}%00", "/jobs/99999999999999999999999",
        f"/jobs/%2e%2e/jobs/{job_id}", f"/jobs/..%2F{job_id}", f"/jobs/{job_id}/..", f"/jobs/+{job_id}", "/jobs/1e3",
    ]:
        for method in ("GET", "DELETE"):
            r = await raw_request(scene.client, method, raw, headers=scene.alice.headers)
            assert 400 <= r.status_code < 500, (method, raw, r.status_code, r.text)
            assert "bobs_job" not in r.text
    for query in ["offset=-1", "limit=0", "limit=1001", "limit=99999999999999999999", "offset=abc"]:
        r = await scene.client.get(f"/jobs?{query}", headers=scene.alice.headers)
        assert 400 <= r.status_code < 500, (query, r.status_code)
    assert await scene.snapshot() == before


# --- the test harness itself ---------------------------------------------------------------------


async def test_raw_requests_reach_the_app_unnormalised(scene: Scene) -> None:
    """httpx drops `..` segments before sending; `raw_request` does not, so the parser sees them."""
    url = httpx.URL("http://testserver.local/files/data/../../bob/data/secret.txt/download")
    assert url.raw_path == b"/bob/data/secret.txt/download"
    r = await raw_request(
        scene.client, "GET", "/files/data/../../bob/data/secret.txt/download", headers=scene.alice.headers
    )
    assert r.status_code == 400 and "'..'" in r.json()["detail"]
    # and a request without hostile parts goes through it like any other
    r = await raw_request(scene.client, "GET", "/files/data/mine.txt/download", headers=scene.alice.headers)
    assert r.status_code == 200 and r.content == ALICE_FILES["data/mine.txt"]
    assert r.headers["x-content-type-options"] == "nosniff"
