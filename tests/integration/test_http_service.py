"""CONTRACT "Service" and the AUTH=1 account endpoints."""

from __future__ import annotations

from tests.integration.harness import PASSWORD, make_user


async def test_welcome_and_docs(client):
    r = await client.get("/")
    assert r.status_code == 200 and r.json() == "Welcome to the DECODE OpenCloud User-facing API"
    assert (await client.get("/docs")).status_code == 200
    schema = (await client.get("/docs/openapi.json")).json()
    assert "/jobs" in schema["paths"] and "/_job_status" in schema["paths"]


async def test_access_info(client):
    r = await client.get("/access_info")
    assert r.status_code == 200 and r.json() == {"local": {"token_url": "/token"}}


async def test_user_lifecycle(client):
    r = await client.post("/user", data={"username": "carol@example.org", "password": PASSWORD})
    assert r.status_code == 201 and r.json() == {"email": "carol@example.org", "groups": ["users"]}
    r = await client.post("/user", data={"username": "carol@example.org", "password": PASSWORD})
    assert r.status_code == 409
    r = await client.post("/user", data={"username": "dave", "password": "short"})
    assert r.status_code == 400 and "password" in r.json()["detail"]
    r = await client.post("/token", data={"username": "carol@example.org", "password": "wrong-pass-1"})
    assert r.status_code == 400
    r = await client.post("/token", data={"username": "nobody", "password": PASSWORD})
    assert r.status_code == 404
    r = await client.post("/token", data={"username": "carol@example.org", "password": PASSWORD})
    assert r.status_code == 201
    token = r.json()
    assert isinstance(token["id_token"], str) and token["expires_in"] > 0
    r = await client.get("/user", headers={"Authorization": f"Bearer {token['id_token']}"})
    assert r.json() == {"email": "carol@example.org", "groups": ["users"]}


async def test_groups_query(client):
    user = await make_user(client, "erin", groups=["users", "admins"])
    r = await client.get("/user", headers=user.headers)
    assert r.json() == {"email": None, "groups": ["users", "admins"]}


async def test_login_cookie(client):
    await make_user(client, "frank@example.org")
    r = await client.post("/login", data={"username": "frank@example.org", "password": PASSWORD})
    assert r.status_code == 201
    cookie = r.headers["set-cookie"]
    assert cookie.startswith('Authorization="Bearer ') and "HttpOnly" in cookie
    r = await client.get("/files/")
    assert r.status_code == 200


async def test_bad_account_requests_are_4xx(client):
    for data in [{}, {"username": "x"}, {"username": "../../etc", "password": PASSWORD}, {"username": "a" * 2000, "password": PASSWORD}]:
        r = await client.post("/user", data=data)
        assert 400 <= r.status_code < 500, data
        assert r.json()["detail"]
    r = await client.post("/token", content=b"\xff\x00", headers={"content-type": "application/x-www-form-urlencoded"})
    assert 400 <= r.status_code < 500


async def test_expired_and_forged_tokens(client, settings):
    import jwt

    forged = jwt.encode({"sub": "alice", "username": "alice", "cognito:groups": ["users"], "token_use": "id"}, "another-key-of-sufficient-length-0123456789", algorithm="HS256")
    none_alg = jwt.encode({"sub": "alice", "username": "alice"}, None, algorithm="none")
    for token in [forged, none_alg, "a.b.c", ""]:
        r = await client.get("/user", headers={"Authorization": f"Bearer {token}"})
        assert r.status_code == 401, token


async def test_cors_for_frontend(client):
    r = await client.options(
        "/jobs",
        headers={"Origin": "https://frontend.example.org", "Access-Control-Request-Method": "GET"},
    )
    assert r.headers.get("access-control-allow-origin") == "https://frontend.example.org"
    r = await client.get("/", headers={"Origin": "https://evil.example.org"})
    assert "access-control-allow-origin" not in r.headers
