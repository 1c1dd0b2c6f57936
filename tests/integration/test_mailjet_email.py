"""MailjetEmailSender (the real mailjet-rest client) against the fake Send API v3.1."""

from __future__ import annotations

import base64
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from structlog.testing import capture_logs

from decode_userapi.adapters.email.background import BackgroundEmailSender
from decode_userapi.adapters.email.mailjet import MailjetEmailSender
from decode_userapi.domain.errors import DependencyUnavailable
from tests.fakes.mailjet import MAILJET_API_KEY, MAILJET_API_SECRET, FakeMailjet

SENDER = "noreply@decode.example.org"
TO = "alice@example.org"
FAST = {"attempts": 3, "backoff": 0.01, "max_backoff": 0.05, "timeout": 2.0}

OpenSender = Callable[..., Any]


@pytest.fixture
async def open_sender(fake_mailjet: FakeMailjet) -> AsyncIterator[OpenSender]:
    """Build started senders pointed at the fake (fast retries unless told otherwise); closed after the test."""
    opened: list[MailjetEmailSender] = []

    async def open_(**options: Any) -> MailjetEmailSender:
        arguments = {"api_url": fake_mailjet.url, **FAST, **options}
        key = arguments.pop("api_key", MAILJET_API_KEY)
        secret = arguments.pop("api_secret", MAILJET_API_SECRET)
        sender = MailjetEmailSender(key, secret, arguments.pop("sender", SENDER), **arguments)
        await sender.start()
        opened.append(sender)
        return sender

    yield open_
    for sender in opened:
        await sender.aclose()


async def test_sends_one_plain_text_message(fake_mailjet: FakeMailjet, open_sender: OpenSender) -> None:
    sender = await open_sender()
    with capture_logs() as logs:
        await sender.send(TO, "Job 7 finished", "Your job run-1 finished.\nOutputs are in output/run-1/.")

    assert fake_mailjet.received == [
        {
            "Messages": [
                {
                    "From": {"Email": SENDER},
                    "To": [{"Email": TO}],
                    "Subject": "Job 7 finished",
                    "TextPart": "Your job run-1 finished.\nOutputs are in output/run-1/.",
                    "HTMLPart": '<pre style="white-space: pre-wrap">Your job run-1 finished.\n'
                    "Outputs are in output/run-1/.</pre>",
                }
            ]
        }
    ]
    assert [entry["event"] for entry in logs] == ["email.sent"]
    assert isinstance(logs[0]["message_id"], int)


async def test_sender_name_goes_into_from(fake_mailjet: FakeMailjet, open_sender: OpenSender) -> None:
    sender = await open_sender(sender=f"DECODE OpenCloud <{SENDER}>")
    await sender.send(TO, "s", "t")
    assert fake_mailjet.messages[0]["From"] == {"Email": SENDER, "Name": "DECODE OpenCloud"}


async def test_html_part_escapes_markup_from_runtime_details(
    fake_mailjet: FakeMailjet, open_sender: OpenSender
) -> None:
    sender = await open_sender()
    details = 'failed: <script>alert("x")</script> & <img src=x onerror=alert(1)>'
    await sender.send(TO, "Job failed", details)

    (message,) = fake_mailjet.messages
    assert message["TextPart"] == details
    assert "<script>" not in message["HTMLPart"] and "<img" not in message["HTMLPart"]
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; &amp; &lt;img src=x" in message["HTMLPart"]


async def test_retries_after_429_and_500_then_succeeds(fake_mailjet: FakeMailjet, open_sender: OpenSender) -> None:
    fake_mailjet.fail_next(1, 429, retry_after=0)
    fake_mailjet.fail_next(1, 500)
    sender = await open_sender()
    with capture_logs() as logs:
        await sender.send(TO, "s", "t")

    assert fake_mailjet.requests == 3
    assert len(fake_mailjet.received) == 1
    assert [entry["event"] for entry in logs] == ["email.retry", "email.retry", "email.sent"]
    assert logs[0]["error"].startswith("HTTP 429") and logs[1]["error"].startswith("HTTP 500")


