"""Pure helpers of transfers: paths, the multipart body streamed from disk, temp names, hashes."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from pathlib import Path
from urllib.parse import quote

CHUNK = 1024 * 1024  # read/write size: large enough for full speed, small enough for flat memory
PART_SUFFIX = ".decode-cloud-part"  # downloads in progress; never mistaken for a complete file


def remote_path(*parts: str) -> str:
    """Join remote path parts with single slashes, without leading slashes (paths are relative to the root)."""
    joined = "/".join(p.strip("/") for p in parts if p.strip("/"))
    return joined


def quoted(path: str) -> str:
    """A remote path as it goes into a URL: every segment percent-encoded, slashes kept."""
    return quote(path, safe="/")


def local_files(folder: Path) -> tuple[list[tuple[Path, str, int]], list[str]]:
    """Files under `folder` as (path, relative posix path, size), sorted, and the relative folders
    (empty ones too). Symbolic links to files are followed; partial downloads are left out."""
    files: list[tuple[Path, str, int]] = []
    dirs: list[str] = []
    for root, dirnames, filenames in os.walk(folder):
        dirnames.sort()
        base = Path(root)
        rel_root = base.relative_to(folder).as_posix()
        if rel_root != ".":
            dirs.append(rel_root)
        for name in sorted(filenames):
            if name.endswith(PART_SUFFIX):
                continue
            path = base / name
            rel = name if rel_root == "." else f"{rel_root}/{name}"
            files.append((path, rel, path.stat().st_size))
    return files, dirs


def temp_name(target: Path) -> Path:
    """Where a download of `target` is written before it is renamed into place (same folder, so the
    rename is atomic; hidden, with a suffix that says what it is)."""
    return target.with_name(f".{target.name}.{uuid.uuid4().hex[:8]}{PART_SUFFIX}")


def remove_stale_parts(target: Path) -> None:
    """Delete what an earlier, killed download of `target` left (a Ctrl-C'd one cleans up itself)."""
    for stale in target.parent.glob(f".{glob_escape(target.name)}.*{PART_SUFFIX}"):
        stale.unlink(missing_ok=True)


def glob_escape(name: str) -> str:
    return re.sub(r"([*?\[])", r"[\1]", name)


def md5_file(path: Path) -> str:
    digest = hashlib.md5(usedforsecurity=False)
    with path.open("rb") as f:
        while chunk := f.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


_PLAIN_MD5 = re.compile(r'^(W/)?"?([0-9a-f]{32})"?$')


def etag_md5(etag: str | None) -> str | None:
    """The MD5 an S3 ETag is, for objects stored in one part (pre-signed POST uploads are); None
    for multipart ETags (`…-3`) and when there is no ETag."""
    if not etag:
        return None
    match = _PLAIN_MD5.match(etag.strip())
    return match[2] if match else None


def size_from_headers(status: int, headers: Mapping[str, str]) -> int | None:
    """The full size of a (possibly ranged) GET's object from its headers."""
    get = headers.get
    content_range = get("content-range")
    if content_range and "/" in content_range:
        total = content_range.rsplit("/", 1)[1]
        if total.isdigit():
            return int(total)
    if status == 416:
        return 0
    length = get("content-length")
    return int(length) if length is not None and length.isdigit() and status == 200 else None


class MultipartFile:
    """A `multipart/form-data` body of some form fields and one file part, streamed from disk.

    Its length is known up front (S3's POST needs `Content-Length`: it takes no chunked bodies),
    and `on_bytes` is told how many of the file's bytes went out, chunk by chunk.
    """

    def __init__(self, fields: dict[str, str], filename: str, path: Path, size: int, on_bytes: Callable[[int], None]) -> None:
        self.boundary = f"decode-cloud-{uuid.uuid4().hex}"
        head = bytearray()
        for name, value in fields.items():
            head += f'--{self.boundary}\r\nContent-Disposition: form-data; name="{_escape(name)}"\r\n\r\n'.encode()
            head += value.encode() + b"\r\n"
        head += (
            f'--{self.boundary}\r\nContent-Disposition: form-data; name="file"; filename="{_escape(filename)}"\r\n'
            "Content-Type: application/octet-stream\r\n\r\n"
        ).encode()
        self.head = bytes(head)
        self.tail = f"\r\n--{self.boundary}--\r\n".encode()
        self.path, self.size, self.on_bytes = path, size, on_bytes

    @property
    def content_type(self) -> str:
        return f"multipart/form-data; boundary={self.boundary}"

    @property
    def length(self) -> int:
        return len(self.head) + self.size + len(self.tail)

    async def stream(self) -> AsyncIterator[bytes]:
        yield self.head
        sent = 0
        with self.path.open("rb") as f:
            while sent < self.size:
                chunk = f.read(min(CHUNK, self.size - sent))
                if not chunk:
                    raise OSError(f"{self.path} shrank while it was being uploaded")
                sent += len(chunk)
                self.on_bytes(len(chunk))
                yield chunk
        yield self.tail


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', "%22").replace("\r", "%0D").replace("\n", "%0A")


_UNITS = {"kB": 10**3, "MB": 10**6, "GB": 10**9, "TB": 10**12, "PB": 10**15}


def approx_bytes(size: str) -> int:
    """A listing's rounded size ("3.4 MB", "19 Bytes") as a byte count, near enough for an estimate."""
    number, _, unit = size.partition(" ")
    try:
        return int(float(number) * _UNITS.get(unit, 1))
    except ValueError:
        return 0


def may_be_size(listed: str, size: int) -> bool:
    """Whether a listing's rounded size ("3.4 MB", "19 Bytes") may be that of a file of `size` bytes:
    false only when it cannot be, so a file whose size clearly changed needs no exact look-up."""
    number, _, unit = listed.partition(" ")
    try:
        value = float(number)
    except ValueError:
        return True
    if unit in ("Byte", "Bytes"):
        return int(value) == size
    scale = _UNITS.get(unit)
    if scale is None:
        return True
    return abs(size - value * scale) <= 0.051 * scale  # one decimal shown: off by at most half a tenth


def sse_concerns(data: str, job_id: int) -> bool:
    """Whether a `GET /jobs/events/stream` message's data is about the job `job_id` (unreadable: yes)."""
    try:
        message = json.loads(data)
    except ValueError:
        return True
    return not isinstance(message, dict) or message.get("job_id") == job_id


def jwt_expiry(token: str) -> float | None:
    """The `exp` claim of a JWT (read, not verified: the service verifies), as a Unix time."""
    try:
        payload = token.split(".")[1]
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
        return float(claims["exp"])
    except (IndexError, ValueError, KeyError, TypeError):
        return None


def expires_soon(expires_at: float | None, margin: float = 30.0) -> bool:
    return expires_at is not None and time.time() > expires_at - margin


def batched_paths(paths: list[str]) -> Iterator[str]:
    """The deepest folders among `paths` (their parents are created with them)."""
    chosen = sorted(set(paths))
    for i, path in enumerate(chosen):
        if not (i + 1 < len(chosen) and chosen[i + 1].startswith(path + "/")):
            yield path
