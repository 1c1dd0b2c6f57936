"""`/files`: each user's private tree.

Routes use one `{p:path}` handler per method and read the path as sent (`raw_path`), because
Litestar normalises paths (dropping the trailing slash that marks a folder, decoding `%2F`)
before it fills path parameters. A trailing `/download`, `/url` or `/upload` names the action.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator
from pathlib import Path
from typing import Annotated, Any

import msgspec
from litestar import Controller, MediaType, Request, Response, delete, get, post, put
from litestar.di import NamedDependency
from litestar.params import JSONBody, Parameter, QueryParameter
from litestar.response import Stream
from litestar.status_codes import HTTP_201_CREATED, HTTP_204_NO_CONTENT

from decode_userapi.domain.commands import Rename
from decode_userapi.domain.errors import InvalidRequest
from decode_userapi.domain.files import FileHTTPRequest, FileInfo, UserPath
from decode_userapi.domain.identity import Principal
from decode_userapi.domain.media_types import attachment
from decode_userapi.domain.text import replace_unsafe_text
from decode_userapi.entrypoints.http.deps import api_base_url, raw_subpath
from decode_userapi.entrypoints.http.errors import error_responses
from decode_userapi.entrypoints.http.guards import users_only
from decode_userapi.entrypoints.http.multipart import MultipartFiles
from decode_userapi.entrypoints.http.thumbnails import thumbnail, thumbnail_size
from decode_userapi.services.files import FileService

PREFIX = "/files"
_TRUE = ("true", "1", "yes", "on")
_FALSE = ("false", "0", "no", "off")
# `{p}` as the OpenAPI document shows it: a path with slashes (Litestar would call it a URI). Handlers
# take it only for the document; they parse the raw path (see above).
DocumentedPath = Annotated[
    Path | None,
    Parameter(
        description="a path in the caller's tree, relative to its root; may contain slashes",
        schema_extra={"type": "string", "format": "path", "oneOf": None},
    ),
]


def _flag(value: str | None, name: str, default: bool) -> bool:
    if value is None or value == "":
        return default
    lowered = value.lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise InvalidRequest(f"{name}: must be true or false (any letter case), not {value!r}")


class FileStream(Stream):
    """A `Stream` that keeps its own media type: Litestar gives a route's (JSON, for these routes that
    also answer listings) precedence over the one the response was made with."""

    def to_asgi_response(self, *args: Any, **kwargs: Any) -> Any:
        kwargs["media_type"] = self.media_type
        return super().to_asgi_response(*args, **kwargs)


def _split_action(request: Request[Any, Any, Any], actions: tuple[str, ...]) -> tuple[str, str | None]:
    """The raw path after /files, and the action named by its last segment, if any."""
    raw = raw_subpath(request, PREFIX)
    for action in actions:
        suffix = f"/{action}"
        if raw.endswith(suffix):
            return raw[: -len(suffix)], action
    return raw, None


_LISTING = msgspec.json.Encoder()


def _encode_page(page: list[FileInfo]) -> bytes:
    try:
        return _LISTING.encode(page)
    except UnicodeEncodeError:
        # A name on disk that is not UTF-8 (a job wrote it) holds surrogates no JSON can carry.
        return _LISTING.encode([FileInfo(replace_unsafe_text(i.path), i.type, i.size) for i in page])


async def json_array(pages: AsyncGenerator[list[FileInfo], None]) -> AsyncIterator[bytes]:
    """A listing's pages as one JSON array, a chunk per page, as the storage walks the tree.

    Errors found before the first chunk (a missing folder, too many entries) were raised by the
    service already and get their 4xx. One found later (the storage failing part-way, the tree grown
    past the limit) can no longer change the status: the answer stops there, the connection is closed
    without the chunked body's end, and no client can take the unfinished array for a whole one.
    """
    opened = False
    try:
        async for page in pages:
            if page:
                yield (b"," if opened else b"[") + _encode_page(page)[1:-1]
                opened = True
        yield b"]" if opened else b"[]"
    finally:
        await pages.aclose()


class FilesController(Controller):
    path = PREFIX
    tags = ["files"]
    guards = [users_only]

    @get(
        ["/", "/{p:path}"],
        summary="List a folder, download, or get a download request",
        responses=error_responses(400, 401, 403, 404, 413, 422, 503),
    )
    async def read(
        self,
        request: Request[Any, Any, Any],
        principal: NamedDependency[Principal],
        files: NamedDependency[FileService],
        show_dirs: Annotated[str | None, QueryParameter(description="true/false, any case")] = None,
        recursive: Annotated[str | None, QueryParameter(description="true/false, any case")] = None,
        size: Annotated[int | None, QueryParameter(description="…/thumbnail: the longest side, 16 to 1024")] = None,
        p: DocumentedPath = None,
    ) -> Any:
        raw, action = _split_action(request, ("download", "url", "thumbnail"))
        path = UserPath.parse(raw, percent_encoded=True)
        if action == "thumbnail":
            side = thumbnail_size(size)
            png = await thumbnail(await files.download(principal, path), side)
            return Response(png, media_type="image/png")
        if action == "download":
            download = await files.download(principal, path)
            headers = {"Content-Disposition": attachment(download.filename)}
            if download.size is not None:
                headers["Content-Length"] = str(download.size)
            return FileStream(download.chunks, media_type=download.media_type, headers=headers)
        if action == "url":
            return await files.download_request(
                principal,
                path,
                api_download_url=f"{api_base_url(request)}{PREFIX}{raw}/download",
                authorization=request.headers.get("authorization"),
            )
        listing = await files.listing(
            principal,
            path,
            show_dirs=_flag(show_dirs, "show_dirs", True),
            recursive=_flag(recursive, "recursive", False),
        )
        if isinstance(listing, list):  # read whole already: one body, with its length
            return Response(_encode_page(listing), media_type=MediaType.JSON)
        return Stream(json_array(listing), media_type=MediaType.JSON)

    @post(
        ["/", "/{p:path}"],
        status_code=HTTP_201_CREATED,
        request_max_body_size=None,  # uploads are limited while streaming, by MAX_UPLOAD_BYTES
        summary="Upload files (…/upload), get an upload request (…/url), or create a folder (…/)",
        description=(
            "An upload takes one or more multipart parts named `file`; each is stored under the last "
            "component of its file name. One part answers its `FileInfo`, several a list of them, in order; "
            "if one fails, none of the request's files are kept."
        ),
        responses=error_responses(400, 401, 403, 405, 409, 413, 422, 503, 507),
    )
    async def create(
        self,
        request: Request[Any, Any, Any],
        principal: NamedDependency[Principal],
        files: NamedDependency[FileService],
        max_upload_bytes: NamedDependency[int],
        p: DocumentedPath = None,
    ) -> FileInfo | list[FileInfo] | FileHTTPRequest | None:
        raw, action = _split_action(request, ("upload", "url"))
        folder = UserPath.parse(raw, percent_encoded=True).as_dir()
        if action == "upload":
            parts = MultipartFiles(request, "file", max_upload_bytes).files()
            stored = await files.upload_all(principal, folder, parts)
            return stored[0] if len(stored) == 1 else stored
        if action == "url":
            return await files.upload_request(
                principal,
                folder,
                api_upload_url=f"{api_base_url(request)}{PREFIX}{raw}/upload",
                authorization=request.headers.get("authorization"),
            )
        await files.mkdir(principal, folder)
        return None

    @put(
        ["/", "/{p:path}"],
        summary="Rename a file or an empty folder",
        responses=error_responses(400, 401, 403, 404, 405, 409, 413, 422, 503),
    )
    async def rename(
        self,
        request: Request[Any, Any, Any],
        principal: NamedDependency[Principal],
        files: NamedDependency[FileService],
        data: JSONBody[Rename],
        p: DocumentedPath = None,
    ) -> FileInfo:
        source = UserPath.parse(raw_subpath(request, PREFIX), percent_encoded=True)
        return await files.rename(principal, source, UserPath.parse(data.path))

    @delete(
        ["/", "/{p:path}"],
        status_code=HTTP_204_NO_CONTENT,
        summary="Delete a file or a folder",
        responses=error_responses(400, 401, 403, 503),
    )
    async def remove(
        self,
        request: Request[Any, Any, Any],
        principal: NamedDependency[Principal],
        files: NamedDependency[FileService],
        p: DocumentedPath = None,
    ) -> None:
        await files.delete(principal, UserPath.parse(raw_subpath(request, PREFIX), percent_encoded=True))


