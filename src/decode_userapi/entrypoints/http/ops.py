"""Operations: /health, /ready, /metrics, and the request context (id, timing) of every request."""

from __future__ import annotations

import re
import time
import uuid
from typing import Any

import msgspec
import structlog
from litestar import MediaType, Response, get
from litestar.di import NamedDependency
from litestar.enums import ScopeType
from litestar.openapi import ResponseSpec
from litestar.types import ASGIApp, Message, Receive, Scope, Send
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from decode_userapi.services.ops import OpsService

# Prometheus' text format. Litestar adds `; charset=utf-8` to every `text/` type itself, so the
# client library's CONTENT_TYPE_LATEST (which has it already) would send it twice.
METRICS_MEDIA_TYPE = "text/plain; version=0.0.4"
_REQUEST_ID = re.compile(r"[A-Za-z0-9._:\-]{1,128}")
REQUEST_ID_HEADER = "x-request-id"


class Metrics:
    """One registry per app, so several apps in one process (tests, embedding) never collide."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "decode_userapi_http_requests", "HTTP requests", ["method", "route", "status"], registry=self.registry
        )
        self.latency = Histogram(
            "decode_userapi_http_request_duration_seconds",
            "HTTP request duration",
            ["method", "route"],
            registry=self.registry,
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
        )
        self.jobs = Gauge("decode_userapi_jobs", "Jobs by status", ["status"], registry=self.registry)
        self.backlog = Gauge(
            "decode_userapi_dispatch_backlog", "Jobs not yet handed to the worker-facing API", registry=self.registry
        )
        self.dispatch_failures = Gauge(
            "decode_userapi_dispatch_failures",
            "Failed attempts to hand a job to the worker-facing API since start, by kind",
            ["kind"],
            registry=self.registry,
        )
        self.workerfacing_api_misconfigured = Gauge(
            "decode_userapi_workerfacing_api_misconfigured",
            "1 while the worker-facing API refuses our key or URL (401/403/404/405); jobs wait",
            registry=self.registry,
        )
        self.dispatch_failing = Gauge(
            "decode_userapi_dispatch_failing_seconds",
            "How long this process's attempts to hand jobs to the worker-facing API have failed; 0 while they succeed",
            registry=self.registry,
        )
        self.dispatch_oldest_pending = Gauge(
            "decode_userapi_dispatch_oldest_pending_seconds",
            "Age of the oldest job not yet handed to the worker-facing API; 0 if none",
            registry=self.registry,
        )
        self.email_failures = Gauge(
            "decode_userapi_email_failures", "Emails that could not be sent since start", registry=self.registry
        )
        self.open_streams = Gauge(
            "decode_userapi_open_streams", "Open GET /jobs/events/stream connections of this process", registry=self.registry
        )


def request_context(metrics: Metrics) -> Any:
    """ASGI middleware: a request id (from X-Request-ID or new) bound to every log line and returned
    in the response; request count and latency by route template."""

    def middleware(app: ASGIApp) -> ASGIApp:
        async def handle(scope: Scope, receive: Receive, send: Send) -> None:
            if scope["type"] != ScopeType.HTTP:
                await app(scope, receive, send)
                return
            given = next((v.decode("latin-1") for k, v in scope["headers"] if k == b"x-request-id"), "")
            request_id = given if _REQUEST_ID.fullmatch(given) else uuid.uuid4().hex
            status = 500
            started = time.perf_counter()

            async def send_with_id(message: Message) -> None:
                nonlocal status
                if message["type"] == "http.response.start":
                    status = message["status"]
                    message["headers"] = [*message.get("headers", []), (b"x-request-id", request_id.encode())]
                await send(message)

            with structlog.contextvars.bound_contextvars(request_id=request_id):
                try:
                    await app(scope, receive, send_with_id)
                finally:
                    route = scope.get("path_template") or "unmatched"
                    method = scope["method"]
                    metrics.requests.labels(method, route, str(status)).inc()
                    metrics.latency.labels(method, route).observe(time.perf_counter() - started)

        return handle

    return middleware


@get("/health", tags=["operations"], summary="The process is alive", media_type=MediaType.JSON)
async def health() -> dict[str, str]:
    return {"status": "ok"}


@get(
    "/ready",
    tags=["operations"],
    summary="Database, storage and application config answer",
    responses={503: ResponseSpec(data_container=dict[str, Any], description="Not ready: `checks` says what failed")},
)
async def ready(ops: NamedDependency[OpsService]) -> Response[dict[str, Any]]:
    readiness = await ops.readiness()
    body = {
        "status": "ready" if readiness.ready else "not ready",
        "checks": readiness.checks,
        "dispatch": msgspec.to_builtins(readiness.dispatch),
    }
    return Response(body, status_code=200 if readiness.ready else 503)


def metrics_handler(metrics: Metrics, email_failures: Any, open_streams: Any = lambda: 0) -> Any:
    @get("/metrics", tags=["operations"], summary="Prometheus metrics", include_in_schema=False)
    async def serve_metrics(ops: NamedDependency[OpsService]) -> Response[bytes]:
        stats = None
        try:
            stats = await ops.stats()
        except Exception:  # noqa: BLE001 - request metrics are still worth serving without the database
            pass
        else:
            metrics.jobs.clear()
            for status, count in stats.by_status.items():
                metrics.jobs.labels(status).set(count)
            metrics.backlog.set(stats.dispatch_backlog)
        report = ops.dispatch_report(stats)
        metrics.dispatch_failing.set(report.failing_seconds or 0.0)
        if stats is not None:
            metrics.dispatch_oldest_pending.set(report.oldest_pending_seconds or 0.0)
        dispatch = ops.dispatch_health()
        for kind, count in dispatch.failures.items():
            metrics.dispatch_failures.labels(kind).set(count)
        metrics.workerfacing_api_misconfigured.set(1 if dispatch.misconfigured else 0)
        metrics.email_failures.set(email_failures())
        metrics.open_streams.set(open_streams())
        return Response(generate_latest(metrics.registry), media_type=METRICS_MEDIA_TYPE)

    return serve_metrics
