"""Issue 5: brute-force limits on `POST /token` and `/login`, and security headers on every response.

The limits are in-process state, the same on every stack: local disk and SQLite are enough here.
"""

from __future__ import annotations

import msgspec
import pytest
from litestar.testing import AsyncTestClient

from decode_userapi.container import build_services
from decode_userapi.entrypoints.http.app import create_app
from tests.integration.harness import PASSWORD, make_user, stacks

pytestmark = stacks("local-sqlite")


async def sign_in(client, username: str, password: str = PASSWORD, path: str = "/token"):
    return await client.post(path, data={"username": username, "password": password})


def assert_limited(r) -> int:
    assert r.status_code == 429, r.text
    assert r.headers["content-type"].startswith("application/json")
    assert "try again" in r.json()["detail"]
    seconds = int(r.headers["retry-after"])
    assert 1 <= seconds <= 60
    return seconds


async def test_token_attempts_are_limited_per_username(client, settings):
    assert settings.token_rate_per_minute_user == 10  # the default
    await make_user(client, "alice@example.org")  # one successful attempt
    for _ in range(9):  # and nine wrong passwords: all count
        assert (await sign_in(client, "alice@example.org", "wrong-pass-1")).status_code == 400
    assert_limited(await sign_in(client, "alice@example.org"))  # even the right password now
    assert_limited(await sign_in(client, "ALICE@example.org"))  # spellings share the budget
    assert_limited(await sign_in(client, "alice@example.org", path="/login"))
    # another user of the same address is not held back
    await make_user(client, "bob")
    assert (await sign_in(client, "bob")).status_code == 201


async def test_token_attempts_are_limited_per_address(client, settings):
    assert settings.token_rate_per_minute_address == 30  # the default
    for i in range(30):  # unknown users count too (404)
        assert (await sign_in(client, f"guess{i}")).status_code == 404
    assert_limited(await sign_in(client, "someone-new"))
    assert_limited(await sign_in(client, "someone-new", path="/login"))


async def test_refused_form_is_not_an_attempt(client):
    for _ in range(50):
        r = await client.post("/token", data={"username": "alice"})
        assert r.status_code == 422
    assert (await sign_in(client, "alice")).status_code == 404


@pytest.mark.parametrize(("per_user", "per_address"), [(2, 30), (0, 0)])
async def test_limits_come_from_settings(settings, per_user, per_address):
    configured = msgspec.structs.replace(
        settings, token_rate_per_minute_user=per_user, token_rate_per_minute_address=per_address
    )
    async with AsyncTestClient(app=create_app(build_services(configured))) as client:
        statuses = [(await sign_in(client, "nobody")).status_code for _ in range(40)]
    if per_user:
        assert statuses[:per_user] == [404] * per_user and set(statuses[per_user:]) == {429}
    else:
        assert set(statuses) == {404}  # 0 turns the limits off


# --- headers ---------------------------------------------------------------------------------------

API_HEADERS = {
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "x-frame-options": "DENY",
    "cache-control": "no-store",
    "content-security-policy": "default-src 'none'; frame-ancestors 'none'",
}


async def test_security_headers_on_api_answers(client):
    alice = await make_user(client, "alice@example.org")
    r = await client.post("/files/data/upload", headers=alice.headers, files={"file": ("a.txt", b"a")})
    assert r.status_code == 201
    answers = {
        "token": await sign_in(client, "alice@example.org"),
        "json": await client.get("/files/", headers=alice.headers),
        "download": await client.get("/files/data/a.txt/download", headers=alice.headers),
        "zip": await client.get("/files/data/download", headers=alice.headers),
        "no content": await client.delete("/files/data/none", headers=alice.headers),
        "domain error": await client.get("/files/data/none/download", headers=alice.headers),
        "unauthenticated": await client.get("/files/"),
        "unmatched route": await client.get("/no/such/route"),
        "wrong method": await client.patch("/files/data/a.txt", headers=alice.headers),
        "bad body": await client.post("/jobs", headers=alice.headers, content=b"{"),
        "welcome": await client.get("/"),
        "internal": await client.put("/_job_status", json={"job_id": 1, "status": "running"}),
    }
    for name, r in answers.items():
        got = {k: r.headers.get(k) for k in API_HEADERS}
        assert got == API_HEADERS, (name, r.status_code)
    assert answers["download"].headers["content-disposition"] == "attachment; filename=a.txt"


