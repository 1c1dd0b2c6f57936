"""The web page's files as the service serves them (no browser): where browsers land, types, caching,
and the Content-Security-Policy, with the built-in identity and with Cognito."""

from __future__ import annotations

import re

from tests.integration.harness import identities, stacks

pytestmark = [stacks("local-sqlite"), identities("builtin", "cognito")]

BROWSER_ACCEPT = "text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,*/*;q=0.8"


async def test_browsers_are_sent_to_the_page_and_api_clients_keep_the_json(client):
    r = await client.get("/", headers={"Accept": BROWSER_ACCEPT}, follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/ui/"
    for accept in (None, "*/*", "application/json"):
        r = await client.get("/", headers={"Accept": accept} if accept else {})
        assert r.status_code == 200 and r.json() == "Welcome to the DECODE OpenCloud User-facing API"
        assert r.headers["content-type"] == "application/json"
        assert "Accept" in r.headers["vary"]


async def test_the_page_and_its_files(client):
    page = await client.get("/ui/")
    assert page.status_code == 200 and page.headers["content-type"] == "text/html; charset=utf-8"
    scripts = re.findall(r'<script type="module" src="([^"]+)"', page.text)
    styles = re.findall(r'<link rel="stylesheet" href="([^"]+)"', page.text)
    assert scripts == ["/ui/js/app.js"] and styles == ["/ui/style.css"]
    assert "<script>" not in page.text and " style=" not in page.text  # nothing inline: the CSP allows none
    types = {
        "/ui/js/app.js": "text/javascript; charset=utf-8",
        "/ui/js/files.js": "text/javascript; charset=utf-8",
        "/ui/style.css": "text/css; charset=utf-8",
        "/ui/icon.svg": "image/svg+xml",
        "/ui/config.json": "application/json",
    }
    for path, media_type in types.items():
        r = await client.get(path)
        assert r.status_code == 200 and r.headers["content-type"] == media_type, path
        assert r.headers["cache-control"] == "no-cache" and r.headers["etag"].startswith('"')
        again = await client.get(path, headers={"If-None-Match": r.headers["etag"]})
        assert again.status_code == 304 and again.content == b""
    for missing in ("/ui/nothing.js", "/ui/../pyproject.toml", "/ui/js/../../__init__.py"):
        assert (await client.get(missing)).status_code == 404, missing


async def test_a_strict_policy_that_names_cognito_where_it_signs_in(client, settings):
    csp = (await client.get("/ui/")).headers["content-security-policy"]
    directives = dict(d.strip().split(" ", 1) for d in csp.split(";"))
    assert directives["default-src"] == "'none'"
    assert directives["script-src"] == "'self'" and directives["style-src"] == "'self'"
    assert directives["frame-ancestors"] == "'none'" and directives["object-src"] == "'none'"
    connect = directives["connect-src"].split()
    config = (await client.get("/ui/config.json")).json()
    if settings.identity == "cognito":
        endpoint = config["cognito_endpoint"]
        assert connect[0] == "'self'" and any(endpoint.startswith(source) for source in connect[1:])
    else:
        assert connect == ["'self'"] and config == {}
    # The API keeps its own, stricter policy.
    assert (await client.get("/access_info")).headers["content-security-policy"].startswith("default-src 'none'")
