"""Sends email through Mailjet's Send API v3.1, with the mailjet-rest client.

mailjet-rest is synchronous (requests), so each call runs in a worker thread. Its own transport
retries are switched off: this adapter owns the retry policy (attempts, capped backoff, a capped
`Retry-After`), so a rate-limited Mailjet can never hold a thread for as long as it asks.

mailjet-rest >= 1.9 raises on 4xx/5xx (the `requests` response stays reachable through `__cause__`);
older releases return the response whatever its status. Both are read the same way below.
"""

from __future__ import annotations

import asyncio
import html
import json
import random
from dataclasses import dataclass
from email.utils import parseaddr
from typing import Any

import requests
import structlog
from mailjet_rest.client import ApiError, Client
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

from decode_userapi.domain.backoff import backoff_delay
from decode_userapi.domain.errors import DependencyUnavailable

log = structlog.get_logger(__name__)

API_VERSION = "v3.1"
EXCERPT_CHARS = 200


@dataclass(frozen=True)
class _Outcome:
    """What one attempt came to."""

    ok: bool
    retryable: bool
    problem: str  # e.g. "HTTP 503", "ConnectionError: ...", for logs and the error detail
    retry_after: float | None = None
    message_id: Any = None


class MailjetEmailSender:
    """EmailSender over Mailjet: one plain-text message per `send`, with an HTML-escaped copy."""

    def __init__(
        self,
        api_key: str,
        api_secret: str,
        sender: str,
        *,
        api_url: str | None = None,
        attempts: int = 5,
        backoff: float = 1.0,
        max_backoff: float = 30.0,
        timeout: float = 10.0,
    ) -> None:
        if attempts < 1:
            raise ValueError("attempts must be at least 1")
        name, address = parseaddr(sender)
        if "@" not in address:
            raise ValueError(f"the email sender address {sender!r} is not an email address")
        self._from: dict[str, str] = {"Email": address, **({"Name": name} if name else {})}
        self._api_key = api_key
        self._api_secret = api_secret
        self._api_url = api_url
        self._attempts = attempts
        self._backoff = backoff
        self._max_backoff = max_backoff
        self._timeout = timeout
        # Built now, so bad credentials or a bad URL fail at start-up (mailjet-rest checks both).
        self._client: Client | None = self._new_client()

    def _new_client(self) -> Client:
        options: dict[str, Any] = {"version": API_VERSION, "timeout": self._timeout}
        if self._api_url is not None:
            options["api_url"] = self._api_url
        client = Client(auth=(self._api_key, self._api_secret), **options)
        session = getattr(client, "session", None)  # mailjet-rest >= 1.9; older ones do not retry
        if isinstance(session, requests.Session):
            for adapter in session.adapters.values():
                if isinstance(adapter, HTTPAdapter):
                    adapter.max_retries = Retry(0, read=False)
        return client

    async def start(self) -> None:
        if self._client is None:
            self._client = self._new_client()

    async def aclose(self) -> None:
        if self._client is not None:
            client, self._client = self._client, None
            close = getattr(client, "close", None)  # mailjet-rest < 1.9 holds no session
            if close is not None:
                close()

    async def send(self, to: str, subject: str, text: str) -> None:
        client = self._client
        if client is None:
            raise RuntimeError("MailjetEmailSender is closed")
        payload = {
            "Messages": [
                {
                    "From": self._from,
                    "To": [{"Email": to}],
                    "Subject": subject,
                    "TextPart": text,
                    # Escaped: job names and runtime details come from users and workers.
                    "HTMLPart": f'<pre style="white-space: pre-wrap">{html.escape(text)}</pre>',
                }
            ]
        }
        fields = {"to": to, "subject": subject}
        outcome = _Outcome(ok=False, retryable=True, problem="not attempted")
        for attempt in range(1, self._attempts + 1):
            outcome = await asyncio.to_thread(self._attempt, client, payload)
            if outcome.ok:
                log.info("email.sent", **fields, attempt=attempt, message_id=outcome.message_id)
                return
            if not outcome.retryable:
                log.error("email.failed", **fields, attempt=attempt, error=outcome.problem)
                raise DependencyUnavailable(f"Mailjet refused the email ({outcome.problem})")
            if attempt < self._attempts:
                delay = self._delay(attempt, outcome.retry_after)
                log.warning("email.retry", **fields, attempt=attempt, error=outcome.problem, delay=round(delay, 3))
                await asyncio.sleep(delay)
        log.error("email.failed", **fields, attempt=self._attempts, error=outcome.problem)
        raise DependencyUnavailable(
            f"the email service (Mailjet) is unavailable ({outcome.problem} after {self._attempts} attempts)"
        )

    def _delay(self, attempt: int, retry_after: float | None) -> float:
        """Mailjet's `Retry-After` if it gave one, else backoff, 2*backoff, ... (jittered); at most max_backoff."""
        return backoff_delay(attempt, random.random(), base=self._backoff, cap=self._max_backoff, retry_after=retry_after)

    # --- one attempt, in a worker thread ---

    def _attempt(self, client: Client, payload: dict[str, Any]) -> _Outcome:
        try:
            response = client.send.create(data=payload, timeout=self._timeout)
        except Exception as e:  # noqa: BLE001 - classified below; anything unknown is not retried
            return self._outcome_of_error(e)
        return self._outcome_of_response(response)

    def _outcome_of_response(self, response: requests.Response) -> _Outcome:
        status = response.status_code
        if status >= 400:
            return _Outcome(
                ok=False,
                retryable=_retryable(status),
                problem=self._problem(status, response),
                retry_after=_retry_after(response),
            )
        try:
            body = response.json()
            message = body["Messages"][0]
            message_status = message.get("Status")
        except (ValueError, KeyError, IndexError, TypeError, AttributeError):
            # Mailjet took the request, so a retry could send the email twice.
            return _Outcome(ok=False, retryable=False, problem=f"HTTP {status} with an unexpected body")
        if message_status != "success":
            return _Outcome(
                ok=False,
                retryable=False,
                problem=f"HTTP {status}, message status {message_status!r}: {self._errors(body)}",
            )
        try:
            message_id = message["To"][0]["MessageID"]
        except (KeyError, IndexError, TypeError):
            message_id = None
        return _Outcome(ok=True, retryable=False, problem="", message_id=message_id)

    def _outcome_of_error(self, error: Exception) -> _Outcome:
        response = _response_in(error)
        if response is not None:
            return self._outcome_of_response(response)
        status = getattr(error, "status_code", None)
        if isinstance(status, int) and status >= 400:
            return _Outcome(ok=False, retryable=_retryable(status), problem=f"HTTP {status}")
        problem = self._redact(_describe(error))
        if _is_transport_error(error):
            return _Outcome(ok=False, retryable=True, problem=problem)
        return _Outcome(ok=False, retryable=False, problem=problem)

    def _problem(self, status: int, response: requests.Response) -> str:
        try:
            detail = self._errors(response.json())
        except ValueError:
            detail = " ".join(response.text[:EXCERPT_CHARS].split())
        return f"HTTP {status}: {detail}" if detail else f"HTTP {status}"

    def _errors(self, body: Any) -> str:
        """Mailjet's error messages: top-level `ErrorMessage`, or each message's `Errors[].ErrorMessage`."""
        found: list[str] = []
        if isinstance(body, dict):
            if isinstance(body.get("ErrorMessage"), str):
                found.append(body["ErrorMessage"])
            for message in body.get("Messages") or []:
                if isinstance(message, dict):
                    for error in message.get("Errors") or []:
                        if isinstance(error, dict) and isinstance(error.get("ErrorMessage"), str):
                            found.append(error["ErrorMessage"])
        text = "; ".join(found) if found else json.dumps(body)
        return self._redact(" ".join(text[:EXCERPT_CHARS].split()))

    def _redact(self, text: str) -> str:
        """Never let the API secret reach a log line or an error detail, should anything echo it."""
        return text.replace(self._api_secret, "***") if self._api_secret else text


