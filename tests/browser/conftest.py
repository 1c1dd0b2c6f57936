"""Browser tests: Debian's headless Chromium, driven by Playwright for Python, against a real
`decode-userapi serve` subprocess (the embedded default: SQLite, local files, built-in identity; and
the hosted shape: Cognito and S3 on moto's server) with a fake worker-facing API beside it.

Chromium is `/usr/bin/chromium` (`CHROMIUM` overrides); Playwright's own browser download is not
used. Without Chromium the tests skip, unless `DECODE_REQUIRE_BROWSER=1` (as `.ci/run` sets), where
they fail. Every page is watched: a console error (Chromium reports CSP violations there), an
uncaught exception, a `securitypolicyviolation` event, a failed request, or a request to any
origin but the service's (aborted: the network is cut but for loopback) fails the test.
Screenshots of each step go to `test-artifacts/browser/` (kept by CI, ignored by git).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.fakes.workerfacing import FakeWorkerFacingApi

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "test-artifacts" / "browser"
INTERNAL_KEY = "browser-internal-key"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
# Watches the page from before its first script: CSP violations become console errors.
WATCH_SCRIPT = """
document.addEventListener("securitypolicyviolation", (e) => {
  console.error(`CSP violation: ${e.violatedDirective} blocked ${e.blockedURI}`);
});
"""


def chromium_path() -> str | None:
    wanted = os.environ.get("CHROMIUM") or "/usr/bin/chromium"
    return wanted if Path(wanted).exists() else shutil.which("chromium")


@dataclass
class Bucket:
    endpoint: str
    name: str
    client: Any  # boto3's S3 client on it


@dataclass
class Service:
    url: str
    data_root: Path  # USER_DATA_ROOT_PATH: a folder on disk, or the key prefix in `bucket`
    process: subprocess.Popen[str]
    bucket: Bucket | None = None  # FILESYSTEM=s3

    def names(self, folder: str) -> list[str]:
        """What is directly in a user's `folder` ("<user>/data/run1"), as stored, sorted."""
        if self.bucket is None:
            where = self.data_root / folder
            return sorted(p.name for p in where.iterdir()) if where.exists() else []
        prefix = f"{self.data_root.name}/{folder.strip('/')}/"
        listed = self.bucket.client.list_objects_v2(Bucket=self.bucket.name, Prefix=prefix, Delimiter="/")
        keys = [o["Key"] for o in listed.get("Contents", [])] + [p["Prefix"] for p in listed.get("CommonPrefixes", [])]
        return sorted(key[len(prefix) :].strip("/") for key in keys if key != prefix)

    def put(self, path: str, data: bytes) -> None:
        """A file written into a user's tree as the workers do ("<user>/output/job/x.csv")."""
        if self.bucket is None:
            target = self.data_root / path
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data)
        else:
            self.bucket.client.put_object(Bucket=self.bucket.name, Key=f"{self.data_root.name}/{path}", Body=data)

    def set_status(self, job_id: int, status: str, details: str | None = None) -> None:
        """What the worker-facing API does: `PUT /_job_status` with the internal key."""
        r = httpx.put(
            f"{self.url}/_job_status",
            json={"job_id": job_id, "status": status, "runtime_details": details},
            headers={"x-api-key": INTERNAL_KEY},
            timeout=10,
        )
        assert r.status_code == 200, r.text


