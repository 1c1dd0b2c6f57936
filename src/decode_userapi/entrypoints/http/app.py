"""The Litestar application factory."""

from __future__ import annotations

import functools
import gc
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from litestar import Litestar
from litestar.config.cors import CORSConfig
from litestar.di import Provide
from litestar.openapi import OpenAPIConfig
from litestar.openapi.plugins import SwaggerRenderPlugin

from decode_userapi.container import Services, start_services, stop_services
from decode_userapi.entrypoints.http.deps import provide_caller, provide_principal
from decode_userapi.entrypoints.http.errors import EXCEPTION_HANDLERS
from decode_userapi.entrypoints.http.files import FilesController
from decode_userapi.entrypoints.http.headers import security_headers
from decode_userapi.entrypoints.http.internal import job_status
from decode_userapi.entrypoints.http.jobs import JobsController
from decode_userapi.entrypoints.http.ops import Metrics, health, metrics_handler, ready, request_context
from decode_userapi.entrypoints.http.ratelimit import LoginRateLimiter
from decode_userapi.entrypoints.http.users import ACCOUNT_HANDLERS, SERVICE_HANDLERS

DOCS_PATH = "/docs"


def create_app(services: Services, *, manage_adapters: bool = True) -> Litestar:
    """An app over `services`. With `manage_adapters`, its lifespan starts and closes the adapters."""
    settings = services.settings()
    adapters = services.adapters

    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        if manage_adapters:
            await start_services(services)
        try:
            yield
        finally:
            if manage_adapters:
                await stop_services(services)

    # The use cases are stateless: one of each per app, made at first use (the container's factories
    # resolve a dozen providers per call: a measurable share of a status update's CPU).
    jobs, files, ops = (functools.cache(provider) for provider in (services.jobs, services.files, services.ops))
    metrics = Metrics()
    email = adapters.email_sender()
    handlers: list[Any] = [
        *SERVICE_HANDLERS,
        FilesController,
        JobsController,
        job_status,
        health,
        ready,
        metrics_handler(metrics, lambda: getattr(email, "failures", 0)),
    ]
    if settings.auth:
        handlers += ACCOUNT_HANDLERS
    cors = (
        CORSConfig(
            allow_origins=[settings.frontend_url],
            allow_credentials=True,
            allow_methods=["*"],
            allow_headers=["*"],
        )
        if settings.frontend_url
        else None
    )
    app = Litestar(
        route_handlers=handlers,
        dependencies={
            "principal": Provide(provide_principal),
            "caller": Provide(provide_caller),
            "jobs": Provide(lambda: jobs(), sync_to_thread=False),
            "files": Provide(lambda: files(), sync_to_thread=False),
            "ops": Provide(lambda: ops(), sync_to_thread=False),
        },
        middleware=[request_context(metrics)],
        before_send=[security_headers(DOCS_PATH)],
        exception_handlers=EXCEPTION_HANDLERS,  # type: ignore[arg-type]
        lifespan=[lifespan],
        cors_config=cors,
        request_max_body_size=settings.max_json_bytes,
        openapi_config=OpenAPIConfig(
            title="DECODE OpenCloud user-facing API",
            version="1.0.0",
            path=DOCS_PATH,
            render_plugins=[SwaggerRenderPlugin(path="/")],
        ),
    )
    app.state.identity = adapters.identity()
    app.state.internal_api_key = settings.internal_api_key
    app.state.max_upload_bytes = settings.max_upload_bytes
    app.state.login_limiter = LoginRateLimiter(
        settings.token_rate_per_minute_user, settings.token_rate_per_minute_address
    )
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
