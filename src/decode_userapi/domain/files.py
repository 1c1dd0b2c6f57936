"""User paths, the predefined folders, and what a listing shows.

Every path that comes from a request is parsed exactly once into a `UserPath`: a normalised,
relative path inside the caller's own tree. Storage adapters only ever receive this type, so no
spelling of a path (``..``, ``%2e%2e``, ``%2F``, backslashes, NUL, absolute paths, look-alike
characters) can reach outside the tree.
"""

from __future__ import annotations

import re
import unicodedata
from typing import Literal
from urllib.parse import unquote

import msgspec

from decode_userapi.domain.errors import InvalidPath

# Folders every user's root always holds.
ROOT_FOLDERS: tuple[str, ...] = ("config", "data", "artifact", "output", "log")
# Folders a client may upload into and start jobs from.
INPUT_FOLDERS: tuple[str, ...] = ("config", "data", "artifact")

MAX_SEGMENT_BYTES = 255
MAX_PATH_BYTES = 1024
MAX_DEPTH = 64

_ENCODED = re.compile(r"%[0-9A-Fa-f]{2}")
_USERNAME = re.compile(r"[A-Za-z0-9@._+\-]{1,128}")


def _check_segment(segment: str) -> str:
    if segment == "" or "/" in segment:
        raise InvalidPath("a name must be non-empty and may not contain '/'")
    if segment in (".", ".."):
        raise InvalidPath(f"path segment {segment!r} is not allowed")
    if len(segment.encode("utf-8", "surrogatepass")) > MAX_SEGMENT_BYTES:
        raise InvalidPath(f"a path segment is longer than {MAX_SEGMENT_BYTES} bytes")
    for ch in segment:
        category = unicodedata.category(ch)
        if ch == "\\":
            raise InvalidPath("backslashes are not allowed in paths")
        if category in ("Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"):
            raise InvalidPath("control, format and unassigned characters are not allowed in paths")
    if segment != segment.rstrip(" .") or segment != segment.lstrip(" "):
        raise InvalidPath("a path segment may not start with a space or end with a dot or space")
    if _ENCODED.search(segment):
        raise InvalidPath("percent-encoded sequences are decoded once; a second level is not allowed")
    folded = unicodedata.normalize("NFKC", segment)
    if folded in (".", "..") or "/" in folded or "\\" in folded or (":" in folded and folded != segment):
        raise InvalidPath("look-alike characters that stand for path separators are not allowed")
    return unicodedata.normalize("NFC", segment)


class UserPath(msgspec.Struct, frozen=True, gc=False):
    """A normalised path relative to one user's root. Immutable and hashable.

    `parts` are the segments; `is_dir` says the path was written with a trailing slash (or is the
    root). The string form is ``a/b`` for files and ``a/b/`` for directories; the root is ``""``.

    Constructing one does not check the segments: `parse` and `child` do, for names from clients;
    storage adapters build paths directly from names they found in the tree. A frozen Struct because
    listings build thousands of these: it is several times cheaper to create than a plain class that
    guards its attributes (and holds nothing that could form a reference cycle, hence `gc=False`).
    """

    parts: tuple[str, ...] = ()
    is_dir: bool = False

    def __post_init__(self) -> None:
        if not self.parts and not self.is_dir:
            msgspec.structs.force_setattr(self, "is_dir", True)  # the root is always a folder

    @classmethod
    def parse(cls, text: str, *, percent_encoded: bool = False) -> UserPath:
        """Parse a client's path. With `percent_encoded`, it is decoded exactly once first.

        A single leading ``/`` means the user's root; empty segments (``a//b``) are folded.
        Anything that could leave the tree or alias another name is refused with `InvalidPath`.
        """
        if not isinstance(text, str):
            raise InvalidPath("a path must be a string")
        if percent_encoded:
            try:
                text = unquote(text, encoding="utf-8", errors="strict")
            except UnicodeDecodeError as e:
                raise InvalidPath("the path is not valid UTF-8 once percent-decoded") from e
        if len(text.encode("utf-8", "surrogatepass")) > MAX_PATH_BYTES:
            raise InvalidPath(f"the path is longer than {MAX_PATH_BYTES} bytes")
        if "\x00" in text:
            raise InvalidPath("NUL bytes are not allowed in paths")
        if "\\" in text:
            raise InvalidPath("backslashes are not allowed in paths")
        is_dir = text.endswith("/") or text == ""
        parts = tuple(_check_segment(s) for s in text.split("/") if s != "")
        if len(parts) > MAX_DEPTH:
            raise InvalidPath(f"the path is deeper than {MAX_DEPTH} folders")
        return cls(parts, is_dir)

    @classmethod
    def root(cls) -> UserPath:
        return cls((), True)

    @property
    def is_root(self) -> bool:
        return not self.parts

    @property
    def name(self) -> str:
        return self.parts[-1] if self.parts else ""

    @property
    def top(self) -> str | None:
        """The predefined folder the path lies in (its first segment), if any."""
        return self.parts[0] if self.parts else None

    @property
    def parent(self) -> UserPath:
        return UserPath(self.parts[:-1], True)

    @property
    def is_predefined_folder(self) -> bool:
        return len(self.parts) == 1 and self.parts[0] in ROOT_FOLDERS

    def child(self, name: str, *, is_dir: bool = False) -> UserPath:
        return UserPath((*self.parts, _check_segment(name)), is_dir)

    def join(self, other: UserPath) -> UserPath:
        return UserPath((*self.parts, *other.parts), other.is_dir)

    def as_dir(self) -> UserPath:
        return UserPath(self.parts, True)

    def as_file(self) -> UserPath:
        return UserPath(self.parts, False) if self.parts else self

    def relative_to(self, base: UserPath) -> tuple[str, ...]:
        if self.parts[: len(base.parts)] != base.parts:
            raise ValueError(f"{self} is not inside {base}")
        return self.parts[len(base.parts) :]

    def is_within(self, base: UserPath) -> bool:
        return self.parts[: len(base.parts)] == base.parts

    @property
    def key(self) -> str:
        """Slash-joined segments without a trailing slash (``""`` for the root)."""
        return "/".join(self.parts)

    def __str__(self) -> str:
        text = "/".join(self.parts)
        return f"{text}/" if self.is_dir and self.parts else text

    def __repr__(self) -> str:
        return f"UserPath({str(self)!r})"


