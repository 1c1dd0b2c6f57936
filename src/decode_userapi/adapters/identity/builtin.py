"""The built-in identity provider: accounts in our database, scrypt password hashes, signed JWTs."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import os
import secrets
import time
from pathlib import Path
from typing import Any

import jwt

from decode_userapi.adapters.identity.claims import VerifiedTokens, principal_from_id_claims
from decode_userapi.domain.errors import (
    InvalidPath,
    InvalidRequest,
    Unauthenticated,
    UnknownUser,
    WeakPassword,
    WrongPassword,
)
from decode_userapi.domain.files import check_username
from decode_userapi.domain.identity import USERS_GROUP, Principal
from decode_userapi.ports.users import UserRecord, UserStore

ISSUER = "decode-userapi"
AUDIENCE = "decode-userapi"
ALGORITHM = "HS256"
MIN_PASSWORD = 8
MAX_PASSWORD = 256
_SCRYPT = {"n": 2**14, "r": 8, "p": 1}
_GROUP_MAX = 128


def hash_password(password: str) -> str:
    """An scrypt hash (memory-hard: 16 MiB per hash) with a random salt, self-describing."""
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, dklen=32, **_SCRYPT)
    b64 = base64.b64encode
    return f"scrypt${_SCRYPT['n']}${_SCRYPT['r']}${_SCRYPT['p']}${b64(salt).decode()}${b64(digest).decode()}"


def verify_password(password: str, stored: str) -> bool:
    try:
        scheme, n, r, p, salt, digest = stored.split("$")
        if scheme != "scrypt":
            return False
        expected = base64.b64decode(digest)
        actual = hashlib.scrypt(
            password.encode(), salt=base64.b64decode(salt), n=int(n), r=int(r), p=int(p), dklen=len(expected)
        )
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(actual, expected)


def check_password(username: str, password: str) -> str:
    """At least 8 characters from at least two of: letters, digits, other characters."""
    classes = sum(
        (
            any(c.isalpha() for c in password),
            any(c.isdigit() for c in password),
            any(not c.isalnum() for c in password),
        )
    )
    if not MIN_PASSWORD <= len(password) <= MAX_PASSWORD or classes < 2:
        raise WeakPassword(
            f"the password must have {MIN_PASSWORD} to {MAX_PASSWORD} characters and mix at least two of "
            "letters, digits and other characters"
        )
    if password.lower() == username.lower():
        raise WeakPassword("the password must differ from the username")
    return password


def load_or_create_key(path: Path) -> bytes:
    """The signing key stored at `path` (0600), created with 64 random bytes on first start."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        key = path.read_bytes().strip()
        if len(key) < 32:
            raise ValueError(f"the token signing key in {path} is shorter than 32 bytes") from None
        return key
    key = secrets.token_hex(64).encode()
    with os.fdopen(fd, "wb") as f:
        f.write(key)
    return key


class BuiltinIdentityProvider:
    """Accounts kept in a `UserStore`; ID tokens are HS256 JWTs shaped like Cognito's."""

    def __init__(
        self,
        users: UserStore,
        signing_key: bytes | None = None,
        key_file: str | Path | None = None,
        token_ttl: int = 3600,
        token_url: str = "/token",
    ) -> None:
        if signing_key is None and key_file is None:
            raise ValueError("a signing key or a key file is needed")
        self._users = users
        self._key = signing_key
        self._key_file = Path(key_file) if key_file else None
        self._ttl = token_ttl
        self._token_url = token_url
        self._verified = VerifiedTokens()

    async def start(self) -> None:
        if self._key is None and self._key_file is not None:
            self._key = await asyncio.to_thread(load_or_create_key, self._key_file)

    async def aclose(self) -> None:
        pass

    def _signing_key(self) -> bytes:
        if self._key is None:
            raise RuntimeError("BuiltinIdentityProvider.start() was not awaited")
        return self._key

    def access_info(self) -> dict[str, Any]:
        return {"local": {"token_url": self._token_url}}

    def issue(self, record: UserRecord, now: float | None = None) -> str:
        issued = int(time.time() if now is None else now)
        claims = {
            "iss": ISSUER,
            "aud": AUDIENCE,
            "sub": record.username,
            "username": record.username,
            "email": record.email,
            "cognito:groups": list(record.groups),
            "token_use": "id",
            "iat": issued,
            "nbf": issued,
            "exp": issued + self._ttl,
        }
        return jwt.encode(claims, self._signing_key(), algorithm=ALGORITHM)

    async def authenticate(self, token: str) -> Principal:
        if (known := self._verified.get(token)) is not None:
            return known
        try:
            claims = jwt.decode(
                token,
                self._signing_key(),
                algorithms=[ALGORITHM],
                audience=AUDIENCE,
                issuer=ISSUER,
                leeway=5,
                options={"require": ["exp", "iat", "iss", "aud", "sub"]},
            )
        except jwt.ExpiredSignatureError as e:
            raise Unauthenticated("the token has expired") from e
        except jwt.PyJWTError as e:
            raise Unauthenticated("the token is not valid") from e
        return self._verified.put(token, principal_from_id_claims(claims, "username"), claims)

    async def register(self, username: str, password: str, groups: list[str]) -> Principal:
        try:
            check_username(username)
        except InvalidPath as e:
            raise InvalidRequest(e.detail) from e
        check_password(username, password)
        groups = list(dict.fromkeys(groups or [USERS_GROUP]))
        for group in groups:
            if not 1 <= len(group) <= _GROUP_MAX or not group.isprintable():
                raise InvalidRequest(f"group names are 1 to {_GROUP_MAX} printable characters")
        record = UserRecord(
            username=username,
            email=username if "@" in username else None,
            groups=tuple(groups),
            password_hash=await asyncio.to_thread(hash_password, password),
        )
        await self._users.add(record)
        return Principal(user_id=record.username, email=record.email, groups=record.groups)

    async def issue_token(self, username: str, password: str) -> tuple[str, int]:
        record = await self._users.get(username)
        if record is None:  # CONTRACT: 404, so whether an account exists is not a secret here
            raise UnknownUser(f"user {username!r} not found")
        if not await asyncio.to_thread(verify_password, password, record.password_hash):
            raise WrongPassword("wrong password")
        return self.issue(record), self._ttl