async def test_docs_keep_working(client):
    for path in ("/docs", "/docs/openapi.json"):
        r = await client.get(path)
        assert r.status_code == 200
        assert r.headers["x-content-type-options"] == "nosniff"
        assert r.headers["x-frame-options"] == "DENY"
        # the Swagger page loads its scripts and styles from the service itself, and nothing else
        assert "script-src 'self';" in r.headers["content-security-policy"]
        assert "http" not in r.headers["content-security-policy"]
    assert "swagger" in (await client.get("/docs")).text.lower()


async def test_cors_preflight_only_for_the_frontend(client, settings):
    preflight = {"access-control-request-method": "GET", "access-control-request-headers": "authorization"}
    r = await client.options("/files/", headers={"origin": settings.frontend_url, **preflight})
    assert r.status_code == 204 and r.headers["access-control-allow-origin"] == settings.frontend_url
    assert r.headers["x-content-type-options"] == "nosniff"
    r = await client.options("/files/", headers={"origin": "https://evil.example.com", **preflight})
    assert r.headers.get("access-control-allow-origin") != "https://evil.example.com"


# --- the worker-facing API's key -------------------------------------------------------------------

STATUS_UPDATE = {"job_id": 1, "status": "running", "runtime_details": None}


async def test_internal_key_is_required_and_never_echoed(client, capfd):
    from tests.integration.harness import INTERNAL_KEY

    wrong = "wrong-key-0123456789abcdef"
    capfd.readouterr()
    for headers in [
        {},
        {"x-api-key": ""},
        {"x-api-key": wrong},
        {"x-api-key": INTERNAL_KEY[:-1]},
        {"x-api-key": INTERNAL_KEY + "x"},
        {"x-api-key": INTERNAL_KEY.upper()},
        {"authorization": f"Bearer {INTERNAL_KEY}"},
    ]:
        r = await client.put("/_job_status", headers=headers, json=STATUS_UPDATE)
        assert r.status_code == 401, headers
        assert r.json()["detail"] and INTERNAL_KEY not in r.text and wrong not in r.text
    r = await client.put("/_job_status", headers={"x-api-key": INTERNAL_KEY}, json=STATUS_UPDATE)
    assert r.status_code == 404  # the key is right; there is no job 1
    logged = capfd.readouterr()
    assert INTERNAL_KEY not in logged.out + logged.err and wrong not in logged.out + logged.err


async def test_without_a_configured_key_the_internal_api_is_closed(settings):
    closed = msgspec.structs.replace(settings, internal_api_key=None)
    async with AsyncTestClient(app=create_app(build_services(closed))) as client:
        for headers in [{}, {"x-api-key": ""}, {"x-api-key": "None"}, {"x-api-key": "null"}, {"x-api-key": "anything"}]:
            r = await client.put("/_job_status", headers=headers, json=STATUS_UPDATE)
            assert r.status_code == 401, headers


# --- the built-in identity's signing key ------------------------------------------------------------


async def test_generated_signing_key_is_private_and_kept(settings):
    import stat
    from pathlib import Path

    generated = msgspec.structs.replace(settings, token_signing_key=None)
    key_file = Path(generated.data_dir) / "signing.key"
    assert not key_file.exists()
    async with AsyncTestClient(app=create_app(build_services(generated))) as client:
        alice = await make_user(client, "alice@example.org")
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert len(key_file.read_bytes().strip()) >= 32
    # a restart reads the same key: tokens issued before it stay valid
    async with AsyncTestClient(app=create_app(build_services(generated))) as client:
        assert (await client.get("/user", headers=alice.headers)).status_code == 200
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600


# --- built-in ID tokens ------------------------------------------------------------------------------


def builtin_token(settings, algorithm: str = "HS256", key: str | None = None, **changes):
    import time

    import jwt

    now = int(time.time())
    claims = {
        "iss": "decode-userapi", "aud": "decode-userapi", "sub": "alice", "username": "alice",
        "cognito:groups": ["users"], "token_use": "id", "iat": now, "nbf": now, "exp": now + 600,
    }
    claims.update(changes)
    claims = {k: v for k, v in claims.items() if v is not None}
    return jwt.encode(claims, key or settings.token_signing_key, algorithm=algorithm)


