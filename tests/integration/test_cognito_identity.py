"""CognitoIdentityProvider against moto's Cognito (accounts, real moto tokens and moto's JWKS), and against
tokens we sign ourselves with keys served from an in-process JWKS (httpx MockTransport)."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import socket
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import boto3
import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from decode_userapi.adapters.identity.cognito import CognitoIdentityProvider, cognito_issuer, secret_hash
from decode_userapi.domain.errors import (
    DependencyUnavailable,
    InvalidRequest,
    Unauthenticated,
    UnknownUser,
    UserExists,
    WeakPassword,
    WrongPassword,
)
from decode_userapi.domain.identity import Principal
from tests.fakes.aws import LocalAws

PASSWORD = "correct-horse-42"
FLOWS = ["ALLOW_USER_PASSWORD_AUTH", "ALLOW_REFRESH_TOKEN_AUTH"]


# --- moto: a user pool with two app clients ------------------------------------------------------


class Pool:
    def __init__(self, aws: LocalAws) -> None:
        self.aws = aws
        self.admin = boto3.client("cognito-idp", **aws.client_kwargs())
        self.id = self.admin.create_user_pool(
            PoolName=f"decode-{uuid.uuid4().hex[:8]}",
            Policies={
                "PasswordPolicy": {
                    "MinimumLength": 10,
                    "RequireLowercase": True,
                    "RequireNumbers": True,
                    "RequireUppercase": False,
                    "RequireSymbols": False,
                }
            },
        )["UserPool"]["Id"]
        # moto puts attributes into ID tokens only when the client lists them as readable
        common = {"UserPoolId": self.id, "ExplicitAuthFlows": FLOWS, "ReadAttributes": ["email", "email_verified"]}
        self.client_id = self.admin.create_user_pool_client(ClientName="public", **common)["UserPoolClient"][
            "ClientId"
        ]
        secret_client = self.admin.create_user_pool_client(ClientName="confidential", GenerateSecret=True, **common)
        self.secret_client_id = secret_client["UserPoolClient"]["ClientId"]
        self.client_secret = secret_client["UserPoolClient"]["ClientSecret"]
        self.jwks_url = f"{aws.endpoint_url}/{self.id}/.well-known/jwks.json"

    def provider(self, **kwargs: Any) -> CognitoIdentityProvider:
        kwargs = {"client_id": self.client_id, "jwks_url": self.jwks_url, **kwargs}
        return CognitoIdentityProvider(self.id, region=self.aws.region, **kwargs)

    def user_exists(self, username: str) -> bool:
        try:
            self.admin.admin_get_user(UserPoolId=self.id, Username=username)
        except self.admin.exceptions.UserNotFoundException:
            return False
        return True


@pytest.fixture(scope="module")
def pool(local_aws: LocalAws) -> Pool:
    return Pool(local_aws)


@pytest.fixture
async def cognito(pool: Pool) -> AsyncIterator[CognitoIdentityProvider]:
    # no endpoint_url: AWS_ENDPOINT_URL (set by `local_aws`) must reach the SDK, as in a deployment
    provider = pool.provider()
    await provider.start()
    yield provider
    await provider.aclose()


def new_name(email: bool = True) -> str:
    name = f"user-{uuid.uuid4().hex[:10]}"
    return f"{name}@example.com" if email else name


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def test_register_issue_token_authenticate_round_trip(cognito: CognitoIdentityProvider, pool: Pool) -> None:
    username = new_name()
    registered = await cognito.register(username, PASSWORD, ["users", "beta-testers"])
    assert registered == Principal(user_id=username, email=username, groups=("users", "beta-testers"))

    token, expires_in = await cognito.issue_token(username, PASSWORD)
    assert expires_in > 0
    assert jwt.get_unverified_header(token)["alg"] == "RS256"
    principal = await cognito.authenticate(token)
    assert principal.user_id == username
    assert principal.email == username
    assert set(principal.groups) == {"users", "beta-testers"}
    assert pool.admin.get_group(UserPoolId=pool.id, GroupName="beta-testers")["Group"]["GroupName"] == "beta-testers"


async def test_plain_login_name_gets_default_group_and_no_email(cognito: CognitoIdentityProvider) -> None:
    username = new_name(email=False)
    assert await cognito.register(username, PASSWORD, []) == Principal(username, None, ("users",))
    token, _ = await cognito.issue_token(username, PASSWORD)
    assert await cognito.authenticate(token) == Principal(user_id=username, email=None, groups=("users",))


async def test_duplicate_user(cognito: CognitoIdentityProvider) -> None:
    username = new_name()
    await cognito.register(username, PASSWORD, ["users"])
    with pytest.raises(UserExists):
        await cognito.register(username, "another-pass-99", ["users"])


@pytest.mark.parametrize("password", ["short1", "no-digits-at-all", ""])
async def test_weak_password_leaves_no_account(cognito: CognitoIdentityProvider, pool: Pool, password: str) -> None:
    username = new_name()
    with pytest.raises(WeakPassword):
        await cognito.register(username, password, ["users"])
    assert not pool.user_exists(username)
    await cognito.register(username, PASSWORD, ["users"])  # the name is free again
    assert pool.user_exists(username)


async def test_unusable_username_or_group(cognito: CognitoIdentityProvider, pool: Pool) -> None:
    with pytest.raises(InvalidRequest):
        await cognito.register("../bob", PASSWORD, ["users"])
    username = new_name()
    with pytest.raises(InvalidRequest):
        await cognito.register(username, PASSWORD, ["x" * 200])
    assert not pool.user_exists(username)


async def test_wrong_password_and_unknown_user(cognito: CognitoIdentityProvider) -> None:
    username = new_name()
    await cognito.register(username, PASSWORD, ["users"])
    with pytest.raises(WrongPassword):
        await cognito.issue_token(username, "not-the-password-1")
    with pytest.raises(UnknownUser):
        await cognito.issue_token(new_name(), PASSWORD)


async def test_client_secret_sends_secret_hash(pool: Pool) -> None:
    provider = pool.provider(client_id=pool.secret_client_id, client_secret=pool.client_secret)
    await provider.start()
    try:
        sent: list[dict[str, str]] = []

        def capture(params: dict[str, Any], **_: Any) -> None:
            sent.append(dict(params["AuthParameters"]))

        # moto does not check SECRET_HASH on USER_PASSWORD_AUTH, so look at what goes over the wire
        provider._cognito.meta.events.register("provide-client-params.cognito-idp.InitiateAuth", capture)
        username = new_name()
        await provider.register(username, PASSWORD, ["users"])
        token, _ = await provider.issue_token(username, PASSWORD)
        assert (await provider.authenticate(token)).user_id == username
    finally:
        await provider.aclose()
    digest = hmac.new(pool.client_secret.encode(), (username + pool.secret_client_id).encode(), hashlib.sha256)
    assert sent == [{"USERNAME": username, "PASSWORD": PASSWORD, "SECRET_HASH": base64.b64encode(digest.digest()).decode()}]


def test_secret_hash_known_value() -> None:
    # computed independently: printf 'alice''client' | openssl dgst -sha256 -hmac secret -binary | base64
    assert secret_hash("alice", "client", "secret") == "RTsve+FQ659UKyESgvLg9GYmZEL+QjzQsW/OjL77/b0="


async def test_token_of_another_client_is_refused(cognito: CognitoIdentityProvider, pool: Pool) -> None:
    other = pool.provider(client_id=pool.secret_client_id, client_secret=pool.client_secret)
    await other.start()
    try:
        username = new_name()
        await other.register(username, PASSWORD, ["users"])
        token, _ = await other.issue_token(username, PASSWORD)
    finally:
        await other.aclose()
    with pytest.raises(Unauthenticated):
        await cognito.authenticate(token)


async def test_jwks_unreachable_and_nothing_cached(cognito: CognitoIdentityProvider, pool: Pool) -> None:
    username = new_name()
    await cognito.register(username, PASSWORD, ["users"])
    token, _ = await cognito.issue_token(username, PASSWORD)
    offline = pool.provider(jwks_url=f"http://127.0.0.1:{free_port()}/{pool.id}/.well-known/jwks.json")
    await offline.start()
    try:
        with pytest.raises(DependencyUnavailable):
            await offline.authenticate(token)
    finally:
        await offline.aclose()


async def test_cognito_unreachable_for_accounts(pool: Pool, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")  # the SDK's own variable; no retries with backoff here
    provider = pool.provider(endpoint_url=f"http://127.0.0.1:{free_port()}")
    await provider.start()
    try:
        with pytest.raises(DependencyUnavailable):
            await provider.register(new_name(), PASSWORD, ["users"])
        with pytest.raises(DependencyUnavailable):
            await provider.issue_token(new_name(), PASSWORD)
    finally:
        await provider.aclose()


def test_access_info(pool: Pool) -> None:
    assert pool.provider().access_info() == {
        "cognito": {"user_pool_id": pool.id, "client_id": pool.client_id, "region": pool.aws.region}
    }


# --- tokens we sign ourselves, keys from an in-process JWKS ---------------------------------------

REGION = "eu-central-1"
POOL_ID = "eu-central-1_TestPool"
CLIENT_ID = "test-client-id"
ISSUER = cognito_issuer(REGION, POOL_ID)


def _rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="module")
def keys() -> dict[str, rsa.RSAPrivateKey]:
    return {"k1": _rsa_key(), "k2": _rsa_key()}


class Jwks:
    """A JWKS endpoint in process: serves the public halves of `served`, counts fetches, can go down."""

    def __init__(self, keys: dict[str, rsa.RSAPrivateKey], served: list[str]) -> None:
        self.keys = keys
        self.served = served
        self.down = False
        self.fetches = 0

    async def __call__(self, request: httpx.Request) -> httpx.Response:
        self.fetches += 1
        await asyncio.sleep(0.01)  # long enough for concurrent callers to pile up
        if self.down:
            raise httpx.ConnectError("connection refused", request=request)
        document = {"keys": [self.jwk(kid) for kid in self.served]}
        return httpx.Response(200, json=document)

    def jwk(self, kid: str) -> dict[str, Any]:
        jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(self.keys[kid].public_key()))
        return {**jwk, "kid": kid, "alg": "RS256", "use": "sig"}


@pytest.fixture
def jwks(keys: dict[str, rsa.RSAPrivateKey]) -> Jwks:
    return Jwks(keys, served=["k1"])


@pytest.fixture
async def verifier(jwks: Jwks) -> AsyncIterator[CognitoIdentityProvider]:
    provider = CognitoIdentityProvider(POOL_ID, CLIENT_ID, REGION, transport=httpx.MockTransport(jwks))
    await provider.start()
    yield provider
    await provider.aclose()


def claims(**changes: Any) -> dict[str, Any]:
    now = int(time.time())
    base = {
        "iss": ISSUER,
        "aud": CLIENT_ID,
        "sub": str(uuid.UUID(int=1)),
        "token_use": "id",
        "cognito:username": "alice",
        "email": "alice@example.com",
        "cognito:groups": ["users"],
        "iat": now,
        "auth_time": now,
        "exp": now + 3600,
    }
    base.update(changes)
    return {k: v for k, v in base.items() if v is not None}


def sign(keys: dict[str, rsa.RSAPrivateKey], payload: dict[str, Any], kid: str = "k1") -> str:
    return jwt.encode(payload, keys[kid], algorithm="RS256", headers={"kid": kid})


def forge(header: dict[str, Any], payload: dict[str, Any], key: bytes | None) -> str:
    """A JWT built by hand, for algorithms PyJWT (rightly) will not sign with."""

    def b64(data: bytes) -> bytes:
        return base64.urlsafe_b64encode(data).rstrip(b"=")

    signing_input = b64(json.dumps(header).encode()) + b"." + b64(json.dumps(payload).encode())
    signature = b64(hmac.new(key, signing_input, hashlib.sha256).digest()) if key is not None else b""
    return (signing_input + b"." + signature).decode()


async def test_valid_token(verifier: CognitoIdentityProvider, keys: dict[str, rsa.RSAPrivateKey]) -> None:
    principal = await verifier.authenticate(sign(keys, claims()))
    assert principal == Principal(user_id="alice", email="alice@example.com", groups=("users",))
    no_groups = await verifier.authenticate(sign(keys, claims(**{"cognito:groups": None, "email": None})))
    assert no_groups == Principal(user_id="alice", email=None, groups=())


async def test_algorithm_confusion_hs256_with_public_key(
    verifier: CognitoIdentityProvider, keys: dict[str, rsa.RSAPrivateKey]
) -> None:
    await verifier.authenticate(sign(keys, claims()))  # the key is cached now
    pem = keys["k1"].public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    jwk_json = json.dumps(Jwks(keys, ["k1"]).jwk("k1")).encode()
    for secret in (pem, jwk_json):
        token = forge({"alg": "HS256", "typ": "JWT", "kid": "k1"}, claims(), secret)
        with pytest.raises(Unauthenticated):
            await verifier.authenticate(token)


@pytest.mark.parametrize("alg", ["none", "None", "NONE"])
async def test_alg_none(verifier: CognitoIdentityProvider, keys: dict[str, rsa.RSAPrivateKey], alg: str) -> None:
    await verifier.authenticate(sign(keys, claims()))
    with pytest.raises(Unauthenticated):
        await verifier.authenticate(forge({"alg": alg, "typ": "JWT", "kid": "k1"}, claims(), None))


@pytest.mark.parametrize(
    "bad",
    [
        pytest.param({"exp": int(time.time()) - 3600}, id="expired"),
        pytest.param({"exp": None}, id="no-exp"),
        pytest.param({"iat": None}, id="no-iat"),
        pytest.param({"iss": "https://cognito-idp.eu-central-1.amazonaws.com/eu-central-1_Other"}, id="other-pool"),
        pytest.param({"iss": "http://127.0.0.1/eu-central-1_TestPool"}, id="issuer-of-jwks-host"),
        pytest.param({"iss": None}, id="no-issuer"),
        pytest.param({"aud": "another-client"}, id="wrong-audience"),
        pytest.param({"aud": None}, id="no-audience"),
        pytest.param({"token_use": "access"}, id="access-token"),
        pytest.param({"token_use": None}, id="no-token-use"),
        pytest.param({"cognito:username": "../bob"}, id="unusable-username"),
        pytest.param({"cognito:username": None}, id="no-username"),
        pytest.param({"cognito:groups": "users"}, id="groups-not-a-list"),
    ],
)
async def test_bad_claims_are_refused(
    verifier: CognitoIdentityProvider, keys: dict[str, rsa.RSAPrivateKey], bad: dict[str, Any]
) -> None:
    with pytest.raises(Unauthenticated):
        await verifier.authenticate(sign(keys, claims(**bad)))


async def test_expiry_leeway(verifier: CognitoIdentityProvider, keys: dict[str, rsa.RSAPrivateKey]) -> None:
    assert await verifier.authenticate(sign(keys, claims(exp=int(time.time()) - 10)))  # within 30 s
    with pytest.raises(Unauthenticated):
        await verifier.authenticate(sign(keys, claims(exp=int(time.time()) - 60)))


@pytest.mark.parametrize("token", ["", "garbage", "a.b.c", "Bearer x.y.z"])
async def test_malformed_tokens(verifier: CognitoIdentityProvider, token: str) -> None:
    with pytest.raises(Unauthenticated):
        await verifier.authenticate(token)


async def test_token_signed_by_another_key_under_a_known_kid(
    verifier: CognitoIdentityProvider, keys: dict[str, rsa.RSAPrivateKey]
) -> None:
    token = jwt.encode(claims(), keys["k2"], algorithm="RS256", headers={"kid": "k1"})
    with pytest.raises(Unauthenticated):
        await verifier.authenticate(token)


async def test_unknown_kid_refreshes_once_then_rate_limits(
    verifier: CognitoIdentityProvider, keys: dict[str, rsa.RSAPrivateKey], jwks: Jwks
) -> None:
    await verifier.authenticate(sign(keys, claims()))
    assert jwks.fetches == 1
    with pytest.raises(Unauthenticated, match="unknown key"):
        await verifier.authenticate(sign(keys, claims(), kid="k2"))
    assert jwks.fetches == 1  # fetched less than 30 s ago
    with pytest.raises(Unauthenticated, match="unknown key"):
        await verifier.authenticate(forge({"alg": "RS256", "kid": "nope"}, claims(), None))
    assert jwks.fetches == 1


async def test_unknown_kid_after_a_refresh(keys: dict[str, rsa.RSAPrivateKey], jwks: Jwks) -> None:
    provider = CognitoIdentityProvider(
        POOL_ID, CLIENT_ID, REGION, transport=httpx.MockTransport(jwks), jwks_refresh_interval=0
    )
    await provider.start()
    try:
        with pytest.raises(Unauthenticated, match="unknown key"):
            await provider.authenticate(sign(keys, claims(), kid="k2"))
        assert jwks.fetches == 1
        jwks.served = ["k1", "k2"]  # the pool rotates its keys
        assert (await provider.authenticate(sign(keys, claims(), kid="k2"))).user_id == "alice"
        assert jwks.fetches == 2
    finally:
        await provider.aclose()


async def test_concurrent_requests_share_one_fetch(
    verifier: CognitoIdentityProvider, keys: dict[str, rsa.RSAPrivateKey], jwks: Jwks
) -> None:
    tokens = [sign(keys, claims()) for _ in range(10)] + [sign(keys, claims(), kid="k2") for _ in range(10)]
    results = await asyncio.gather(*(verifier.authenticate(t) for t in tokens), return_exceptions=True)
    assert all(isinstance(r, Principal) for r in results[:10])
    assert all(isinstance(r, Unauthenticated) for r in results[10:])
    assert jwks.fetches == 1


async def test_outage_after_keys_were_cached(keys: dict[str, rsa.RSAPrivateKey], jwks: Jwks) -> None:
    provider = CognitoIdentityProvider(
        POOL_ID, CLIENT_ID, REGION, transport=httpx.MockTransport(jwks), jwks_refresh_interval=0
    )
    await provider.start()
    try:
        await provider.authenticate(sign(keys, claims()))
        jwks.down = True
        assert (await provider.authenticate(sign(keys, claims()))).user_id == "alice"
        with pytest.raises(DependencyUnavailable):  # could be a rotated key: we cannot tell, so 503
            await provider.authenticate(sign(keys, claims(), kid="k2"))
        assert (await provider.authenticate(sign(keys, claims()))).user_id == "alice"  # cache kept
        jwks.down = False
        jwks.served = ["k1", "k2"]
        assert (await provider.authenticate(sign(keys, claims(), kid="k2"))).user_id == "alice"
    finally:
        await provider.aclose()


@pytest.mark.parametrize("failure", ["down", "500", "not-json", "no-keys-list"])
async def test_outage_with_nothing_cached(keys: dict[str, rsa.RSAPrivateKey], failure: str) -> None:
    async def handler(request: httpx.Request) -> httpx.Response:
        if failure == "down":
            raise httpx.ConnectError("connection refused", request=request)
        if failure == "500":
            return httpx.Response(500, text="oops")
        if failure == "not-json":
            return httpx.Response(200, text="<html>")
        return httpx.Response(200, json={"kys": []})

    provider = CognitoIdentityProvider(POOL_ID, CLIENT_ID, REGION, transport=httpx.MockTransport(handler))
    await provider.start()
    try:
        with pytest.raises(DependencyUnavailable):
            await provider.authenticate(sign(keys, claims()))
        with pytest.raises(DependencyUnavailable):  # rate-limited, still unknown: still 503
            await provider.authenticate(sign(keys, claims()))
    finally:
        await provider.aclose()


async def test_default_jwks_url_is_the_pools(keys: dict[str, rsa.RSAPrivateKey], jwks: Jwks) -> None:
    urls: list[str] = []

    async def handler(request: httpx.Request) -> httpx.Response:
        urls.append(str(request.url))
        return await jwks(request)

    provider = CognitoIdentityProvider(POOL_ID, CLIENT_ID, REGION, transport=httpx.MockTransport(handler))
    await provider.start()
    try:
        await provider.authenticate(sign(keys, claims()))
    finally:
        await provider.aclose()
    assert urls == [f"https://cognito-idp.{REGION}.amazonaws.com/{POOL_ID}/.well-known/jwks.json"]


async def test_jwks_keys_of_other_types_are_ignored(keys: dict[str, rsa.RSAPrivateKey]) -> None:
    good = Jwks(keys, ["k1"]).jwk("k1")
    document = {
        "keys": [
            {**Jwks(keys, ["k2"]).jwk("k2"), "kid": "enc", "use": "enc"},
            {"kty": "oct", "kid": "hmac", "k": base64.urlsafe_b64encode(b"secret").decode()},
            {"kty": "RSA", "kid": "broken", "n": "AA", "e": "??"},
            good,
        ]
    }
    provider = CognitoIdentityProvider(
        POOL_ID, CLIENT_ID, REGION, transport=httpx.MockTransport(lambda r: httpx.Response(200, json=document))
    )
    await provider.start()
    try:
        assert await provider.authenticate(sign(keys, claims()))
        forged = forge({"alg": "HS256", "kid": "hmac"}, claims(), b"secret")
        with pytest.raises(Unauthenticated):
            await provider.authenticate(forged)
    finally:
        await provider.aclose()
