"""Text that may be stored: the one rule for every string a request carries to the database.

PostgreSQL refuses NUL (``\\x00``) in `text` and `jsonb`, and a lone UTF-16 surrogate (``"\\ud800"``
in JSON, which msgspec decodes into a Python `str` as it is) cannot be encoded as UTF-8 at all, by
asyncpg or by sqlite3. Commands are checked once, as they are decoded (`refuse_unsafe_text` from a
Struct's `__post_init__`), so such a character is answered 422 naming the field, never a database
error. Text that must not be lost (a worker's log lines) is kept with `replace_unsafe_text` instead.
"""

from __future__ import annotations

import re
from typing import Any

import msgspec

from decode_userapi.domain.errors import InvalidRequest

_UNSAFE = re.compile("[\x00\ud800-\udfff]")
REPLACEMENT = "\ufffd"


class UnsafeText(InvalidRequest):
    """A string with a character no database stores (NUL, a lone surrogate). Raised from a Struct's
    `__post_init__` while msgspec decodes a body, it reaches the error table as it is (422): msgspec
    wraps only `TypeError` and `ValueError` into its `ValidationError` (which Litestar answers 400).
    """


def _describe(char: str) -> str:
    return "NUL characters" if char == "\x00" else "lone surrogates (invalid Unicode)"


def check_text(value: str, field: str) -> str:
    """`value`, or `UnsafeText` naming `field` if it holds a character no database stores."""
    if (found := _UNSAFE.search(value)) is not None:
        raise UnsafeText(f"{field}: {_describe(found.group())} are not allowed")
    return value


def replace_unsafe_text(value: str) -> str:
    """`value` with every character no database stores replaced by U+FFFD."""
    return _UNSAFE.sub(REPLACEMENT, value) if _UNSAFE.search(value) else value


def _walk(value: Any, where: str) -> None:
    if isinstance(value, str):
        check_text(value, where)
    elif isinstance(value, msgspec.Struct):
        for name in value.__struct_fields__:
            _walk(getattr(value, name), f"{where}.{name}" if where else name)
    elif isinstance(value, dict):
        for key, item in value.items():
            _walk(key, f"{where} (a key)")
            _walk(item, f"{where}[{key!r}]" if not _UNSAFE.search(str(key)) else where)
    elif isinstance(value, (list, tuple)):
        for index, item in enumerate(value):
            _walk(item, f"{where}[{index}]")


def refuse_unsafe_text(command: msgspec.Struct) -> None:
    """`UnsafeText` for the first string anywhere in `command` (fields, lists, dict keys and values)
    that holds a character no database stores; its message names the field (``attributes.env_vars``)."""
    _walk(command, "")