def check_username(username: str) -> str:
    """A username names the user's tree: letters, digits, ``@ . _ + -``, up to 128 characters."""
    if not isinstance(username, str) or not _USERNAME.fullmatch(username) or username in (".", ".."):
        raise InvalidPath(
            "a username is 1 to 128 letters, digits or '@ . _ + -' characters, and not '.' or '..'"
        )
    return username


FileType = Literal["file", "directory"]


class FileInfo(msgspec.Struct, frozen=True):
    """One entry of a listing, as clients see it."""

    path: str
    type: FileType
    size: str


class FileHTTPRequest(msgspec.Struct, frozen=True):
    """A request the client sends next, as it is, to move the bytes."""

    method: Literal["get", "post"]
    url: str
    headers: dict[str, str] = {}
    data: dict[str, str] = {}


class Entry(msgspec.Struct, frozen=True, gc=False):
    """What storage reports for one path: a file with its size, or a directory."""

    path: UserPath
    size: int | None  # None for directories

    @property
    def is_dir(self) -> bool:
        return self.size is None

    def info(self) -> FileInfo:
        # The string forms of `path.as_dir()` and `path.as_file()`, without building those paths:
        # listings call this once per entry.
        key = "/".join(self.path.parts)
        if self.size is None:
            return FileInfo(path=f"{key}/" if key else key, type="directory", size="")
        return FileInfo(path=key, type="file", size=natural_size(self.size))


_UNITS = ("kB", "MB", "GB", "TB", "PB", "EB", "ZB", "YB", "RB", "QB")
_SCALE = tuple(1000**exp for exp in range(len(_UNITS) + 1))  # _SCALE[exp] is the size of _UNITS[exp - 1]


def natural_size(size: int) -> str:
    """A byte count in decimal units, written as `humanize.naturalsize` writes it.

    The unit is chosen from the exact count; when rounding to one decimal would show ``1000.0``,
    the next unit is used (``999950`` is ``1.0 MB``), as current `humanize` does. Listings call this
    once per file, hence the precomputed scale and `%` formatting (cheaper than a format spec).
    """
    if size < 1000:
        return "1 Byte" if size == 1 else f"{size} Bytes"
    exp = 1
    while exp < len(_UNITS) and size >= _SCALE[exp + 1]:
        exp += 1
    text = "%.1f" % (size / _SCALE[exp])
    if text == "1000.0" and exp < len(_UNITS):  # below 1000 before rounding: only this rounds up
        exp += 1
        text = "%.1f" % (size / _SCALE[exp])
    return f"{text} {_UNITS[exp - 1]}"
