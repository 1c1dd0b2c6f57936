"""The client library (`decode_cloud`, in client/), and acceptance of its CLI `decode-cloud`: a
scientist's whole session through the CLI as a subprocess, against the real service served by
uvicorn on a loopback port, on the embedded default's storage (local disk, SQLite) and on S3 (moto)
+ PostgreSQL.

The session: login (token file mode 0600); upload a folder, interrupted halfway by Ctrl-C (SIGINT)
and run again, which moves only what is missing (the CLI's `--json` report, checked against what the
service held after the interruption); list it; submit a job; drive it to `finished` as the
worker-facing API would (`PUT /_job_status`, and a model file written into its folder); `watch` it to
the end; download the outputs and the folder, the folder download interrupted by Ctrl-C, run again,
killed (SIGKILL) and run again. Every byte is compared by SHA-256.

Sizes: 200 files, 1 GiB in all, on local disk and on moto's S3 (DECODE_TEST_CLIENT_S3_BYTES, for
the S3 session's total, can make it smaller while working on the client, e.g. 16777216). Moto runs
in this process and spools objects over 5 MiB to disk: measured 2026-12-01 on 2 cores, the S3
session takes ~15-23 s at 16 MiB and ~26 s at 1 GiB (load ~1.5; 34.5 s at load ~5), the pytest
process peaking at 320 MiB RSS. Alone:

    DECODE_TEST_POSTGRES_URL=postgresql://postgres@127.0.0.1:5432/test \
        .venv/bin/pytest -n 0 tests/integration/test_client.py -k "whole and s3"

Every CLI run goes through a wrapper that fails if the client imported any of the server's
dependencies.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import re
import signal
import subprocess
import sys
import threading
import time
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

import httpx
import msgspec
import pytest

from decode_cloud import ApiError, Application, AsyncClient, Attributes, Client, FilesDown, JobCreate, WaitTimeout
from decode_cloud.cli import build_parser
from decode_userapi.config import Settings
from decode_userapi.container import build_services
from decode_userapi.entrypoints.http.app import create_app
from tests.integration.harness import INTERNAL_KEY, PASSWORD, S3_ROOT, identities, stacks
from tests.integration.live import LiveApp

FORBIDDEN = ("litestar", "sqlalchemy", "asyncpg", "boto3", "aioboto3", "botocore", "decode_userapi")
# Runs the CLI's `main` as the `decode-cloud` script does, then checks what it imported.
WRAPPER = f"""
import sys
from decode_cloud.cli import main
code = main(sys.argv[1:])
loaded = sorted({{m.split(".")[0] for m in sys.modules}} & set({FORBIDDEN!r}))
if loaded:
    print("the client imported server dependencies:", loaded, file=sys.stderr)
    sys.exit(99)
