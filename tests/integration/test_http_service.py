"""CONTRACT "Service" and the AUTH=1 account endpoints, with the built-in identity provider and with
Cognito (a moto user pool per test), on local disk and SQLite."""

from __future__ import annotations

from tests.integration.harness import PASSWORD, identities, make_user, stacks

pytestmark = [stacks("local-sqlite"), identities("builtin", "cognito")]


async def test_welcome_and_docs(client):
    r = await client.get("/")
    assert r.status_code == 200 and r.json() == "Welcome to the DECODE OpenCloud User-facing API"
    assert (await client.get("/docs")).status_code == 200
    schema = (await client.get("/docs/openapi.json")).json()
    assert "/jobs" in schema["paths"] and "/_job_status" in schema["paths"]


async def test_access_info(client, settings):
    r = await client.get("/access_info")
    assert r.status_code == 200
    if settings.identity == "cognito":
        assert r.json() == {
            "cognito": {
                "user_pool_id": settings.cognito_user_pool_id,
                "client_id": settings.cognito_client_id,
                "region": settings.cognito_region,
            }
        }
    else:
        assert r.json() == {"local": {"token_url": "/token"}}


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
    assert r.json()["email"] == "erin"  # a plain login name has no email address: the username stands in
    assert sorted(r.json()["groups"]) == ["admins", "users"]


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


def signed_like_the_issuer(settings, *, expires_in: int) -> str:
    """A token for "alice" signed as the configured identity provider signs its ID tokens."""
    import time

    import jwt

    now = int(time.time())
    claims = {"token_use": "id", "cognito:groups": ["users"], "iat": now, "exp": now + expires_in}
    if settings.identity == "cognito":
        from moto.utilities.utils import load_resource

        from decode_userapi.adapters.identity.cognito import cognito_issuer

        # moto signs every pool's tokens with one key of its own, kid "dummy"
        key = jwt.PyJWK(load_resource("cognitoidp/resources/jwks-private.json")).key
        claims |= {"iss": cognito_issuer(settings.cognito_region, settings.cognito_user_pool_id),
                   "aud": settings.cognito_client_id, "cognito:username": "alice"}
        return jwt.encode(claims, key, algorithm="RS256", headers={"kid": "dummy"})
    claims |= {"iss": "decode-userapi", "aud": "decode-userapi", "sub": "alice", "username": "alice"}
    return jwt.encode(claims, settings.token_signing_key, algorithm="HS256")


async def test_expired_and_forged_tokens(client, settings):
    import jwt

    valid = signed_like_the_issuer(settings, expires_in=600)
    r = await client.get("/user", headers={"Authorization": f"Bearer {valid}"})
    assert r.status_code == 200 and r.json() == {"email": "alice", "groups": ["users"]}

    expired = signed_like_the_issuer(settings, expires_in=-3600)
    claims = {"sub": "alice", "username": "alice", "cognito:groups": ["users"], "token_use": "id"}
    forged = jwt.encode(claims, "another-key-of-sufficient-length-0123456789", algorithm="HS256")
    none_alg = jwt.encode({"sub": "alice", "username": "alice"}, None, algorithm="none")
    for token in [expired, forged, none_alg, "a.b.c", ""]:
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


async def test_get_user_needs_the_users_group(client):
    # The web frontend sends a signed-in user outside `users` to its "not confirmed" page on this 403.
    outsider = await make_user(client, "grace@example.org", groups=["guests"])
    r = await client.get("/user", headers=outsider.headers)
    assert r.status_code == 403 and "users" in r.json()["detail"]
    r = await client.get("/user")
    assert r.status_code == 401 and r.json()["detail"]


async def test_email_is_always_a_string(client):
    r = await client.post("/user", data={"username": "heidi", "password": PASSWORD})
    assert r.status_code == 201 and r.json() == {"email": "heidi", "groups": ["users"]}
    user = await make_user(client, "ivan@example.org")
    assert (await client.get("/user", headers=user.headers)).json() == {"email": "ivan@example.org", "groups": ["users"]}


async def test_usernames_beginning_with_a_dot_are_refused(client):
    for name in (".hidden", ".", "..", ".a@example.org"):
        r = await client.post("/user", data={"username": name, "password": PASSWORD})
        assert r.status_code == 422, (name, r.text)
        assert r.json()["detail"]
    r = await client.post("/token", data={"username": ".hidden", "password": PASSWORD})
    assert r.status_code == 404  # nothing was created


async def test_refused_forms_and_queries_name_the_field(client):
    r = await client.post("/user", data={"username": "judy"})
    assert r.status_code == 422 and "password" in r.json()["detail"]
    r = await client.post("/user", data={"password": PASSWORD})
    assert r.status_code == 422 and "username" in r.json()["detail"]
    r = await client.post("/user", data={"username": "judy", "password": PASSWORD}, params={"groups": ""})
    assert r.status_code == 422 and "groups" in r.json()["detail"]
    r = await client.post("/token", json={"username": "judy", "password": PASSWORD})  # not a form
    assert r.status_code == 422 and "username" in r.json()["detail"]
