"""A fake of Mailjet's Send API v3.1 (`POST /v3.1/send`): a plain ASGI app served by uvicorn on
127.0.0.1 in a background thread, like tests/fakes/workerfacing.py.

It checks HTTP basic auth against the configured API key and secret (401 otherwise), checks the
shape of the messages (400 with per-message `Errors`, as Mailjet answers), records accepted bodies
and answers Mailjet-shaped success bodies. `mode` and `fail_next` simulate outages and rate limits.

Fixtures: `fake_mailjet_server` (one per session) and `fake_mailjet` (the same, reset per test).
Point the adapter at it with `api_url=fake.url` and `MAILJET_API_KEY` / `MAILJET_API_SECRET`.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import itertools
import json
import threading
import uuid
from collections.abc import Iterator
from typing import Any, Literal

import pytest

from tests.fakes.server import LocalAsgiServer, read_body

MAILJET_API_KEY = "mj-test-key"
MAILJET_API_SECRET = "mj-test-secret-do-not-log"
SEND_PATH = "/v3.1/send"

Mode = Literal["up", "down", "slow"]

UNAUTHORIZED_MESSAGE = (
    "API key authentication/authorization failure. You may be unauthorized to access the API or "
    "your API key may be expired. Visit API keys management section to check your keys."
)


class _Failure:
    def __init__(self, status: int, retry_after: str | None, body: Any) -> None:
        self.status, self.retry_after, self.body = status, retry_after, body


class FakeMailjet(LocalAsgiServer):
    """Start with `start()`/`stop()` or `with FakeMailjet(key, secret) as fake:`; `url` is its base URL."""

    name = "fake Mailjet"

    mode: Mode
    delay: float  # seconds, in "slow" mode

    def __init__(self, api_key: str = MAILJET_API_KEY, api_secret: str = MAILJET_API_SECRET) -> None:
        super().__init__()
        self.api_key = api_key
        self.api_secret = api_secret
        self._lock = threading.Lock()
        self._received: list[dict[str, Any]] = []
        self._requests = 0
        self._fail_next: list[_Failure] = []
        self._epoch = 0  # bumped by reset(): requests from before it record nothing
        self._message_ids = itertools.count(576460752303423488)
        self.reset()

    # --- what tests look at and change ---

    @property
    def received(self) -> list[dict[str, Any]]:
        """The JSON bodies of the sends accepted so far, oldest first (a copy)."""
        with self._lock:
            return list(self._received)

    @property
    def messages(self) -> list[dict[str, Any]]:
        """Every accepted message, flattened over `received`."""
        return [message for body in self.received for message in body["Messages"]]

    @property
    def requests(self) -> int:
        """How many `POST /v3.1/send` arrived, whatever was answered."""
        with self._lock:
            return self._requests

    def fail_next(
        self, count: int, status: int = 500, *, retry_after: float | str | None = None, body: Any = None
    ) -> None:
        """Answer the next `count` authenticated sends with `status` (and `Retry-After`, if given),
        whatever the mode. `body` replaces the Mailjet-shaped error body, e.g. to answer 200 with a
        message whose `Status` is not "success"."""
        header = None if retry_after is None else str(retry_after)
        with self._lock:
            self._fail_next.extend(_Failure(status, header, body) for _ in range(count))

    def reset(self) -> None:
        """Back to a fresh state: up, nothing received; requests still in flight will record nothing."""
        with self._lock:
            self.mode, self.delay = "up", 1.0
            self._received.clear()
            self._requests = 0
            self._fail_next.clear()
            self._epoch += 1

    # --- the ASGI app ---

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        assert scope["type"] == "http"
        body = await read_body(receive)
        status, answer, headers = await self._handle(scope, body)
        raw_headers = [(b"content-type", b"application/json"), *((k.encode(), v.encode()) for k, v in headers.items())]
        await send({"type": "http.response.start", "status": status, "headers": raw_headers})
        await send({"type": "http.response.body", "body": json.dumps(answer).encode()})

    async def _handle(self, scope: dict[str, Any], body: bytes) -> tuple[int, Any, dict[str, str]]:
        if scope["path"] != SEND_PATH:
            return 404, _error(404, "Object not found"), {}
        if scope["method"] != "POST":
            return 405, _error(405, "Method not allowed"), {}
        with self._lock:
            self._requests += 1
            epoch = self._epoch
        if not self._authorized(dict(scope["headers"]).get(b"authorization", b"")):
            return 401, _error(401, UNAUTHORIZED_MESSAGE), {}
        with self._lock:
            failure = self._fail_next.pop(0) if self._fail_next else None
            mode, delay = self.mode, self.delay
        if failure is not None:
            headers = {} if failure.retry_after is None else {"Retry-After": failure.retry_after}
            answer = failure.body if failure.body is not None else _error(failure.status, "fake Mailjet failure")
            return failure.status, answer, headers
        if mode == "down":
            return 503, _error(503, "Service Unavailable"), {}
        if mode == "slow":
            await asyncio.sleep(delay)
        try:
            payload = json.loads(body)
        except ValueError:
            return 400, _error(400, "Malformed JSON, please review the syntax and properties types."), {}
        errors = _validate(payload)
        if errors is not None:
            return 400, {"Messages": errors}, {}
        with self._lock:
            if epoch == self._epoch:
                self._received.append(payload)
            answers = [self._success(message) for message in payload["Messages"]]
        return 200, {"Messages": answers}, {}

    def _authorized(self, header: bytes) -> bool:
        scheme, _, encoded = header.decode("latin-1").partition(" ")
        if scheme.lower() != "basic":
            return False
        try:
            key, _, secret = base64.b64decode(encoded, validate=True).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            return False
        return key == self.api_key and secret == self.api_secret

    def _success(self, message: dict[str, Any]) -> dict[str, Any]:
        """Mailjet's answer for one sent message (called under the lock)."""

        def sent(recipients: list[dict[str, Any]]) -> list[dict[str, Any]]:
            answered = []
            for recipient in recipients:
                message_id = next(self._message_ids)
                answered.append(
                    {
                        "Email": recipient["Email"],
                        "MessageUUID": str(uuid.uuid4()),
                        "MessageID": message_id,
                        "MessageHref": f"https://api.mailjet.com/v3/REST/message/{message_id}",
                    }
                )
            return answered

        return {
            "Status": "success",
            "CustomID": message.get("CustomID", ""),
            "To": sent(message["To"]),
            "Cc": sent(message.get("Cc") or []),
            "Bcc": sent(message.get("Bcc") or []),
        }


