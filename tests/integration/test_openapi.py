"""The served OpenAPI document drives clients, and /docs renders from the service alone (no CDN)."""

from __future__ import annotations

import re
from html.parser import HTMLParser
from urllib.parse import urljoin

import pytest

from decode_userapi.entrypoints.http.openapi import OPERATION_IDS
from tests.integration.harness import stacks

pytestmark = stacks("local-sqlite")


class References(HTMLParser):
    """Every URL the page makes the browser load: script/link/img sources and `data-*-url` values."""

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []
        self.inline_scripts = 0
        self._in_script = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        for name in ("src", "href"):
            if values.get(name):
                self.urls.append(values[name] or "")
        self.urls += [v or "" for k, v in attrs if k.startswith("data-") and k.endswith("-url")]
        self._in_script = tag == "script" and not values.get("src")

    def handle_data(self, data: str) -> None:
        if self._in_script and data.strip():
            self.inline_scripts += 1

    def handle_endtag(self, tag: str) -> None:
        self._in_script = False


async def test_docs_page_loads_everything_from_the_service(client):
    page = await client.get("/docs")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    refs = References()
    refs.feed(page.text)
    assert refs.inline_scripts == 0  # the CSP allows scripts from 'self' only
    assert len(refs.urls) >= 4, refs.urls
    scripts = []
    for url in refs.urls:
        assert not re.match(r"^(https?:)?//", url), f"{url} is loaded from elsewhere"
        r = await client.get(urljoin("http://testserver.local/docs", url))
        assert r.status_code == 200, url
        if url.endswith(".js"):
            scripts.append(r.text)
        if url.endswith(".css"):  # what the style sheet loads: inline data only
            assert all(ref.strip("'\"").startswith("data:") for ref in re.findall(r"url\(([^)]*)\)", r.text))
    # what the start-up script references: the document, given to it by the page
    init = next(s for s in scripts if "SwaggerUIBundle(" in s and len(s) < 10_000)
    assert "openapiUrl" in init and "validatorUrl: null" in init and "http" not in init
    assert (await client.get("/openapi.json")).json()["openapi"].startswith("3.1")
    csp = page.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "connect-src 'self'" in csp and "http" not in csp


async def test_the_document_is_served_where_clients_look(client):
    bodies = [(await client.get(path)).content for path in ("/schema/openapi.json", "/openapi.json", "/docs/openapi.json")]
    assert bodies[0] == bodies[1] == bodies[2]


@pytest.fixture
async def document(client):
    return (await client.get("/openapi.json")).json()


def operations(document):
    for path, item in document["paths"].items():
        for method, operation in item.items():
            if method in ("get", "post", "put", "delete"):
                yield method, path, operation


async def test_every_operation_is_named(document):
    named = {(method, path): op.get("operationId") for method, path, op in operations(document)}
    assert named == OPERATION_IDS


async def test_file_operations_one_by_one(document):
    paths = document["paths"]
    ref = "#/components/schemas/"
    ok = {
        ("get", "/files/{path}"): ("200", {"type": "array", "items": {"$ref": ref + "FileInfo"}}),
        ("put", "/files/{path}"): ("200", {"$ref": ref + "FileInfo"}),
        ("get", "/files/{path}/url"): ("200", {"$ref": ref + "FileHTTPRequest"}),
        ("post", "/files/{path}/url"): ("201", {"$ref": ref + "FileHTTPRequest"}),
        (
            "post",
            "/files/{path}/upload",
        ): ("201", {"oneOf": [{"$ref": ref + "FileInfo"}, {"type": "array", "items": {"$ref": ref + "FileInfo"}}]}),
    }
    for (method, path), (status, schema) in ok.items():
        assert paths[path][method]["responses"][status]["content"]["application/json"]["schema"] == schema
    download = paths["/files/{path}/download"]["get"]["responses"]["200"]["content"]
    assert download["application/octet-stream"]["schema"] == {"type": "string", "format": "binary"}
    assert paths["/files/{path}/"]["post"]["responses"]["201"]["content"]["application/json"]["schema"] == {"type": "null"}
    assert "content" not in paths["/files/{path}"]["delete"]["responses"]["204"]
    upload = paths["/files/{path}/upload"]["post"]["requestBody"]["content"]["multipart/form-data"]["schema"]
    assert upload["properties"]["file"]["items"] == {"type": "string", "format": "binary"}
    assert "/files" not in paths and "/files/{p}" not in paths


async def test_form_bodies(document):
    for path in ("/user", "/token", "/login"):
        body = document["paths"][path]["post"]["requestBody"]["content"]["application/x-www-form-urlencoded"]
        assert body["schema"]["required"] == ["username", "password"]


async def test_the_security_the_document_declares_is_the_one_enforced(client, document):
    schemes = document["components"]["securitySchemes"]
    assert schemes["bearer"] == {**schemes["bearer"], "type": "http", "scheme": "bearer", "bearerFormat": "JWT"}
    assert schemes["internalApiKey"]["name"] == "x-api-key"
    for method, path, operation in operations(document):
        url = path.replace("{path}", "data/x").replace("{job_id}", "1")
        kwargs = {"json": {"path": "data/y"}} if method == "put" else {}
        if method == "put" and path == "/_job_status":
            kwargs = {"json": {"job_id": 1, "status": "running"}}
        r = await client.request(method.upper(), url, **kwargs)
        declared = operation.get("security")
        if declared == [{"bearer": []}] or declared == [{"internalApiKey": []}]:
            assert r.status_code == 401, (method, path, r.status_code)
        else:
            assert declared is None and r.status_code != 401, (method, path)
