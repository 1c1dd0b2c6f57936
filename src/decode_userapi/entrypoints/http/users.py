"""Who am I, where to authenticate, and (AUTH=1) accounts: every call goes through `UserService`."""

from __future__ import annotations

from typing import Annotated, Any

import msgspec
from litestar import MediaType, Request, Response, get, post
from litestar.datastructures import Cookie
from litestar.di import NamedDependency
from litestar.params import QueryParameter
from litestar.status_codes import HTTP_201_CREATED, HTTP_303_SEE_OTHER

from decode_userapi.domain.commands import TokenView, UserView
from decode_userapi.domain.errors import InvalidRequest
from decode_userapi.domain.identity import Principal
from decode_userapi.domain.text import check_text
from decode_userapi.entrypoints.http.errors import error_responses
from decode_userapi.entrypoints.http.guards import users_only
from decode_userapi.entrypoints.http.ratelimit import LoginRateLimiter, client_address
from decode_userapi.services.users import UserService

MAX_FIELD = 1024
SIGN_IN_ERRORS = (400, 404, 413, 422, 429, 503)
WELCOME = msgspec.json.encode("Welcome to the DECODE OpenCloud User-facing API")


@get(
    "/",
    tags=["service"],
    summary="Welcome",
    description="API clients get this JSON string; a browser (`Accept` naming `text/html`) is sent to the web page, `/ui/`.",
    media_type=MediaType.JSON,
)
async def welcome(request: Request[Any, Any, Any]) -> Response[bytes]:
    if "text/html" in request.headers.get("accept", ""):
        return Response(b"", status_code=HTTP_303_SEE_OTHER, headers={"Location": "/ui/", "Vary": "Accept"})
    return Response(WELCOME, media_type=MediaType.JSON, headers={"Vary": "Accept"})


@get("/access_info", tags=["user"], summary="Where clients authenticate")
async def access_info(users: NamedDependency[UserService]) -> dict[str, Any]:
    return users.access_info()


@get(
    "/user",
    tags=["user"],
    summary="The caller (a member of the `users` group)",
    guards=[users_only],
    responses=error_responses(401, 403, 503),
)
async def get_user(principal: NamedDependency[Principal]) -> UserView:
    return UserView.of(principal)


async def _credentials(request: Request[Any, Any, Any]) -> tuple[str, str]:
    """`username` and `password` from the form body (form-encoded or multipart)."""
    form = await request.form()
    fields = {name: form.get(name) for name in ("username", "password")}
    for name, value in fields.items():
        if not isinstance(value, str) or not value:
            raise InvalidRequest(f"the form field {name!r} is needed (form fields 'username' and 'password')")
        if len(value) > MAX_FIELD:
            raise InvalidRequest(f"the form field {name!r} is at most {MAX_FIELD} characters")
        check_text(value, name)
    return fields["username"], fields["password"]  # type: ignore[return-value]


async def _sign_in(request: Request[Any, Any, Any], users: UserService, limiter: LoginRateLimiter) -> TokenView:
    """Check the password and issue a token; every attempt counts against the rate limits first."""
    username, password = await _credentials(request)
    limiter.attempt(username, client_address(request))
    return await users.issue_token(username, password)


@post(
    "/user",
    tags=["auth"],
    status_code=HTTP_201_CREATED,
    summary="Create a user (AUTH=1)",
    responses=error_responses(400, 409, 413, 422, 503),
)
async def create_user(
    request: Request[Any, Any, Any],
    users: NamedDependency[UserService],
    groups: Annotated[
        list[str] | None, QueryParameter(description="repeatable; the account's groups (default: users)")
    ] = None,
) -> UserView:
    username, password = await _credentials(request)
    checked = [check_text(group, "groups") for group in groups] if groups else None
    return UserView.of(await users.register(username, password, checked))


@post(
    "/token",
    tags=["auth"],
    status_code=HTTP_201_CREATED,
    summary="Get an ID token (AUTH=1)",
    responses=error_responses(*SIGN_IN_ERRORS),
)
async def create_token(
    request: Request[Any, Any, Any],
    users: NamedDependency[UserService],
    login_limiter: NamedDependency[LoginRateLimiter],
) -> TokenView:
    return await _sign_in(request, users, login_limiter)


@post(
    "/login",
    tags=["auth"],
    status_code=HTTP_201_CREATED,
    summary="Log in with a cookie (AUTH=1)",
    responses=error_responses(*SIGN_IN_ERRORS),
)
async def login(
    request: Request[Any, Any, Any],
    users: NamedDependency[UserService],
    login_limiter: NamedDependency[LoginRateLimiter],
) -> Response[dict[str, int]]:
    token = await _sign_in(request, users, login_limiter)
    cookie = Cookie(
        key="Authorization",
        value=f"Bearer {token.id_token}",  # quoted on the wire, as CONTRACT shows
        httponly=True,
        samesite="lax",
        max_age=token.expires_in,
        secure=request.url.scheme == "https",
    )
    return Response({"expires_in": token.expires_in}, status_code=HTTP_201_CREATED, cookies=[cookie])


ACCOUNT_HANDLERS = [create_user, create_token, login]
SERVICE_HANDLERS = [welcome, access_info, get_user]