def _error(status: int, message: str) -> dict[str, Any]:
    """The body of an error that is not about one message (auth, rate limit, server fault)."""
    return {"ErrorIdentifier": str(uuid.uuid4()), "StatusCode": status, "ErrorMessage": message}


def _validate(payload: Any) -> list[dict[str, Any]] | None:
    """None if every message is acceptable, else Mailjet's per-message statuses with `Errors`."""
    if not isinstance(payload, dict) or not isinstance(payload.get("Messages"), list) or not payload["Messages"]:
        return [{"Status": "error", "Errors": [_field_error("Messages", "At least one message is required.")]}]
    statuses, failed = [], False
    for message in payload["Messages"]:
        errors = _message_errors(message)
        failed = failed or bool(errors)
        statuses.append({"Status": "error", "Errors": errors} if errors else {"Status": "success"})
    return statuses if failed else None


def _message_errors(message: Any) -> list[dict[str, Any]]:
    if not isinstance(message, dict):
        return [_field_error("Messages", "A message must be an object.")]
    errors = []
    sender = message.get("From")
    if not isinstance(sender, dict) or not _is_address(sender.get("Email")):
        errors.append(_field_error("From.Email", "The From email address is missing or invalid."))
    recipients = message.get("To")
    if not isinstance(recipients, list) or not recipients:
        errors.append(_field_error("To", "At least one recipient is required in To."))
    else:
        for i, recipient in enumerate(recipients):
            if not isinstance(recipient, dict) or not _is_address(recipient.get("Email")):
                email = recipient.get("Email") if isinstance(recipient, dict) else recipient
                errors.append(_field_error(f"To[{i}].Email", f'"{email}" is an invalid email address.'))
    if not isinstance(message.get("Subject"), str):
        errors.append(_field_error("Subject", "Subject must be a string."))
    if not any(isinstance(message.get(part), str) for part in ("TextPart", "HTMLPart")) and "TemplateID" not in message:
        errors.append(_field_error("TextPart", "A message needs a TextPart, an HTMLPart or a TemplateID."))
    return errors


def _field_error(related_to: str, message: str) -> dict[str, Any]:
    return {
        "ErrorIdentifier": str(uuid.uuid4()),
        "ErrorCode": "fake-validation",
        "StatusCode": 400,
        "ErrorMessage": message,
        "ErrorRelatedTo": [related_to],
    }


def _is_address(value: Any) -> bool:
    if not isinstance(value, str) or value.count("@") != 1:
        return False
    local, domain = value.split("@")
    return bool(local) and "." in domain and not any(c.isspace() for c in value)




@pytest.fixture(scope="session")
def fake_mailjet_server() -> Iterator[FakeMailjet]:
    """One server for the session: stopping uvicorn takes ~0.2 s, too slow to pay in every test."""
    with FakeMailjet(MAILJET_API_KEY, MAILJET_API_SECRET) as fake:
        yield fake


@pytest.fixture
def fake_mailjet(fake_mailjet_server: FakeMailjet) -> FakeMailjet:
    """The fake Mailjet in a fresh state for each test, expecting MAILJET_API_KEY / MAILJET_API_SECRET."""
    fake_mailjet_server.reset()
    return fake_mailjet_server