sys.exit(code)
"""
USER = "ada@example.org"
# the S3 session's size (see the module's docstring): 1 GiB, as on local disk, unless told otherwise
S3_BYTES = int(os.environ.get("DECODE_TEST_CLIENT_S3_BYTES", 1 << 30))
ROOT = Path(__file__).resolve().parents[2]


@dataclass
class Service:
    url: str
    settings: Settings
    s3: Any  # boto3 S3 client on moto, or None for local disk

    def put_file(self, path: str, content: bytes) -> None:
        """Write into the user's tree behind the service's back, as a worker does."""
        if self.s3 is not None:
            self.s3.put_object(Bucket=self.settings.s3_bucket, Key=f"{S3_ROOT}/{USER}/{path}", Body=content)
        else:
            target = Path(self.settings.user_data_root_path) / USER / path
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(content)

    def stored_sizes(self, folder: str) -> dict[str, int]:
        """Exact sizes of what the storage holds under `folder`, by relative path."""
        if self.s3 is not None:
            prefix = f"{S3_ROOT}/{USER}/{folder}/"
            pages = self.s3.get_paginator("list_objects_v2").paginate(Bucket=self.settings.s3_bucket, Prefix=prefix)
            return {o["Key"][len(prefix) :]: o["Size"] for p in pages for o in p.get("Contents", []) if not o["Key"].endswith("/")}
        root = Path(self.settings.user_data_root_path) / USER / folder
        return {p.relative_to(root).as_posix(): p.stat().st_size for p in root.rglob("*") if p.is_file()} if root.exists() else {}


@pytest.fixture
def service(settings: Settings, stack: str, request: pytest.FixtureRequest) -> Iterator[Service]:
    settings = msgspec.structs.replace(settings, max_upload_bytes=64 * 1024 * 1024)
    app = LiveApp("userapi-for-cli")
    app.start(create_app(build_services(settings)))
    try:
        s3 = request.getfixturevalue("s3_admin") if stack.startswith("s3") else None
        r = httpx.post(f"{app.url}/user", data={"username": USER, "password": PASSWORD})
        assert r.status_code == 201, r.text
        yield Service(app.url, settings, s3)
    finally:
        app.stop()


@pytest.fixture
def cli_env(service: Service, tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DECODE_CLOUD_", "AWS_"))}
    env.update(DECODE_CLOUD_URL=service.url, DECODE_CLOUD_CONFIG_DIR=str(tmp_path / "config"), COLUMNS="200")
    return env


def cli(env: dict[str, str], *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", WRAPPER, *args], env=env, capture_output=True, text=True, timeout=timeout)


def cli_json(env: dict[str, str], *args: str) -> Any:
    result = cli(env, "--json", *args)
    assert result.returncode == 0, result.stderr
    return msgspec.json.decode(result.stdout)


def start(env: dict[str, str], *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", WRAPPER, *args], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def make_folder(root: Path, files: int, total: int) -> dict[str, str]:
    """`files` distinct files of `total` bytes in all (a random block, rotated differently for each,
    in two subfolders and the top), and their SHA-256 by relative path."""
    block = os.urandom(1 << 20)
    size = total // files
    hashes = {}
    for i in range(files):
        rel = f"{('', 'a/', 'a/b/')[i % 3]}frame{i:03d}.bin"
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        shift = (i * 7919) % len(block)
        rotated = block[shift:] + block[:shift]
        digest = hashlib.sha256()
        with path.open("wb") as f:
            left = size
            while left:
                chunk = rotated[: min(left, len(rotated))]
                f.write(chunk)
                digest.update(chunk)
                left -= len(chunk)
        hashes[rel] = digest.hexdigest()
    return hashes


def sha256_tree(root: Path) -> dict[str, str]:
    found = {}
    for path in sorted(root.rglob("*")):
        if path.is_file():
            digest = hashlib.sha256()
            with path.open("rb") as f:
                while chunk := f.read(1 << 20):
                    digest.update(chunk)
            found[path.relative_to(root).as_posix()] = digest.hexdigest()
    return found


def interrupt_halfway(process: subprocess.Popen[str], progress: Any, half: int, sig: int, timeout: float = 60, pause: float = 0.05) -> int:
    """Send `sig` once `progress()` reaches `half`; the process's exit code."""
    deadline = time.monotonic() + timeout
    while progress() < half:
        assert process.poll() is None, f"finished before it could be interrupted: {process.communicate()}"
        assert time.monotonic() < deadline, "no progress"
        time.sleep(pause)
    process.send_signal(sig)
    process.communicate(timeout=30)
    return process.returncode


def settled(read: Any, pause: float = 0.3) -> Any:
    """`read()` once two readings `pause` apart agree."""
    before, after = read(), None
    while True:
        time.sleep(pause)
        after = read()
        if after == before:
            return after
        before = after


def drive(service: Service, job_id: int, *steps: tuple[str, str | None]) -> None:
    """Status updates as the worker-facing API sends them."""
    for status, details in steps:
        r = httpx.put(
            f"{service.url}/_job_status",
            json={"job_id": job_id, "status": status, "runtime_details": details},
            headers={"x-api-key": INTERNAL_KEY},
        )
        assert r.status_code == 200, r.text
        time.sleep(0.15)