async def test_retry_after_replaces_the_backoff(fake_mailjet: FakeMailjet, open_sender: OpenSender) -> None:
    fake_mailjet.fail_next(1, 429, retry_after=0)
    sender = await open_sender(backoff=10.0, max_backoff=10.0)  # without Retry-After: 5 s or more
    started = time.monotonic()
    await sender.send(TO, "s", "t")
    assert time.monotonic() - started < 2
    assert fake_mailjet.requests == 2


async def test_retry_after_is_capped_by_max_backoff(fake_mailjet: FakeMailjet, open_sender: OpenSender) -> None:
    fake_mailjet.fail_next(1, 429, retry_after=3600)
    sender = await open_sender(max_backoff=0.05)
    with capture_logs() as logs:
        started = time.monotonic()
        await sender.send(TO, "s", "t")
    assert time.monotonic() - started < 2
    assert logs[0]["event"] == "email.retry" and logs[0]["delay"] == 0.05


async def test_gives_up_after_the_attempts(fake_mailjet: FakeMailjet, open_sender: OpenSender) -> None:
    fake_mailjet.mode = "down"
    sender = await open_sender(attempts=3)
    with capture_logs() as logs, pytest.raises(DependencyUnavailable) as raised:
        await sender.send(TO, "s", "t")

    assert fake_mailjet.requests == 3
    assert fake_mailjet.received == []
    assert "HTTP 503" in raised.value.detail and "after 3 attempts" in raised.value.detail
    assert [entry["event"] for entry in logs] == ["email.retry", "email.retry", "email.failed"]


async def test_a_refused_message_is_not_retried(fake_mailjet: FakeMailjet, open_sender: OpenSender) -> None:
    sender = await open_sender()
    with pytest.raises(DependencyUnavailable) as raised:
        await sender.send("not-an-address", "s", "t")

    assert fake_mailjet.requests == 1
    assert "HTTP 400" in raised.value.detail
    assert '"not-an-address" is an invalid email address' in raised.value.detail


@pytest.mark.parametrize("status", [400, 403, 404, 413])
async def test_client_errors_other_than_429_are_not_retried(
    fake_mailjet: FakeMailjet, open_sender: OpenSender, status: int
) -> None:
    fake_mailjet.fail_next(3, status)
    sender = await open_sender()
    with pytest.raises(DependencyUnavailable, match=f"HTTP {status}"):
        await sender.send(TO, "s", "t")
    assert fake_mailjet.requests == 1


async def test_a_200_whose_message_status_is_not_success_fails(
    fake_mailjet: FakeMailjet, open_sender: OpenSender
) -> None:
    body = {"Messages": [{"Status": "error", "Errors": [{"StatusCode": 400, "ErrorMessage": "blocked sender"}]}]}
    fake_mailjet.fail_next(1, 200, body=body)
    sender = await open_sender()
    with pytest.raises(DependencyUnavailable) as raised:
        await sender.send(TO, "s", "t")

    assert fake_mailjet.requests == 1  # Mailjet answered: a retry could send the email twice
    assert "'error'" in raised.value.detail and "blocked sender" in raised.value.detail


async def test_wrong_credentials_fail_without_showing_the_secret(
    fake_mailjet: FakeMailjet, open_sender: OpenSender
) -> None:
    wrong_secret = "wrong-secret-value"
    sender = await open_sender(api_secret=wrong_secret)
    with capture_logs() as logs, pytest.raises(DependencyUnavailable) as raised:
        await sender.send(TO, "s", "t")

    assert fake_mailjet.requests == 1
    assert "HTTP 401" in raised.value.detail and "API key authentication" in raised.value.detail
    assert wrong_secret not in raised.value.detail and wrong_secret not in repr(logs)


