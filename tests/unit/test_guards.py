"""Who may call what is declared with the route (STYLE 14): checked on the app's route table."""

from __future__ import annotations

from decode_userapi.config import Settings
from decode_userapi.container import in_memory_services
from decode_userapi.entrypoints.http.app import create_app
from decode_userapi.entrypoints.http.guards import internal_only, users_only


def _handlers():
    app = create_app(in_memory_services(Settings(auth=True)), manage_adapters=False)
    for route in app.routes:
        for handler in getattr(route, "route_handlers", []):
            guards = [g for layer in handler.ownership_layers for g in (getattr(layer, "guards", None) or [])]
            methods = set(getattr(handler, "http_methods", ()))
            if methods == {"OPTIONS"}:  # CORS preflight, answered before any guard
                continue
            yield route.path, methods, handler, guards


def test_every_route_that_reads_the_principal_is_guarded():
    for path, methods, handler, guards in _handlers():
        if "principal" in handler.parsed_fn_signature.parameters:
            assert users_only in guards, (path, methods)


def test_files_jobs_and_the_caller_need_the_users_group():
    seen = set()
    for path, methods, _, guards in _handlers():
        if path.startswith(("/files", "/jobs")) or (path == "/user" and "GET" in methods):
            assert users_only in guards, (path, methods)
            seen.add(path.split("/")[1])
        if path == "/_job_status":
            assert guards == [internal_only]
            seen.add(path)
        if path in ("/", "/access_info", "/token", "/login") or (path == "/user" and "POST" in methods):
            assert guards == [], (path, methods)
    assert seen == {"files", "jobs", "user", "/_job_status"}
