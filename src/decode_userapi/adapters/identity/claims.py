"""The principal an ID token's claims describe (built-in and Cognito tokens have the same shape)."""

from __future__ import annotations

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
