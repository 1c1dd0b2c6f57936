"""What a downloaded file is called and declared as: `Content-Type` from its name, `Content-Disposition`.

One definition for every way a file leaves the service: streamed by the API, or fetched by the
client from S3 with a pre-signed GET (which asks S3 for the same two headers).
"""

from __future__ import annotations

import mimetypes
import posixpath
import re
from urllib.parse import quote

OCTET_STREAM = "application/octet-stream"
ZIP = "application/zip"

# Where Python's own table has no entry, or one that clients of microscopy data would not expect.
_EXTRA = {
    ".yaml": "application/yaml",
    ".yml": "application/yaml",
    ".tif": "image/tiff",
    ".tiff": "image/tiff",
    ".log": "text/plain",
    ".md": "text/markdown",
    ".toml": "application/toml",
    ".h5": "application/x-hdf5",
    ".hdf5": "application/x-hdf5",
    ".npy": OCTET_STREAM,
    ".npz": ZIP,
    ".ipynb": "application/x-ipynb+json",
}
# A compressed file is declared as the compressed type: a `Content-Encoding` would make clients
# unpack it on the fly, and they asked for the file as it is stored.
_COMPRESSED = {
    ".gz": "application/gzip",
    ".tgz": "application/gzip",
    ".bz2": "application/x-bzip2",
    ".xz": "application/x-xz",
    ".zst": "application/zstd",
    ".7z": "application/x-7z-compressed",
}
_TOKEN = re.compile(r"[A-Za-z0-9!#$&+\-.^_`|~]+")


class MediaTypes:
    """Media types by file extension (any letter case): Python's built-in table plus `_EXTRA`.

    Built once, off the event loop (Python's `mimetypes` reads the machine's tables on first use;
    only its built-in table is taken, so every machine answers the same).
    """

    def __init__(self) -> None:
        builtin = mimetypes.MimeTypes()
        table = {**builtin.types_map[False], **builtin.types_map[True]}  # strict names win
        self._types = {ext.lower(): media for ext, media in table.items()} | _EXTRA | _COMPRESSED

    def of(self, filename: str) -> str:
        """The file's media type; `application/octet-stream` when its name says nothing known."""
        _, ext = posixpath.splitext(filename)
        return self._types.get(ext.lower(), OCTET_STREAM)


def attachment(filename: str) -> str:
    """`Content-Disposition: attachment` with the name as a plain token when it is one, else quoted
    (non-ASCII replaced) plus the exact name in RFC 5987 UTF-8."""
    if _TOKEN.fullmatch(filename):
        return f"attachment; filename={filename}"
    fallback = "".join(c if c.isascii() and c.isprintable() and c not in '"\\' else "_" for c in filename)
    return f"attachment; filename=\"{fallback}\"; filename*=UTF-8''{quote(filename, safe='')}"