@pytest.mark.parametrize(
    ("algorithm", "changes"),
    [
        pytest.param(
            "HS512", {}, id="another-hmac-algorithm", marks=pytest.mark.filterwarnings("ignore:The HMAC key")
        ),
        pytest.param("HS256", {"nbf": 4_000_000_000}, id="not-yet-valid"),
        pytest.param("HS256", {"iat": 4_000_000_000, "nbf": None}, id="issued-in-the-future"),
        pytest.param("HS256", {"exp": 1}, id="expired"),
        pytest.param("HS256", {"iss": "someone-else"}, id="wrong-issuer"),
        pytest.param("HS256", {"aud": "another-client"}, id="wrong-audience"),
        pytest.param("HS256", {"token_use": "access"}, id="access-token"),
        pytest.param("HS256", {"token_use": None}, id="no-token-use"),
        pytest.param("HS256", {"username": "../bob"}, id="unusable-username"),
        pytest.param("HS256", {"exp": None}, id="no-expiry"),
    ],
)
async def test_builtin_tokens_with_bad_claims_are_refused(client, settings, algorithm, changes):
    good = builtin_token(settings)
    assert (await client.get("/user", headers={"Authorization": f"Bearer {good}"})).status_code == 200
    bad = builtin_token(settings, algorithm, **changes)
    for path in ("/user", "/files/", "/jobs"):
        r = await client.get(path, headers={"Authorization": f"Bearer {bad}"})
        assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer", path


# --- cross-site request forgery: the /login cookie on unsafe methods --------------------------------

OWN = "http://testserver.local"  # where AsyncTestClient's requests arrive


async def cookie_client_for(client, name: str) -> None:
    """`client` holding `name`'s /login cookie (and no Authorization header)."""
    await make_user(client, name)
    assert (await sign_in(client, name, path="/login")).status_code == 201


async def test_cookie_requests_on_unsafe_methods_must_come_from_the_service_itself(client):
    await cookie_client_for(client, "carol@example.org")
    upload = {"files": {"file": ("a.txt", b"1")}}
    for headers in ({"Origin": "https://evil.example"}, {"Origin": "null"}, {"Referer": "https://evil.example/page"},
                    {"Origin": "https://testserver.local"}, {"Origin": "http://testserver.local:8080"}, {}):
        r = await client.post("/files/data/x/upload", headers=headers, **upload)
        assert r.status_code == 403, (headers, r.text)
        assert "origin" in r.json()["detail"].lower() and "Bearer" in r.json()["detail"]
        r = await client.delete("/jobs/1", headers=headers)
        assert r.status_code == 403, (headers, r.text)
    assert (await client.get("/files/data/")).json() == []  # nothing was written
    # From the service's own origin (as a browser says it in Origin, or only in Referer): accepted.
    for headers in ({"Origin": OWN}, {"Origin": "HTTP://TestServer.local:80"}, {"Referer": f"{OWN}/ui/#/files"}):
        r = await client.post("/files/data/x/upload", headers=headers, **upload)
        assert r.status_code == 201, (headers, r.text)
    # Safe methods need no Origin (reading cannot be forged into a change).
    assert (await client.get("/files/data/x/", headers={"Origin": "https://evil.example"})).status_code == 200


async def test_bearer_requests_are_not_checked_for_their_origin(client):
    user = await make_user(client, "dave@example.org")
    r = await client.post("/files/data/y/upload", headers={**user.headers, "Origin": "https://evil.example"},
                          files={"file": ("a.txt", b"1")})
    assert r.status_code == 201, r.text


async def test_cookie_requests_from_frontend_url_and_over_https(settings):
    """FRONTEND_URL's origin is the service's too (its page calls with credentials, CORS); the scheme
    is the one the request arrived with (https here, as behind a trusted proxy's X-Forwarded-Proto)."""
    configured = msgspec.structs.replace(settings, frontend_url="https://app.example.org")
    async with AsyncTestClient(app=create_app(build_services(configured)), base_url="https://api.example.org") as client:
        await cookie_client_for(client, "erin@example.org")
        for origin, status in (("https://app.example.org", 201), ("https://api.example.org", 201),
                               ("http://api.example.org", 403), ("https://other.example.org", 403)):
            r = await client.post("/files/data/z/upload", headers={"Origin": origin}, files={"file": ("a.txt", b"1")})
            assert r.status_code == status, (origin, r.text)