async def test_the_fake_checks_basic_auth(fake_mailjet: FakeMailjet) -> None:
    import httpx

    good = base64.b64encode(f"{MAILJET_API_KEY}:{MAILJET_API_SECRET}".encode()).decode()
    body = {"Messages": [{"From": {"Email": SENDER}, "To": [{"Email": TO}], "Subject": "s", "TextPart": "t"}]}
    async with httpx.AsyncClient(base_url=fake_mailjet.url) as client:
        missing = await client.post("/v3.1/send", json=body)
        wrong = await client.post("/v3.1/send", json=body, auth=(MAILJET_API_KEY, "nope"))
        right = await client.post("/v3.1/send", json=body, headers={"Authorization": f"Basic {good}"})

    assert (missing.status_code, wrong.status_code, right.status_code) == (401, 401, 200)
    assert right.json()["Messages"][0]["Status"] == "success"
    assert right.json()["Messages"][0]["To"][0]["Email"] == TO


async def test_unreachable_mailjet(open_sender: OpenSender) -> None:
    sender = await open_sender(api_url="http://127.0.0.1:1", attempts=2)
    with pytest.raises(DependencyUnavailable) as raised:
        await sender.send(TO, "s", "t")
    assert "ConnectionError" in raised.value.detail and "after 2 attempts" in raised.value.detail
    assert MAILJET_API_SECRET not in raised.value.detail


async def test_a_slow_answer_times_out_and_is_retried(fake_mailjet: FakeMailjet, open_sender: OpenSender) -> None:
    fake_mailjet.mode, fake_mailjet.delay = "slow", 0.6
    sender = await open_sender(timeout=0.2, attempts=2)
    with pytest.raises(DependencyUnavailable) as raised:
        await sender.send(TO, "s", "t")
    assert "Timeout" in raised.value.detail
    assert fake_mailjet.requests == 2


async def test_background_send_returns_at_once_and_drain_waits(
    fake_mailjet: FakeMailjet, open_sender: OpenSender
) -> None:
    fake_mailjet.mode, fake_mailjet.delay = "slow", 0.5
    background = BackgroundEmailSender(await open_sender())

    started = time.monotonic()
    await background.send(TO, "Job finished", "done")
    assert time.monotonic() - started < 0.2
    assert fake_mailjet.received == []

    await background.drain()
    assert time.monotonic() - started >= 0.5
    assert [m["Subject"] for m in fake_mailjet.messages] == ["Job finished"]


async def test_background_send_swallows_a_failure_after_the_retries(
    fake_mailjet: FakeMailjet, open_sender: OpenSender
) -> None:
    fake_mailjet.mode = "down"
    background = BackgroundEmailSender(await open_sender(attempts=3, backoff=0.1, max_backoff=0.1))

    started = time.monotonic()
    with capture_logs() as logs:
        await background.send(TO, "Job failed", "boom")
        assert time.monotonic() - started < 0.1
        await background.drain()

    assert fake_mailjet.requests == 3
    assert fake_mailjet.received == []
    assert [entry["event"] for entry in logs].count("email.failed") >= 1


async def test_settings_are_checked_when_built() -> None:
    with pytest.raises(ValueError, match="not an email address"):
        MailjetEmailSender(MAILJET_API_KEY, MAILJET_API_SECRET, "nobody")
    with pytest.raises(ValueError, match="attempts"):
        MailjetEmailSender(MAILJET_API_KEY, MAILJET_API_SECRET, SENDER, attempts=0)
    with pytest.raises(ValueError):  # noqa: PT011 - mailjet-rest refuses anything but mailjet.com and loopback hosts
        MailjetEmailSender(MAILJET_API_KEY, MAILJET_API_SECRET, SENDER, api_url="https://mail.example.org")


async def test_a_closed_sender_refuses_to_send(open_sender: OpenSender) -> None:
    sender = await open_sender()
    await sender.aclose()
    with pytest.raises(RuntimeError):
        await sender.send(TO, "s", "t")
    await sender.start()  # and can be started again
