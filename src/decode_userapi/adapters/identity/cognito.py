"""AWS Cognito as identity provider: verifies Cognito ID tokens; manages accounts when AUTH=1."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import time
from contextlib import AsyncExitStack
from typing import Any

import aioboto3
import httpx
import jwt
import structlog
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError, ParamValidationError

from decode_userapi.adapters.identity.claims import VerifiedTokens, principal_from_id_claims
from decode_userapi.domain.errors import (
    DependencyUnavailable,
    InvalidPath,
    InvalidRequest,
    Unauthenticated,
    UnknownUser,
    UserExists,
    WeakPassword,
    WrongPassword,
)
from decode_userapi.domain.files import check_username
from decode_userapi.domain.identity import USERS_GROUP, Principal

log = structlog.get_logger(__name__)

ALGORITHM = "RS256"  # the only algorithm Cognito signs with; anything else is refused before decoding
REQUIRED_CLAIMS = ["exp", "iat", "iss", "aud", "token_use"]
JWKS_REFRESH_INTERVAL = 30.0  # at most one JWKS fetch per this many seconds
_GROUP_MAX = 128


def cognito_issuer(region: str, user_pool_id: str) -> str:
    return f"https://cognito-idp.{region}.amazonaws.com/{user_pool_id}"


def secret_hash(username: str, client_id: str, client_secret: str) -> str:
    """Cognito's SECRET_HASH: base64(HMAC-SHA256(key=client secret, message=username + client id))."""
    digest = hmac.new(client_secret.encode(), (username + client_id).encode(), hashlib.sha256).digest()
    return base64.b64encode(digest).decode()


def _error_code(e: ClientError) -> str:
    return str(e.response.get("Error", {}).get("Code", ""))


def _error_message(e: ClientError) -> str:
    return str(e.response.get("Error", {}).get("Message", "")) or _error_code(e)


def _unavailable(action: str, e: Exception) -> DependencyUnavailable:
    if isinstance(e, ClientError):
        problem = f"{_error_code(e)}: {_error_message(e)}"
    else:
        problem = f"{type(e).__name__}: {e}"
    log.error("cognito.call_failed", action=action, error=problem)
    return DependencyUnavailable(f"Cognito could not {action} ({problem})")


