from __future__ import annotations

from typing import Any, Protocol

from decode_userapi.domain.identity import Principal


class IdentityProvider(Protocol):
    """Turns bearer tokens into principals; some providers also manage accounts (AUTH=1)."""

    async def authenticate(self, token: str) -> Principal:
        """The token's principal; `Unauthenticated` for a missing, bad or expired token."""
        ...

    def access_info(self) -> dict[str, Any]:
        """Where clients authenticate (CONTRACT `GET /access_info`)."""
        ...

    async def register(self, username: str, password: str, groups: list[str]) -> Principal:
        """Create a user. `UserExists`, `WeakPassword`, or `NotAllowed` if unsupported."""
        ...

    async def issue_token(self, username: str, password: str) -> tuple[str, int]:
        """An ID token and its lifetime in seconds. `UnknownUser`, `WrongPassword`."""
        ...

    async def start(self) -> None: ...

    async def aclose(self) -> None: ...
