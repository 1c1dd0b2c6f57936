"""The Litestar application factory."""

from __future__ import annotations

import gc
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from litestar import Litestar
from litestar.config.cors import CORSConfig
from litestar.di import Provide
from litestar.openapi import OpenAPIConfig

from decode_userapi.container import Services, start_services, stop_services
from decode_userapi.entrypoints.http.deps import provide_principal
from decode_userapi.entrypoints.http.errors import EXCEPTION_HANDLERS
from decode_userapi.entrypoints.http.files import FilesController
from decode_userapi.entrypoints.http.headers import security_headers
from decode_userapi.entrypoints.http.internal import job_status
from decode_userapi.entrypoints.http.jobs import JobsController
from decode_userapi.entrypoints.http.limits import header_limits
from decode_userapi.entrypoints.http.openapi import (
    DOCS_CSP,
    DOCS_PATH,
    SCHEMA_PATH,
    ApiDocument,
    DocumentRenderPlugin,
    docs_handlers,
)
from decode_userapi.entrypoints.http.ops import Metrics, health, metrics_handler, ready, request_context
from decode_userapi.entrypoints.http.ratelimit import LoginRateLimiter
from decode_userapi.entrypoints.http.stream import StreamController, streams_end_on_exit_signals
from decode_userapi.entrypoints.http.users import ACCOUNT_HANDLERS, SERVICE_HANDLERS
from decode_userapi.entrypoints.web import web_handlers


def create_app(services: Services, *, manage_adapters: bool = True) -> Litestar:
    """An app over `services`. With `manage_adapters`, its lifespan starts and closes the adapters."""
    settings = services.settings()
    adapters = services.adapters

    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        if manage_adapters:
            await start_services(services)
        try:
            with streams_end_on_exit_signals(stream):  # else a server waits for open streams to end
                yield
        finally:
            if manage_adapters:
                await stop_services(services)

    # The use cases are the container's singletons, made here rather than in a first request (they
    # build their tables off the event loop).
    jobs, files, ops, users = services.jobs(), services.files(), services.ops(), services.users()
    stream = services.stream()
    login_limiter = LoginRateLimiter(settings.token_rate_per_minute_user, settings.token_rate_per_minute_address)
    metrics = Metrics()
    document = ApiDocument()
    email = adapters.email_sender()
    handlers: list[Any] = [
        *SERVICE_HANDLERS,
        FilesController,
        JobsController,
        StreamController,
        job_status,
        health,
        ready,
        metrics_handler(metrics, lambda: getattr(email, "failures", 0), lambda: stream.watching),
        *docs_handlers(document),
        *web_handlers(settings, os.environ),  # the web page, /ui/ (entrypoints/web)
    ]
    if settings.auth:
        handlers += ACCOUNT_HANDLERS
    cors = (
        CORSConfig(
            allow_origins=[settings.frontend_url],
            allow_credentials=True,
            allow_methods=["*"],
            allow_headers=["*"],
            expose_headers=["X-Total-Count", "ETag"],  # GET /jobs: read by scripts and pages across origins
        )
        if settings.frontend_url
        else None
    )
    app = Litestar(
        route_handlers=handlers,
        dependencies={
            # The caller its route's guard checked (guards.py); who may call what is declared there.
            "principal": Provide(provide_principal, sync_to_thread=False),
            "jobs": Provide(lambda: jobs, sync_to_thread=False),
            "files": Provide(lambda: files, sync_to_thread=False),
            "ops": Provide(lambda: ops, sync_to_thread=False),
            "users": Provide(lambda: users, sync_to_thread=False),
            "stream": Provide(lambda: stream, sync_to_thread=False),
            "stream_keep_alive": Provide(lambda: settings.stream_keep_alive_seconds, sync_to_thread=False),
            "login_limiter": Provide(lambda: login_limiter, sync_to_thread=False),
            "max_upload_bytes": Provide(lambda: settings.max_upload_bytes, sync_to_thread=False),
        },
        middleware=[header_limits(), request_context(metrics)],
        before_send=[security_headers(DOCS_PATH, DOCS_CSP)],
        exception_handlers=EXCEPTION_HANDLERS,  # type: ignore[arg-type]
        lifespan=[lifespan],
        cors_config=cors,
        request_max_body_size=settings.max_json_bytes,
        openapi_config=OpenAPIConfig(
            title="DECODE OpenCloud user-facing API",
            version="1.0.0",
            description="Files, jobs and identity for DECODE OpenCloud users. Interactive: /docs.",
            path=SCHEMA_PATH,  # the document (completed by `openapi.py`) at /schema/openapi.json
            render_plugins=[DocumentRenderPlugin(document)],
        ),
    )
    # What the guards (which take no dependencies) need.
    app.state.users = users
    app.state.jobs = jobs  # the revalidation in front of GET /jobs (jobs.py)
    app.state.internal_api_key = settings.internal_api_key
    app.state.trusted_origins = [settings.frontend_url] if settings.frontend_url else []  # cookie requests (guards.py)
    return app


def app_from_env() -> Litestar:
    """The app for `uvicorn --factory` (several workers, or reload): settings from the environment."""
    from decode_userapi.config import Settings
    from decode_userapi.container import build_services
    from decode_userapi.logging import configure_logging

    configure_logging()
    app = create_app(build_services(Settings.from_env()))
    settle_heap()
    return app


def settle_heap() -> None:
    """Move everything built so far (modules, the app, its routes) out of the garbage collector's
    sight: a full collection then walks only what requests create. Call once per serving process."""
    gc.collect()
    gc.freeze()