@stacks("local-sqlite", "s3-postgres")
def test_a_whole_session_through_the_cli(service: Service, cli_env: dict[str, str], stack: str, tmp_path: Path):
    files, total = (200, 1 << 30) if stack.startswith("local") else (200, S3_BYTES)
    # login: the token is kept in the config dir, readable by its owner only
    login = cli({**cli_env, "DECODE_CLOUD_PASSWORD": PASSWORD}, "login", "--username", USER)
    assert login.returncode == 0, login.stderr
    credentials = tmp_path / "config" / "credentials.json"
    assert credentials.stat().st_mode & 0o777 == 0o600

    source = tmp_path / "frames"
    hashes = make_folder(source, files, total)
    size = total // files

    # an upload stopped by Ctrl-C halfway keeps only complete files, and its re-run sends the rest
    upload = start(cli_env, "upload", str(source), "data/run1")
    # (at a third: on moto the rest of 1 GiB takes seconds only; a listing every 0.15 s, as each takes
    # CPU from the service and moto, which run in this process)
    code = interrupt_halfway(upload, lambda: len(service.stored_sizes("data/run1")), files // 3, signal.SIGINT, pause=0.15)
    assert code == 130
    kept = settled(lambda: service.stored_sizes("data/run1"))  # requests the server was finishing as the client went
    assert files // 3 <= len(kept) < files
    assert set(kept.values()) == {size}, "a partial upload is stored"
    resumed = cli_json(cli_env, "upload", str(source), "data/run1")
    assert resumed == {
        "files_total": files,
        "files_transferred": files - len(kept),
        "files_skipped": len(kept),
        "bytes_total": size * files,
        "bytes_transferred": size * (files - len(kept)),
        "bytes_skipped": size * len(kept),
    }
    assert service.stored_sizes("data/run1") == dict.fromkeys(hashes, size)
    if service.s3 is not None:  # S3's ETag is the MD5 of a POSTed object: --checksum compares content
        changed = source / "a" / "b" / "frame002.bin"
        with changed.open("r+b") as f:
            f.write(b"\0" * 16)  # the same size, other bytes
        # (a subfolder's third of the files: each costs two requests to moto in this process)
        checked = cli_json(cli_env, "upload", "--checksum", str(source / "a" / "b"), "data/run1/a/b")
        assert (checked["files_skipped"], checked["files_transferred"]) == (files // 3 - 1, 1)
        hashes["a/b/frame002.bin"] = hashlib.sha256(changed.read_bytes()).hexdigest()

    listing = cli_json(cli_env, "ls", "-r", "data/run1")
    assert [e["path"] for e in listing if e["type"] == "file"] == sorted(f"data/run1/{rel}" for rel in hashes)
    assert {e["path"] for e in listing if e["type"] == "directory"} == {"data/run1/a/", "data/run1/a/b/"}

    # a job on these inputs, driven to the end as the worker side would, followed by `watch`
    (tmp_path / "param.yaml").write_text("lr: 0.001\n")
    assert cli(cli_env, "upload", str(tmp_path / "param.yaml"), "config/run1/").returncode == 0
    job = cli_json(cli_env, "submit", "train1", "--app", "decode", "--version", "v0_10_1", "--entrypoint", "train",
                   "--config", "run1", "--data", "run1")
    assert job["status"] == "queued" and job["paths_out"]["artifact"] == "artifact/train1"
    watch = start(cli_env, "watch", str(job["id"]), "--interval", "0.1")
    assert watch.stdout is not None
    first = watch.stdout.readline() + watch.stdout.readline()  # the job's line, and its status: it is watching
    model = os.urandom(3 * 1024 * 1024 + 17)
    drive(service, job["id"], ("pulled", None), ("preprocessing", "inputs fetched"), ("running", "epoch 1/2"))
    service.put_file("artifact/train1/model/model.pt", model)
    service.put_file("log/train1/log/job.log", b"trained\n")
    drive(service, job["id"], ("running", "epoch 2/2"), ("postprocessing", None), ("finished", "model saved"))
    out, errors = watch.communicate(timeout=30)
    out = first + out
    assert watch.returncode == 0, errors
    for expected in ("queued", "pulled", "running", "finished", "│ inputs fetched", "│ epoch 2/2", "│ model saved", "runtime 0:00:0"):
        assert expected in out, out
    status = cli_json(cli_env, "status", str(job["id"]))
    assert status["status"] == "finished" and status["date_finished"]

    # the outputs, and the uploaded folder back: a download killed halfway leaves no file under its
    # real name that is not complete, and its re-run fetches only what is missing
    outputs = tmp_path / "train1"
    assert cli_json(cli_env, "download", "artifact/train1", str(outputs))["files_transferred"] == 1
    assert (outputs / "model" / "model.pt").read_bytes() == model
    back = tmp_path / "back"
    complete = lambda: sum(1 for p in back.rglob("*.bin") if p.stat().st_size == size) if back.exists() else 0  # noqa: E731
    download = start(cli_env, "--parallel", "2", "download", "data/run1", str(back))
    assert interrupt_halfway(download, complete, files // 3, signal.SIGINT) == 130  # Ctrl-C: cleans up after itself
    assert not list(back.rglob("*.decode-cloud-part"))
    download = start(cli_env, "--parallel", "2", "download", "data/run1", str(back))
    interrupt_halfway(download, complete, 2 * files // 3, signal.SIGKILL)  # no chance to: leaves its temporary files
    named = list(back.rglob("*.bin"))
    assert 2 * files // 3 <= len(named) < files
    assert all(p.stat().st_size == size for p in named), "a partial download is under its real name"
    again = cli_json(cli_env, "download", "data/run1", str(back))
    assert (again["files_skipped"], again["files_transferred"]) == (len(named), files - len(named))
    assert again["bytes_transferred"] == size * (files - len(named))
    got = {rel: digest for rel, digest in sha256_tree(back).items() if not rel.rpartition("/")[2].startswith(".")}
    assert got == hashes
    assert not list(back.rglob("*.decode-cloud-part")), "the re-run leaves the killed run's temporary files"


@stacks("local-sqlite")  # exit codes and errors do not depend on the storage
def test_the_other_commands_exit_codes_and_errors(service: Service, cli_env: dict[str, str], tmp_path: Path):
    env = {**cli_env, "DECODE_CLOUD_USERNAME": USER, "DECODE_CLOUD_PASSWORD": PASSWORD}  # signs in by itself
    with Client(service.url, username=USER, password=PASSWORD) as c:
        c.mkdir("config/c1")
    job_file = tmp_path / "job.yaml"
    job_file.write_text(
        "job_name: broken\napplication: {application: decode, version: v0_10_1, entrypoint: train}\n"
        "attributes:\n  files_down:\n    config_id: c1\n"
    )
    job = cli_json(env, "submit", "--file", str(job_file))
    threading.Timer(0.3, drive, (service, job["id"], ("pulled", None), ("error", "out of GPU memory"))).start()
    watch = cli(env, "watch", str(job["id"]), "--interval", "0.1")
    assert watch.returncode == 1 and "out of GPU memory" in watch.stdout, watch.stdout + watch.stderr
    again = cli(env, "--json", "submit", "--file", str(job_file))
    assert again.returncode == 1
    assert msgspec.json.decode(again.stdout)["error"]["status"] == 409
    assert "broken" in again.stderr  # the service's detail
    stuck = cli_json(env, "submit", "stuck", "--file", str(job_file))  # the name overrides the file's
    waited = cli(env, "watch", str(stuck["id"]), "--interval", "0.1", "--timeout", "0.5")
    assert waited.returncode == 124 and "queued" in waited.stderr, waited.stderr
    table = cli(env, "jobs")
    assert table.returncode == 0 and "broken" in table.stdout and "error" in table.stdout
    assert "train" in cli_json(env, "apps")["decode"]["v0_10_1"]
    assert cli(env, "mkdir", "data/d1").returncode == 0
    assert cli_json(env, "mv", "data/d1", "data/d2")["path"] == "data/d2/"
    assert cli(env, "rm", "data/d2").returncode == 0
    missing = cli(env, "download", "data/nothing-here", str(tmp_path / "x"))
    assert missing.returncode == 1 and "404" in missing.stderr
    assert cli(env, "delete", str(job["id"])).returncode == 0
    assert cli_json(env, "ls", "data") == []
    # it kept the token it signed in for; `logout` forgets it, and without one the CLI says what to do
    assert cli(cli_env, "ls").returncode == 0
    assert cli(cli_env, "logout").returncode == 0
    signed_out = cli(cli_env, "--json", "ls")
    assert signed_out.returncode == 2 and "decode-cloud login" in signed_out.stderr
    assert msgspec.json.decode(signed_out.stdout)["error"]["exit_code"] == 2  # every failure as JSON too


@stacks("local-sqlite")
def test_the_library_sync_client(service: Service, tmp_path: Path):
    """`Client` (which runs `AsyncClient`'s code on a portal thread): files, jobs, waiting, errors."""
    local = tmp_path / "one.txt"
    local.write_bytes(b"hello")
    with Client(service.url, username=USER, password=PASSWORD) as c:
        assert c.user().email == USER
        c.mkdir("data/x/y")
        assert c.upload(local, "data/x/renamed.txt").files_transferred == 1  # to that name
        assert c.upload(local, "data/x/y").files_transferred == 1  # into the folder
        assert [e.path for e in c.ls("data/x", recursive=True)] == ["data/x/renamed.txt", "data/x/y/", "data/x/y/one.txt"]
        assert c.upload(local, "data/x/y/").files_skipped == 1
        local.write_bytes(b"hellO")  # the same size, other content: skipped, unless content is compared
        assert c.upload(local, "data/x/y/").files_skipped == 1
        assert c.upload(local, "data/x/y/", checksum=True).files_transferred == 1  # local storage has no hash: sent
        assert c.mv("data/x/renamed.txt", "data/x/moved.txt").path == "data/x/moved.txt"
        assert c.download("data/x/moved.txt", tmp_path / "got.txt").bytes_transferred == 5
        assert (tmp_path / "got.txt").read_bytes() == b"hello"
        assert c.download("data/x/y", tmp_path / "y").files_transferred == 1
        assert (tmp_path / "y" / "one.txt").read_bytes() == b"hellO"
        with pytest.raises(ApiError) as missing:
            c.mv("data/x/nothing", "data/x/other")
        assert missing.value.status == 404 and "nothing" in str(missing.value.detail)
        c.rm("data/x")
        assert c.ls("data") == []

        c.aio.token = "not-a-token"  # a token the service refuses: signed in again, once
        c.upload(local, "config/c1/")
        job = c.submit(
            JobCreate(
                job_name="j1",
                application=Application("decode", "v0_10_1", "train"),
                attributes=Attributes(files_down=FilesDown(config_id="c1")),
            )
        )
        assert [j.id for j in c.jobs()] == [job.id] and c.job(job.id).status == "queued"
        with pytest.raises(WaitTimeout):
            c.wait(job.id, timeout=0.3, poll_interval=0.05)
        threading.Timer(0.2, drive, (service, job.id, ("pulled", None), ("finished", "done"))).start()
        done = c.wait(job.id, timeout=20, poll_interval=0.05)
        assert done.status == "finished" and done.is_final and done.runtime_details == "done"
        assert [j.status for j in c.changes(job.id)] == ["finished"]
        c.delete(job.id)
        with pytest.raises(ApiError) as gone:
            c.job(job.id)
        assert gone.value.status == 404


@stacks("local-sqlite")
@identities("cognito")
async def test_the_async_client_signs_in_through_cognito(service: Service):
    """`/access_info` names a user pool: `InitiateAuth` (USER_PASSWORD_AUTH) as plain JSON over HTTP, on
    moto's Cognito (found through AWS_ENDPOINT_URL, as the AWS SDK would)."""
    async with AsyncClient(service.url, username=USER, password=PASSWORD) as c:
        assert "cognito" in await c.access_info()
        assert (await c.user()).email == USER
        assert c.token and c.token_expires_at and c.token_expires_at > time.time()
    async with AsyncClient(service.url, username=USER, password="wrong-password-1") as c:
        with pytest.raises(ApiError) as refused:
            await c.ls()
        assert refused.value.status == 400 and refused.value.detail


def test_the_client_installs_without_the_servers_dependencies():
    """What `pip install ./client` pulls in: the closure of client/pyproject.toml's dependencies over
    the requirements the installed distributions declare (the versions constraints.txt pins), none of
    them the server's (the real install is `test_the_client_installs_alone_in_a_fresh_venv`, which
    needs the package index; every CLI run of the tests above also fails if it imported a server
    module). And the installed `decode-cloud` script answers `--help`, and every command's help has
    examples and `--json`."""
    project = tomllib.loads((ROOT / "client" / "pyproject.toml").read_text())["project"]
    todo = list(project["dependencies"])
    closure: set[str] = set()
    while todo:
        requirement = todo.pop()
        name = re.sub(r"[-_.]+", "-", re.match(r"[A-Za-z0-9_.-]+", requirement)[0]).lower()  # type: ignore[index]
        if name in closure or "extra ==" in requirement:  # optional extras are not installed by default
            continue
        try:
            requires = metadata.requires(name) or []
        except metadata.PackageNotFoundError:  # a requirement for other Python versions only
            continue
        closure.add(name)
        todo += requires
    assert {"httpx", "msgspec", "rich", "pyyaml", "anyio"} <= closure
    server = {"litestar", "sqlalchemy", "asyncpg", "boto3", "aioboto3", "botocore", "decode-userapi", "uvicorn", "alembic"}
    assert not closure & server, closure & server
    script = Path(sys.executable).parent / "decode-cloud"
    shown = subprocess.run([script, "--help"], capture_output=True, text=True, timeout=30)
    assert shown.returncode == 0 and "examples:" in shown.stdout, shown.stderr
    commands = re.findall(r"^    (\w+) ", shown.stdout.split("commands:")[1], re.MULTILINE)
    assert {"login", "upload", "download", "watch", "cancel", "events", "submit", "delete"} <= set(commands), commands
    for name in commands:  # every command: examples in its --help, and --json
        help_text = io.StringIO()
        with contextlib.redirect_stdout(help_text), pytest.raises(SystemExit):
            build_parser().parse_args([name, "--help"])
        assert "examples:\n  decode-cloud" in help_text.getvalue() and "--json" in help_text.getvalue(), name


class Lines:
    """A process's stdout lines as they arrive (read on a thread), each with its arrival time."""

    def __init__(self, process: subprocess.Popen[str]) -> None:
        self.lines: list[tuple[float, str]] = []
        self.thread = threading.Thread(target=self._read, args=(process,), daemon=True)
        self.thread.start()

    def _read(self, process: subprocess.Popen[str]) -> None:
        assert process.stdout is not None
        for line in process.stdout:
            self.lines.append((time.monotonic(), line))

    def wait_for(self, text: str, timeout: float) -> float:
        """When a line holding `text` arrived; fails after `timeout` seconds without one."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for at, line in list(self.lines):
                if text in line:
                    return at
            time.sleep(0.02)
        raise AssertionError(f"no line with {text!r} within {timeout} s: {self.lines}")


@stacks("local-sqlite")  # the stream's own tests cover its storage; this is the client's side
def test_watch_follows_the_live_stream_and_cancel_events_and_ctrl_c(service: Service, cli_env: dict[str, str], tmp_path: Path):
    """`watch` with a 60 s `--interval` shows each status within seconds of it (0.04 s here): only the live
    stream `GET /jobs/events/stream` can have told it. `cancel` ends a watched job (exit 3), `events`
    lists its history, Ctrl-C stops a `watch` (exit 130, the job goes on), and a folder download
    recreates the remote folder's empty subfolders."""
    env = {**cli_env, "DECODE_CLOUD_USERNAME": USER, "DECODE_CLOUD_PASSWORD": PASSWORD}
    with Client(service.url, username=USER, password=PASSWORD) as c:
        c.mkdir("config/c1")
        c.mkdir("data/d1/empty/deeper")
        (tmp_path / "f.txt").write_bytes(b"1")
        c.upload(tmp_path / "f.txt", "data/d1/")
    submit = ("--file", str(tmp_path / "job.yaml"))
    (tmp_path / "job.yaml").write_text("application: {application: decode, version: v0_10_1, entrypoint: train}\n"
                                       "attributes: {files_down: {config_id: c1}}\n")

    job = cli_json(env, "submit", "live", *submit)
    watch = start(env, "watch", str(job["id"]), "--interval", "60")
    lines = Lines(watch)
    lines.wait_for("queued", 30)  # (a change before its stream is up is read when it comes up)
    for status, details in (("pulled", None), ("running", "epoch 1/1"), ("finished", "model saved")):
        sent = time.monotonic()
        drive(service, job["id"], (status, details))
        assert lines.wait_for(status, 10) - sent < 5, f"{status} arrived late"  # polling: 60 s
    assert watch.wait(timeout=10) == 0

    other = cli_json(env, "submit", "other", *submit)
    watch = start(env, "watch", str(other["id"]), "--interval", "60")
    Lines(watch).wait_for("queued", 30)
    canceled = cli_json(env, "cancel", str(other["id"]))
    assert canceled["status"] == "canceled" and canceled["date_finished"]
    assert watch.wait(timeout=10) == 3  # the canceled code, promptly: told by the stream
    again = cli(env, "--json", "cancel", str(other["id"]))
    assert again.returncode == 1 and msgspec.json.decode(again.stdout)["error"]["status"] == 409
    history = cli_json(env, "events", str(other["id"]))
    assert history[0]["kind"] == "created" and history[-1]["kind"] == "cancel"
    assert history[-1]["status"] == "canceled"
    table = cli(env, "events", str(job["id"]))
    assert table.returncode == 0 and "epoch 1/1" in table.stdout and "finished" in table.stdout
    with Client(service.url, username=USER, password=PASSWORD) as c:  # the library's side: paged, `after`
        everything = c.events(job["id"])
        assert [e.status for e in everything if e.kind == "status"] == ["pulled", "running", "finished"]
        assert c.events(job["id"], after=everything[1].id) == everything[2:]

    third = cli_json(env, "submit", "third", *submit)
    watch = start(env, "watch", str(third["id"]), "--interval", "60")
    Lines(watch).wait_for("queued", 30)
    watch.send_signal(signal.SIGINT)
    assert watch.wait(timeout=10) == 130
    assert watch.stderr is not None and f"stopped watching job {third['id']}" in watch.stderr.read()
    assert cli_json(env, "status", str(third["id"]))["status"] == "queued"  # it goes on

    assert cli_json(env, "download", "data/d1", str(tmp_path / "d1"))["files_transferred"] == 1
    assert (tmp_path / "d1" / "empty" / "deeper").is_dir() and (tmp_path / "d1" / "f.txt").read_bytes() == b"1"


def test_the_client_installs_alone_in_a_fresh_venv(tmp_path: Path):
    """`pip install ./client` into a fresh venv, as the acceptance checks it on a clean clone: it
    installs, `decode-cloud` runs there, and nothing of the server came with it.

    It needs the package index (the client's build backend, hatchling, and its dependencies' wheels
    come from there; pip's cache only makes it quicker), and is skipped when the index cannot be
    reached. Quick because the venv is made without pip (0.1 s instead of ~7 s for ensurepip) and this
    venv's pip installs into it (`pip --python`): 5.8 s with a warm pip cache, 9.7 s with none
    (`--no-cache-dir`), on 2 shared cores, 2026-12-01. An offline `--no-index --find-links` install
    from a wheel directory was slower (~10 s warm, `pip download` + `pip wheel` of ~12 s to fill the
    directory first, from the index as well), so it would not make this test offline."""
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=60)
    python = venv / "bin" / "python"
    install = subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(python), "install", "-q", "--retries", "1", "--timeout", "20",
         "-c", str(ROOT / "constraints.txt"), str(ROOT / "client")],
        capture_output=True, text=True, timeout=300,
    )
    unreachable = ("NewConnectionError", "Failed to establish a new connection", "Temporary failure in name resolution",
                   "Network is unreachable", "ConnectTimeout", "ProxyError")
    if install.returncode != 0 and any(sign in install.stderr for sign in unreachable):
        pytest.skip(f"the package index cannot be reached: {install.stderr[-300:]}")
    assert install.returncode == 0, install.stderr
    shown = subprocess.run([venv / "bin" / "decode-cloud", "--help"], capture_output=True, text=True, timeout=30)
    assert shown.returncode == 0 and "examples:" in shown.stdout, shown.stderr
    installed = {p.name.split("-")[0].lower().replace("_", "-") for p in (venv / "lib").glob("python3*/site-packages/*.dist-info")}
    assert {"decode-cloud", "httpx", "msgspec", "rich", "pyyaml"} <= installed, installed
    server = {"litestar", "sqlalchemy", "asyncpg", "boto3", "aioboto3", "botocore", "decode-userapi", "uvicorn", "alembic"}
    assert not installed & server, installed & server
