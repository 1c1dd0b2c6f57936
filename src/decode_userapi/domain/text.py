"""Text that may be stored: the one rule for every string a request carries to the database.

PostgreSQL refuses NUL (``\\x00``) in `text` and `jsonb`, and a lone UTF-16 surrogate (``"\\ud800"``
in JSON, which msgspec decodes into a Python `str` as it is) cannot be encoded as UTF-8 at all, by
asyncpg or by sqlite3. Commands are checked once, as they are decoded (`check_text` from a Struct's
`__post_init__`; form fields where they are read), so such a character is answered 422 naming the
field, never a database error. Paths have their own, stricter rule (`files.UserPath`). Text that must
not be lost (a worker's log lines) is kept with `replace_unsafe_text` instead.
"""

from __future__ import annotations

import re

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
