"""Who am I, where to authenticate, and (AUTH=1) accounts of the built-in identity provider."""

from __future__ import annotations

from typing import Any

import msgspec
from litestar import MediaType, Request, Response, get, post
from litestar.datastructures import Cookie
from litestar.di import NamedDependency
from litestar.status_codes import HTTP_201_CREATED

from decode_userapi.domain.commands import TokenView, UserView
from decode_userapi.domain.errors import InvalidRequest
from decode_userapi.domain.identity import Principal
from decode_userapi.domain.text import check_text
from decode_userapi.entrypoints.http.errors import error_responses
from decode_userapi.entrypoints.http.ratelimit import LoginRateLimiter, client_address
from decode_userapi.ports.identity import IdentityProvider

MAX_FIELD = 1024
SIGN_IN_ERRORS = (400, 404, 413, 422, 429, 503)
WELCOME = msgspec.json.encode("Welcome to the DECODE OpenCloud User-facing API")


@get("/", tags=["service"], summary="Welcome", media_type=MediaType.JSON)
async def welcome() -> bytes:
    return WELCOME


@get("/access_info", tags=["user"], summary="Where clients authenticate")
async def access_info(request: Request[Any, Any, Any]) -> dict[str, Any]:
    identity: IdentityProvider = request.app.state.identity
    return identity.access_info()


@get("/user", tags=["user"], summary="The caller", responses=error_responses(401, 503))
async def get_user(caller: NamedDependency[Principal]) -> UserView:
    return UserView(email=caller.email, groups=list(caller.groups))


async def _credentials(request: Request[Any, Any, Any]) -> tuple[str, str]:
    form = await request.form()
    username, password = form.get("username"), form.get("password")
    if not isinstance(username, str) or not isinstance(password, str) or not username or not password:
        raise InvalidRequest("form fields 'username' and 'password' are needed")
    if len(username) > MAX_FIELD or len(password) > MAX_FIELD:
        raise InvalidRequest(f"username and password are at most {MAX_FIELD} characters")
    return check_text(username, "username"), check_text(password, "password")


async def _sign_in(request: Request[Any, Any, Any]) -> tuple[str, int]:
    """Check the password and issue a token; every attempt counts against the rate limits first."""
    username, password = await _credentials(request)
    limiter: LoginRateLimiter = request.app.state.login_limiter
    limiter.attempt(username, client_address(request))
    token, expires_in = await request.app.state.identity.issue_token(username, password)
    return token, expires_in


@post(
    "/user",
    tags=["auth"],
    status_code=HTTP_201_CREATED,
    summary="Create a user (AUTH=1)",
    responses=error_responses(400, 409, 413, 422, 503),
)
async def create_user(request: Request[Any, Any, Any]) -> UserView:
    username, password = await _credentials(request)
    groups = [check_text(g, "groups") for g in request.query_params.getall("groups", [])] or ["users"]
    principal = await request.app.state.identity.register(username, password, groups)
    return UserView(email=principal.email, groups=list(principal.groups))


@post(
    "/token",
    tags=["auth"],
    status_code=HTTP_201_CREATED,
    summary="Get an ID token (AUTH=1)",
    responses=error_responses(*SIGN_IN_ERRORS),
)
async def create_token(request: Request[Any, Any, Any]) -> TokenView:
    token, expires_in = await _sign_in(request)
    return TokenView(id_token=token, expires_in=expires_in)


@post(
    "/login",
    tags=["auth"],
    status_code=HTTP_201_CREATED,
    summary="Log in with a cookie (AUTH=1)",
    responses=error_responses(*SIGN_IN_ERRORS),
)
async def login(request: Request[Any, Any, Any]) -> Response[dict[str, int]]:
    token, expires_in = await _sign_in(request)
    cookie = Cookie(
        key="Authorization",
        value=f"Bearer {token}",  # quoted on the wire, as CONTRACT shows
        httponly=True,
        samesite="lax",
        max_age=expires_in,
        secure=request.url.scheme == "https",
    )
    return Response({"expires_in": expires_in}, status_code=HTTP_201_CREATED, cookies=[cookie])


ACCOUNT_HANDLERS = [create_user, create_token, login]
SERVICE_HANDLERS = [welcome, access_info, get_user]
