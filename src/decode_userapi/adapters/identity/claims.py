"""The principal an ID token's claims describe (built-in and Cognito tokens have the same shape)."""

from __future__ import annotations

import time
from typing import Any

from decode_userapi.domain.errors import InvalidPath, Unauthenticated
from decode_userapi.domain.files import check_username
from decode_userapi.domain.identity import Principal


def principal_from_id_claims(claims: dict[str, Any], username_claim: str) -> Principal:
    """`Unauthenticated` unless the claims are an ID token's with a usable username."""
    if claims.get("token_use") != "id":
        raise Unauthenticated("an ID token is needed")
    username = claims.get(username_claim)
    groups = claims.get("cognito:groups") or []
    if not isinstance(username, str) or not isinstance(groups, list):
        raise Unauthenticated("the token is not valid")
    try:
        check_username(username)
    except InvalidPath as e:
        raise Unauthenticated("the token names an unusable username") from e
    email = claims.get("email")
    return Principal(
        user_id=username,
        email=email if isinstance(email, str) else None,
        groups=tuple(str(g) for g in groups),
    )


class VerifiedTokens:
    """Tokens whose signature and claims were checked, with their principal, until they expire.

    Checking a signature costs ~80 us (HS256; RS256 more) on every request, more than the rest of
    authentication together; a token is immutable and valid until its `exp` (no revocation: these
    are stateless ID tokens), so the check is remembered. Bounded: the oldest entries go first.
    """

    def __init__(self, size: int = 4096) -> None:
        self._size = size
        self._entries: dict[str, tuple[Principal, float]] = {}

    def get(self, token: str) -> Principal | None:
        entry = self._entries.get(token)
        if entry is None:
            return None
        if entry[1] <= time.time():
            self._entries.pop(token, None)
            return None
        return entry[0]

    def put(self, token: str, principal: Principal, claims: dict[str, Any]) -> Principal:
        expires = claims.get("exp")
        if isinstance(expires, int | float):
            if len(self._entries) >= self._size:
                self._entries.pop(next(iter(self._entries)))
            self._entries[token] = (principal, float(expires))
        return principal