class CognitoIdentityProvider:
    """ID tokens are verified locally against the pool's JWKS (RS256, issuer, audience, token_use);
    accounts are managed with the admin API, which needs AWS credentials (AUTH=1 only)."""

    def __init__(
        self,
        user_pool_id: str,
        client_id: str,
        region: str,
        *,
        client_secret: str | None = None,
        jwks_url: str | None = None,
        endpoint_url: str | None = None,
        leeway: int = 30,
        jwks_timeout: float = 5.0,
        jwks_refresh_interval: float = JWKS_REFRESH_INTERVAL,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        if not user_pool_id or not client_id or not region:
            raise ValueError("a Cognito user pool id, app client id and region are needed")
        self._pool_id = user_pool_id
        self._client_id = client_id
        self._region = region
        self._client_secret = client_secret or None
        self._issuer = cognito_issuer(region, user_pool_id)
        self._jwks_url = jwks_url or f"{self._issuer}/.well-known/jwks.json"
        self._endpoint_url = endpoint_url
        self._leeway = leeway
        self._jwks_timeout = jwks_timeout
        self._refresh_interval = jwks_refresh_interval
        self._transport = transport
        self._http: httpx.AsyncClient | None = None
        self._verified = VerifiedTokens()
        self._stack: AsyncExitStack | None = None
        self._cognito: Any = None
        self._keys: dict[str, jwt.PyJWK] = {}
        self._refresh_lock = asyncio.Lock()
        self._last_attempt: float | None = None  # time.monotonic() of the last JWKS fetch
        self._last_fetch_failed = False

    # --- lifecycle -------------------------------------------------------------------------------

    async def start(self) -> None:
        if self._http is None:
            self._http = httpx.AsyncClient(timeout=self._jwks_timeout, transport=self._transport)
        if self._stack is None:
            stack = AsyncExitStack()
            try:
                self._cognito = await stack.enter_async_context(
                    aioboto3.Session().client(
                        "cognito-idp",
                        region_name=self._region,
                        endpoint_url=self._endpoint_url,
                        # standard retries (3 attempts unless AWS_MAX_ATTEMPTS says otherwise)
                        config=Config(connect_timeout=5, read_timeout=15, retries={"mode": "standard"}),
                    )
                )
            except BaseException:
                await stack.aclose()
                raise
            self._stack = stack

    async def aclose(self) -> None:
        if self._http is not None:
            http, self._http = self._http, None
            await http.aclose()
        if self._stack is not None:
            stack, self._stack = self._stack, None
            self._cognito = None
            await stack.aclose()

    def access_info(self) -> dict[str, Any]:
        return {"cognito": {"user_pool_id": self._pool_id, "client_id": self._client_id, "region": self._region}}

    # --- tokens ----------------------------------------------------------------------------------

    async def authenticate(self, token: str) -> Principal:
        if (known := self._verified.get(token)) is not None:
            return known
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError as e:
            raise Unauthenticated("the token is not valid") from e
        if header.get("alg") != ALGORITHM:
            raise Unauthenticated(f"the token must be signed with {ALGORITHM}")
        kid = header.get("kid")
        if not isinstance(kid, str) or not kid:
            raise Unauthenticated("the token names no signing key")
        key = await self._signing_key(kid)
        try:
            claims = jwt.decode(
                token,
                key.key,
                algorithms=[ALGORITHM],
                audience=self._client_id,
                issuer=self._issuer,
                leeway=self._leeway,
                options={"require": REQUIRED_CLAIMS},
            )
        except jwt.ExpiredSignatureError as e:
            raise Unauthenticated("the token has expired") from e
        except jwt.PyJWTError as e:
            raise Unauthenticated("the token is not valid") from e
        return self._verified.put(token, principal_from_id_claims(claims, "cognito:username"), claims)

    async def _signing_key(self, kid: str) -> jwt.PyJWK:
        key = self._keys.get(kid)
        if key is not None:
            return key
        # Concurrent callers queue here; whoever comes first fetches, the rest find the new keys or
        # hit the rate limit, so one unknown key costs at most one fetch per refresh interval.
        async with self._refresh_lock:
            key = self._keys.get(kid)
            if key is None and self._may_refresh():
                await self._refresh_keys()
                key = self._keys.get(kid)
        if key is not None:
            return key
        if self._last_fetch_failed:
            raise DependencyUnavailable("the token-signing keys of the Cognito user pool cannot be fetched")
        raise Unauthenticated("the token is signed with an unknown key")

    def _may_refresh(self) -> bool:
        return self._last_attempt is None or time.monotonic() - self._last_attempt >= self._refresh_interval

    async def _refresh_keys(self) -> None:
        if self._http is None:
            raise RuntimeError("CognitoIdentityProvider.start() was not awaited")
        self._last_attempt = time.monotonic()
        try:
            response = await self._http.get(self._jwks_url)
            response.raise_for_status()
            keys = _parse_jwks(response.json())
        except (httpx.HTTPError, ValueError, jwt.PyJWTError) as e:
            self._last_fetch_failed = True
            log.warning("cognito.jwks_unavailable", url=self._jwks_url, error=f"{type(e).__name__}: {e}")
            return
        self._last_fetch_failed = False
        self._keys = keys
        log.info("cognito.jwks_loaded", url=self._jwks_url, kids=sorted(keys))

    # --- accounts (AUTH=1) -----------------------------------------------------------------------

    def _admin(self) -> Any:
        if self._cognito is None:
            raise RuntimeError("CognitoIdentityProvider.start() was not awaited")
        return self._cognito

    async def register(self, username: str, password: str, groups: list[str]) -> Principal:
        try:
            check_username(username)
        except InvalidPath as e:
            raise InvalidRequest(e.detail) from e
        groups = list(dict.fromkeys(groups or [USERS_GROUP]))
        for group in groups:
            if not 1 <= len(group) <= _GROUP_MAX or not group.isprintable():
                raise InvalidRequest(f"group names are 1 to {_GROUP_MAX} printable characters")
        email = username if "@" in username else None
        attributes = (
            [{"Name": "email", "Value": email}, {"Name": "email_verified", "Value": "true"}] if email else []
        )
        cognito = self._admin()
        try:
            await cognito.admin_create_user(
                UserPoolId=self._pool_id, Username=username, UserAttributes=attributes, MessageAction="SUPPRESS"
            )
        except ParamValidationError as e:
            raise InvalidRequest(f"Cognito refused the account: {e}") from e
        except ClientError as e:
            code = _error_code(e)
            if code == "UsernameExistsException":
                raise UserExists(f"user {username!r} exists already") from e
            if code == "InvalidParameterException":
                raise InvalidRequest(f"Cognito refused the account: {_error_message(e)}") from e
            raise _unavailable("create the user", e) from e
        except BotoCoreError as e:
            raise _unavailable("create the user", e) from e
        try:
            await self._set_password(username, password)
            for group in groups:
                await self._add_to_group(username, group)
        except Exception:
            await self._delete_user(username)  # no half-created accounts
            raise
        log.info("cognito.user_registered", user_id=username, groups=groups)
        return Principal(user_id=username, email=email, groups=tuple(groups))

    async def _set_password(self, username: str, password: str) -> None:
        try:
            await self._admin().admin_set_user_password(
                UserPoolId=self._pool_id, Username=username, Password=password, Permanent=True
            )
        except ParamValidationError as e:
            raise WeakPassword(f"the password does not meet the user pool's policy: {e}") from e
        except ClientError as e:
            code = _error_code(e)
            if code == "InvalidPasswordException" or (
                code == "InvalidParameterException" and "password" in _error_message(e).lower()
            ):
                detail = _error_message(e)
                raise WeakPassword(f"the password does not meet the user pool's policy: {detail}") from e
            if code == "InvalidParameterException":
                raise InvalidRequest(f"Cognito refused the password: {_error_message(e)}") from e
            raise _unavailable("set the password", e) from e
        except BotoCoreError as e:
            raise _unavailable("set the password", e) from e

    async def _add_to_group(self, username: str, group: str) -> None:
        cognito = self._admin()
        try:
            try:
                await cognito.admin_add_user_to_group(UserPoolId=self._pool_id, Username=username, GroupName=group)
                return
            except ClientError as e:
                if _error_code(e) != "ResourceNotFoundException":
                    raise
            try:
                await cognito.create_group(UserPoolId=self._pool_id, GroupName=group)
                log.info("cognito.group_created", group=group)
            except ClientError as e:
                if _error_code(e) != "GroupExistsException":  # created concurrently: fine
                    raise
            await cognito.admin_add_user_to_group(UserPoolId=self._pool_id, Username=username, GroupName=group)
        except ParamValidationError as e:
            raise InvalidRequest(f"Cognito refused the group {group!r}: {e}") from e
        except ClientError as e:
            if _error_code(e) == "InvalidParameterException":
                raise InvalidRequest(f"Cognito refused the group {group!r}: {_error_message(e)}") from e
            raise _unavailable(f"add the user to group {group!r}", e) from e
        except BotoCoreError as e:
            raise _unavailable(f"add the user to group {group!r}", e) from e

    async def _delete_user(self, username: str) -> None:
        try:
            await self._admin().admin_delete_user(UserPoolId=self._pool_id, Username=username)
        except (BotoCoreError, ClientError) as e:
            log.error("cognito.rollback_failed", user_id=username, error=f"{type(e).__name__}: {e}")
        else:
            log.info("cognito.user_rolled_back", user_id=username)

    async def issue_token(self, username: str, password: str) -> tuple[str, int]:
        params = {"USERNAME": username, "PASSWORD": password}
        if self._client_secret is not None:
            params["SECRET_HASH"] = secret_hash(username, self._client_id, self._client_secret)
        try:
            answer = await self._admin().initiate_auth(
                ClientId=self._client_id, AuthFlow="USER_PASSWORD_AUTH", AuthParameters=params
            )
        except ParamValidationError as e:
            raise InvalidRequest(f"Cognito refused the sign-in request: {e}") from e
        except ClientError as e:
            code, message = _error_code(e), _error_message(e)
            if code == "NotAuthorizedException" and "secret hash" not in message.lower():
                raise WrongPassword("wrong password") from e
            if code == "UserNotFoundException":
                raise UnknownUser(f"user {username!r} not found") from e
            if code in ("UserNotConfirmedException", "PasswordResetRequiredException"):
                raise InvalidRequest(f"the account cannot sign in yet ({code}: {message})") from e
            raise _unavailable("issue a token", e) from e
        except BotoCoreError as e:
            raise _unavailable("issue a token", e) from e
        result = answer.get("AuthenticationResult")
        if not result or "IdToken" not in result:
            challenge = answer.get("ChallengeName", "unknown")
            raise InvalidRequest(
                f"the account must first answer the {challenge} challenge, which this API does not offer"
            )
        return result["IdToken"], int(result.get("ExpiresIn", 3600))


def _parse_jwks(document: Any) -> dict[str, jwt.PyJWK]:
    """The RS256 signing keys of a JWKS document by `kid`; other keys are left out."""
    if not isinstance(document, dict) or not isinstance(document.get("keys"), list):
        raise ValueError("the JWKS document has no 'keys' list")
    keys: dict[str, jwt.PyJWK] = {}
    for entry in document["keys"]:
        if not isinstance(entry, dict) or entry.get("kty") != "RSA" or not isinstance(entry.get("kid"), str):
            continue
        if entry.get("use", "sig") != "sig" or entry.get("alg", ALGORITHM) != ALGORITHM:
            continue
        try:
            keys[entry["kid"]] = jwt.PyJWK(entry, algorithm=ALGORITHM)
        except jwt.PyJWTError as e:
            log.warning("cognito.jwk_skipped", kid=entry["kid"], error=str(e))
    return keys