class Relay:
    """A TCP relay in front of a service, for a page to lose its connections: `cut()` closes every
    connection open through it and refuses new ones until `mend()` (a network path gone and back)."""

    def __init__(self, port: int) -> None:
        self.target = ("127.0.0.1", port)
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}"
        self.open: set[socket.socket] = set()
        self.lock = threading.Lock()
        self.cut_off = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            if self.cut_off:
                client.close()
                continue
            upstream = socket.create_connection(self.target)
            with self.lock:
                self.open |= {client, upstream}
            threading.Thread(target=self._pipe, args=(client, upstream), daemon=True).start()
            threading.Thread(target=self._pipe, args=(upstream, client), daemon=True).start()

    def _pipe(self, source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        for sock in (source, sink):
            self._close(sock)

    def _close(self, sock: socket.socket) -> None:
        with self.lock:
            self.open.discard(sock)
        try:
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        sock.close()

    def cut(self) -> None:
        self.cut_off = True
        with self.lock:
            cut = list(self.open)
        for sock in cut:
            self._close(sock)

    def mend(self) -> None:
        self.cut_off = False

    def close(self) -> None:
        self.cut()
        self.listener.close()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _require_chromium() -> None:
    if chromium_path() is None:
        if os.environ.get("DECODE_REQUIRE_BROWSER") == "1":
            pytest.fail("Chromium is not installed (apt-get install chromium), and DECODE_REQUIRE_BROWSER=1")
        pytest.skip("Chromium is not installed (apt-get install chromium)")


@contextmanager
def serve(home: Path, extra_env: dict[str, str]) -> Iterator[Service]:
    """`decode-userapi serve` in `home`, with a fake worker-facing API beside it."""
    port = _free_port()
    data_root = (home / "user_data").resolve()
    prefixes = ("DECODE_", "DATABASE_", "AUTH", "COGNITO_", "INTERNAL_API", "WORKERFACING", "USER_DATA", "FILESYSTEM", "AWS_")
    env = {k: v for k, v in os.environ.items() if not k.startswith(prefixes)}
    with FakeWorkerFacingApi(INTERNAL_KEY) as workers:
        env |= {
            "WORKERFACING_API_URL": workers.url,
            "INTERNAL_API_KEY_SECRET": INTERNAL_KEY,
            "USER_DATA_ROOT_PATH": str(data_root),
            "DATABASE_URL": f"sqlite:///{home / 'userapi.db'}",
            "LOG_LEVEL": "WARNING",
            **extra_env,
        }
        process = subprocess.Popen(
            [sys.executable, "-m", "decode_userapi.entrypoints.cli", "serve", "--port", str(port), "--log-level", "warning"],
            cwd=home, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )
        url = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 30
            while True:
                assert process.poll() is None, process.communicate()[0]
                try:
                    httpx.get(f"{url}/health", timeout=1)
                    break
                except httpx.HTTPError:
                    assert time.monotonic() < deadline, "the service did not come up"
                    time.sleep(0.1)
            yield Service(url, data_root, process)
        finally:
            process.terminate()
            process.communicate(timeout=30)


@pytest.fixture(scope="session")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    """The embedded default: built-in identity, accounts open (AUTH=1)."""
    _require_chromium()
    with serve(tmp_path_factory.mktemp("web"), {}) as running:
        yield running


@pytest.fixture(scope="session")
def moto_endpoint() -> Iterator[str]:
    """moto's server on a free loopback port (Cognito and S3 for the tests that need them). It
    answers CORS preflights from any origin by itself; the bucket's CORS is set too, as a deployment
    must."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        yield f"http://{host}:{port}"
    finally:
        server.stop()


AWS_TESTING = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}


@dataclass
class CognitoPool:
    endpoint: str
    username: str
    password: str


@pytest.fixture(scope="session")
def cognito_service(tmp_path_factory: pytest.TempPathFactory, moto_endpoint: str) -> Iterator[tuple[Service, CognitoPool]]:
    """The hosted deployment's shape: the service signing in with Cognito (a user pool on moto's
    server, a user in `users`) and keeping files in S3 (`FILESYSTEM=s3`, a bucket there too: uploads
    and downloads go straight to it, through pre-signed requests)."""
    _require_chromium()
    import boto3

    endpoint = moto_endpoint
    region = "us-east-1"  # where moto answers the unsigned calls a browser makes (InitiateAuth)
    credentials = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing"}
    admin = boto3.client("cognito-idp", endpoint_url=endpoint, region_name=region, **credentials)
    pool_id = admin.create_user_pool(PoolName="decode-web")["UserPool"]["Id"]
    client_id = admin.create_user_pool_client(
        UserPoolId=pool_id, ClientName="web", ExplicitAuthFlows=["ALLOW_USER_PASSWORD_AUTH"],
        ReadAttributes=["email", "email_verified"],
    )["UserPoolClient"]["ClientId"]
    pool = CognitoPool(endpoint, "ada-cognito", "Correct-horse-42")
    admin.admin_create_user(
        UserPoolId=pool_id, Username=pool.username, MessageAction="SUPPRESS",
        UserAttributes=[{"Name": "email", "Value": "ada@example.org"}, {"Name": "email_verified", "Value": "true"}],
    )
    admin.admin_set_user_password(UserPoolId=pool_id, Username=pool.username, Password=pool.password, Permanent=True)
    admin.create_group(UserPoolId=pool_id, GroupName="users")
    admin.admin_add_user_to_group(UserPoolId=pool_id, Username=pool.username, GroupName="users")
    env = {
        "COGNITO_USER_POOL_ID": pool_id,
        "COGNITO_CLIENT_ID": client_id,
        "COGNITO_REGION": region,
        "COGNITO_JWKS_URL": f"{endpoint}/{pool_id}/.well-known/jwks.json",
        "AWS_ENDPOINT_URL": endpoint,
        **AWS_TESTING,
        "FILESYSTEM": "s3",
        "S3_BUCKET": "decode-web",
        "S3_REGION": region,
        "USER_DATA_ROOT_PATH": "user_data",  # the key prefix
    }
    bucket = Bucket(endpoint, "decode-web", boto3.client("s3", endpoint_url=endpoint, region_name=region, **credentials))
    bucket.client.create_bucket(Bucket=bucket.name)
    with serve(tmp_path_factory.mktemp("web-cognito"), env) as running:
        # What a deployment sets on its bucket: the page's origin may POST uploads and GET downloads.
        bucket.client.put_bucket_cors(Bucket=bucket.name, CORSConfiguration={"CORSRules": [{
            "AllowedOrigins": [running.url], "AllowedMethods": ["GET", "POST"], "AllowedHeaders": ["*"], "MaxAgeSeconds": 600,
        }]})
        running.bucket = bucket
        yield running, pool


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    _require_chromium()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium_path(), args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@dataclass
class Watched:
    """A page and what went wrong on it."""

    page: Any
    origin: str
    folder: Path
    problems: list[str] = field(default_factory=list)
    allowed: list[str] = field(default_factory=list)  # console errors a test provokes on purpose
    downloads: list[str] = field(default_factory=list)  # the URLs the page downloaded
    step: int = 0

    def failed(self, request: Any) -> None:
        # The page ends its event stream on sign-out, by aborting it: not a failure.
        if not (request.url.startswith(f"{self.origin}/jobs/events/stream") and "ABORTED" in (request.failure or "")):
            self.problems.append(f"request failed: {request.url} {request.failure}")

    def console(self, message: Any) -> None:
        if message.type == "error" and not any(text in message.text for text in self.allowed):
            self.problems.append(f"console error: {message.text}")

    def shot(self, name: str, *, full_page: bool = False) -> Path:
        self.step += 1
        self.folder.mkdir(parents=True, exist_ok=True)
        path = self.folder / f"{self.step:02d}-{name}.png"
        self.page.screenshot(path=str(path), full_page=full_page)
        return path

    def assert_clean(self) -> None:
        # A link that Chromium turns into a download (a pre-signed S3 GET) ends its navigation as
        # aborted: that is the download, not a failure.
        downloaded = {f"request failed: {url} net::ERR_ABORTED" for url in self.downloads}
        problems = [p for p in self.problems if p not in downloaded]
        assert not problems, "\n".join(problems)


def watch(context: Any, origins: tuple[str, ...], folder: Path) -> Watched:
    page = context.new_page()
    page.set_default_timeout(10_000)
    watched = Watched(page, origins[0], folder)

    def route(route: Any) -> None:
        if route.request.url.startswith(tuple(f"{origin}/" for origin in origins)):
            route.continue_()
        else:  # the network is cut: nothing but the service itself
            watched.problems.append(f"request outside the service: {route.request.url}")
            route.abort()

    context.route("**/*", route)
    page.add_init_script(WATCH_SCRIPT)
    page.on("console", watched.console)
    page.on("pageerror", lambda e: watched.problems.append(f"page error: {e}"))
    page.on("requestfailed", watched.failed)
    page.on("download", lambda download: watched.downloads.append(download.url))
    return watched


@dataclass
class Site:
    """A running service and how a user signs in to it."""

    service: Service
    identity: str
    username: str  # the user's name in the page and their folder under USER_DATA_ROOT_PATH
    password: str
    origins: tuple[str, ...]  # where the page may send requests: the service, and Cognito's endpoint


@pytest.fixture
def site(request: pytest.FixtureRequest) -> Site:
    """`builtin` unless a test asks for more with `@pytest.mark.parametrize("site", [...], indirect=True)`."""
    identity = getattr(request, "param", "builtin")
    if identity == "cognito":
        service, pool = request.getfixturevalue("cognito_service")
        return Site(service, identity, pool.username, pool.password, (service.url, pool.endpoint))
    service = request.getfixturevalue("service")
    return Site(service, identity, "", "", (service.url,))


@pytest.fixture
def web(browser: Any, site: Site, request: pytest.FixtureRequest) -> Iterator[Watched]:
    context = browser.new_context(viewport={"width": 1280, "height": 800}, accept_downloads=True)
    watched = watch(context, site.origins, ARTIFACTS / request.node.name.removeprefix("test_"))
    try:
        yield watched
    finally:
        context.close()