def _retryable(status: int) -> bool:
    """Rate limits and server faults may pass; any other refusal will be repeated."""
    return status == 429 or status >= 500


def _retry_after(response: requests.Response) -> float | None:
    """A numeric `Retry-After` (seconds); the HTTP-date form is ignored (backoff applies)."""
    value = response.headers.get("Retry-After")
    if value is None:
        return None
    try:
        seconds = float(value)
    except ValueError:
        return None
    return seconds if seconds >= 0 else None


def _chain(error: BaseException) -> list[BaseException]:
    """The error and its causes (mailjet-rest raises its own errors `from` the requests error)."""
    chain: list[BaseException] = []
    current: BaseException | None = error
    while current is not None and current not in chain and len(chain) < 8:
        chain.append(current)
        current = current.__cause__ or current.__context__
    return chain


def _response_in(error: Exception) -> requests.Response | None:
    for link in _chain(error):
        response = getattr(link, "response", None)
        if isinstance(response, requests.Response):
            return response
    return None


def _is_transport_error(error: Exception) -> bool:
    """No answer from Mailjet: connection refused or reset, timeout, broken response."""
    return any(isinstance(link, (requests.RequestException, ApiError)) for link in _chain(error))


def _describe(error: BaseException) -> str:
    """The innermost requests error if there is one (it names the host and cause, never headers)."""
    chain = _chain(error)
    inner = next((e for e in reversed(chain) if isinstance(e, requests.RequestException)), error)
    message = " ".join(str(inner).split())[:EXCERPT_CHARS]
    return f"{type(inner).__name__}: {message}" if message else type(inner).__name__
