"""Issue 5: a schema-driven fuzz of the whole HTTP API from its own OpenAPI document (schemathesis).

The app runs under uvicorn on a real socket, as in production, on local disk with SQLite and with
PostgreSQL. Every operation of `/docs/openapi.json` gets generated requests, valid by the schema and
not, sent with a valid token (and the internal key for `/_job_status`). Every answer must be
- no 5xx;
- a status code the document lists for the operation;
- of the content type, and body schema, the document gives for that status.
Bounded: a fixed number of examples per operation and mode, derandomized so CI runs are repeatable.
"""

from __future__ import annotations

import socket
import threading
import time
from collections import Counter
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import schemathesis
import uvicorn
from hypothesis import HealthCheck, Phase, given
from hypothesis import settings as hypothesis_settings
from hypothesis.errors import Unsatisfiable
from schemathesis.core.failures import FailureGroup
from schemathesis.generation import GenerationMode
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from decode_userapi.container import build_services
from decode_userapi.entrypoints.http.app import create_app
from tests.integration.harness import INTERNAL_KEY, PASSWORD, stacks

pytestmark = stacks("local-sqlite", "local-postgres")

EXAMPLES_PER_OPERATION = 25  # per operation and mode, on each stack (~35 operations): the suite must stay under 6 min
# Answers that never end by design, which schemathesis would wait on until its timeout: the live
# stream (its refusals and its messages are checked by tests/integration/test_http_stream.py).
NOT_FUZZED = {"/jobs/events/stream"}
CHECKS = [
    schemathesis.checks.not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]


class LiveServer:
    """The app under uvicorn in a thread, on a free port of 127.0.0.1; lifespan on, as in production."""

    def __init__(self, app: Any) -> None:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 0))
        self._sock = sock
        config = uvicorn.Config(app, lifespan="on", log_level="warning", timeout_graceful_shutdown=2)
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [sock]}, daemon=True, name="fuzzed-userapi"
        )
        self.url = f"http://127.0.0.1:{sock.getsockname()[1]}"

    def __enter__(self) -> LiveServer:
        self._thread.start()
        deadline = time.monotonic() + 30
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the app did not start")
            time.sleep(0.01)
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=10)
        self._sock.close()


@pytest.fixture
def live_api(settings) -> Iterator[str]:
    with LiveServer(create_app(build_services(settings))) as server:
        yield server.url


def token_for(base_url: str, name: str) -> str:
    with httpx.Client(base_url=base_url) as http:
        assert http.post("/user", data={"username": name, "password": PASSWORD}).status_code == 201
        r = http.post("/token", data={"username": name, "password": PASSWORD})
        assert r.status_code == 201, r.text
        token = r.json()["id_token"]
        auth = {"Authorization": f"Bearer {token}"}
        # something to find: a file in data/, a folder in config/
        r = http.post("/files/data/upload", headers=auth, files={"file": ("a.txt", b"alice")})
        assert r.status_code == 201
        assert http.post("/files/config/test/", headers=auth).status_code == 201
    return token


def fuzz_operation(
    operation: Any, base_url: str, headers: dict[str, str], mode: GenerationMode, sent: Counter[str]
) -> None:
    @given(case=operation.as_strategy(generation_mode=mode))
    @hypothesis_settings(
        max_examples=EXAMPLES_PER_OPERATION,
        deadline=None,
        derandomize=True,
        database=None,
        phases=[Phase.explicit, Phase.generate, Phase.shrink],
        suppress_health_check=list(HealthCheck),
    )
    def run(case: Any) -> None:
        sent[f"{operation.label} ({mode.value})"] += 1
        case.call_and_validate(base_url=base_url, headers=headers, checks=CHECKS, timeout=30)

    run()


def test_fuzz_the_openapi_document(live_api: str) -> None:
    token = token_for(live_api, "alice@example.org")
    headers = {"Authorization": f"Bearer {token}", "x-api-key": INTERNAL_KEY}
    document = httpx.get(f"{live_api}/docs/openapi.json").json()
    schema = schemathesis.openapi.from_dict(document)
    failures: list[str] = []
    sent: Counter[str] = Counter()
    operations = 0
    for result in schema.get_all_operations():
        operation = result.ok()
        operations += 1
        if operation.path in NOT_FUZZED:
            continue
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            try:
                fuzz_operation(operation, live_api, headers, mode, sent)
            except Unsatisfiable as e:
                if mode is GenerationMode.POSITIVE:
                    failures.append(f"{operation.label} ({mode.value}): no request could be generated: {e}")
                # negative: nothing to make invalid (no parameters, no body)
            except (Exception, FailureGroup) as e:  # noqa: BLE001 - collect every operation's findings, then fail once
                failures.append(f"{operation.label} ({mode.value}): {e}")
    assert operations >= 20, "the document lost operations"
    print(f"fuzz: {sum(sent.values())} requests", dict(sent))
    assert not failures, "\n\n".join(failures)
