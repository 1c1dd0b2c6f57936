"""Where `decode-cloud login` keeps tokens: a JSON file only its user can read (mode 0600).

`$DECODE_CLOUD_CONFIG_DIR` if set, else the platform's config dir: `$XDG_CONFIG_HOME/decode-cloud`
(default `~/.config/decode-cloud`) on Linux and other Unixes, `~/Library/Application Support/decode-cloud`
on macOS, `%APPDATA%\\decode-cloud` on Windows.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import msgspec


class StoredToken(msgspec.Struct):
    token: str
    username: str | None = None
    expires_at: float | None = None


class Credentials(msgspec.Struct):
    default_url: str | None = None
    tokens: dict[str, StoredToken] = {}


def config_dir() -> Path:
    if override := os.environ.get("DECODE_CLOUD_CONFIG_DIR"):
        return Path(override)
    if sys.platform == "win32":
        return Path(os.environ.get("APPDATA") or Path.home() / "AppData" / "Roaming") / "decode-cloud"
    if sys.platform == "darwin":
        return Path.home() / "Library" / "Application Support" / "decode-cloud"
    return Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config") / "decode-cloud"


def credentials_file() -> Path:
    return config_dir() / "credentials.json"


def load() -> Credentials:
    try:
        return msgspec.json.decode(credentials_file().read_bytes(), type=Credentials)
    except (FileNotFoundError, msgspec.DecodeError):
        return Credentials()


def save(credentials: Credentials) -> Path:
    """Write the file atomically, readable by its owner only (created 0600, never widened)."""
    path = credentials_file()
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    temp = path.with_name(f".{path.name}.{os.getpid()}")
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(msgspec.json.encode(credentials))
        os.chmod(temp, 0o600)
        os.replace(temp, path)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
    return path


def remember(url: str, token: str, username: str | None, expires_at: float | None) -> Path:
    credentials = load()
    credentials.tokens[url] = StoredToken(token, username, expires_at)
    credentials.default_url = url
    return save(credentials)


def forget(url: str) -> bool:
    credentials = load()
    found = credentials.tokens.pop(url, None) is not None
    if credentials.default_url == url:
        credentials.default_url = next(iter(credentials.tokens), None)
    save(credentials)
    return found


def as_dict(credentials: Credentials) -> dict[str, Any]:
    return msgspec.to_builtins(credentials)  # type: ignore[no-any-return]
