"""Accounts and sign-in: the one place the HTTP API, the CLI and the embedding API go through."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import structlog

from decode_userapi.domain.commands import TokenView
from decode_userapi.domain.errors import NotAllowed, UnknownUser
from decode_userapi.domain.identity import USERS_GROUP, Principal, check_groups, check_new_username
from decode_userapi.ports.identity import IdentityProvider
from decode_userapi.ports.users import UserRecord, UserStore

log = structlog.get_logger(__name__)


def _principal(record: UserRecord) -> Principal:
    return Principal(user_id=record.username, email=record.email, groups=record.groups)


class UserService:
    """Over the identity provider; `accounts` is the built-in provider's user store, or None when
    accounts live elsewhere (Cognito), where listing them and changing groups is not offered here."""

    def __init__(self, identity: IdentityProvider, accounts: UserStore | None = None) -> None:
        self._identity = identity
        self._accounts = accounts

    def access_info(self) -> dict[str, Any]:
        """Where clients authenticate (CONTRACT `GET /access_info`)."""
        return self._identity.access_info()

    async def authenticate(self, token: str) -> Principal:
        """The principal of an ID token; `Unauthenticated` for a bad, expired or missing one."""
        return await self._identity.authenticate(token)

    async def register(self, username: str, password: str, groups: Sequence[str] | None = None) -> Principal:
        """Create an account, in the `users` group unless `groups` are given.

        `InvalidRequest` for a username or group name that cannot be used, `WeakPassword`, `UserExists`.
        """
        check_new_username(username)
        chosen = check_groups(groups or [USERS_GROUP])
        principal = await self._identity.register(username, password, list(chosen))
        log.info("user.registered", user_id=principal.user_id, groups=list(principal.groups))
        return principal

    async def issue_token(self, username: str, password: str) -> TokenView:
        """An ID token for the account; `UnknownUser`, `WrongPassword`."""
        token, expires_in = await self._identity.issue_token(username, password)
        return TokenView(id_token=token, expires_in=expires_in)

    async def sign_in(self, username: str, password: str) -> Principal:
        """The principal of an account, checked by password (for callers that need no token)."""
        return await self.authenticate((await self.issue_token(username, password)).id_token)

    def _store(self) -> UserStore:
        if self._accounts is None:
            raise NotAllowed("accounts are managed by the external identity provider (Cognito), not here")
        return self._accounts

    async def list(self) -> list[Principal]:
        """Every account, by username."""
        return [_principal(record) for record in await self._store().list()]

    async def add_groups(self, username: str, groups: Sequence[str]) -> Principal:
        """Add groups to an account (tokens issued from now on carry them); `UnknownUser`."""
        store = self._store()
        record = await store.get(username)
        if record is None:
            raise UnknownUser(f"user {username!r} not found")
        record = await store.set_groups(username, check_groups((*record.groups, *groups)))
        log.info("user.groups_changed", user_id=username, groups=list(record.groups))
        return _principal(record)
