"""The OpenAPI document as clients need it, and `/docs` rendered from a packaged Swagger UI.

Litestar writes the document from the handlers; this module completes it, once per app, in one
place (handler modules stay as they are):
- a bearer scheme (the ID token, a JWT) on every operation that needs it, and the `x-api-key`
  scheme on the worker-facing API's `PUT /_job_status`, so Swagger's *Authorize* and generated
  clients send them;
- the form bodies of `POST /user`, `/token` and `/login` (their handlers read the form themselves);
- the file operations one by one: the `/files` handlers serve several operations each, told apart by
  the raw path (`…/upload`, `…/url`, `…/download`, a trailing `/`), so Litestar sees four
  catch-all routes. Each operation gets its own path, body and answers; its refusals are the ones
  its handler declares;
- an `operationId` for every operation, the names generated clients give their functions.

The document is served at `/schema/openapi.json` (Litestar's place), `/openapi.json` (where clients
of the original look) and `/docs/openapi.json`. `/docs` is a Swagger UI page whose script, style and
icon are served by the service itself from the `swagger-ui-py` package: no CDN, so it works on a
closed network, under a Content-Security-Policy of `'self'` only.
"""

from __future__ import annotations

import copy
import html
import importlib.util
from pathlib import Path
from typing import Any

from litestar import MediaType, Request, Response, get
from litestar.exceptions import NotFoundException
from litestar.openapi.plugins import OpenAPIRenderPlugin
from litestar.params import FromPath
from litestar.response import File

DOCS_PATH = "/docs"
SCHEMA_PATH = "/schema"
BEARER = "bearer"
INTERNAL_KEY = "internalApiKey"
_ERROR_CODES = ("4", "5")

# Swagger UI's files this page uses, by the name they are served under /docs/assets/.
ASSETS = {
    "swagger-ui.css": "text/css",
    "swagger-ui-bundle.js": "text/javascript",
    "favicon-32x32.png": "image/png",
    "favicon-16x16.png": "image/png",
}
# Our start-up script, a file rather than inline so the page's CSP needs no 'unsafe-inline' scripts.
INIT_SCRIPT = b"""window.addEventListener("load", function () {
  var node = document.getElementById("swagger-ui");
  window.ui = SwaggerUIBundle({
    url: node.dataset.openapiUrl,
    dom_id: "#swagger-ui",
    deepLinking: true,
    validatorUrl: null,
    presets: [SwaggerUIBundle.presets.apis],
    layout: "BaseLayout"
  });
});
"""
DOCS_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
    "font-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)

# operationId of every operation, by (method, path) as the completed document writes them.
OPERATION_IDS = {
    ("get", "/"): "welcome",
    ("get", "/access_info"): "getAccessInfo",
    ("get", "/user"): "getUser",
    ("post", "/user"): "createUser",
    ("post", "/token"): "createToken",
    ("post", "/login"): "login",
    ("get", "/files/{path}"): "listFiles",
    ("get", "/files/{path}/download"): "downloadFile",
    ("get", "/files/{path}/url"): "getDownloadRequest",
    ("get", "/files/{path}/thumbnail"): "getThumbnail",
    ("post", "/files/{path}/upload"): "uploadFiles",
    ("post", "/files/{path}/url"): "getUploadRequest",
    ("post", "/files/{path}/"): "createFolder",
    ("put", "/files/{path}"): "renameFile",
    ("delete", "/files/{path}"): "deleteFile",
    ("get", "/jobs/applications"): "getApplications",
    ("get", "/jobs"): "listJobs",
    ("post", "/jobs"): "createJob",
    ("get", "/jobs/{job_id}"): "getJob",
    ("delete", "/jobs/{job_id}"): "deleteJob",
    ("post", "/jobs/{job_id}/cancel"): "cancelJob",
    ("get", "/jobs/{job_id}/events"): "listJobEvents",
    ("get", "/jobs/events/stream"): "streamJobEvents",
    ("put", "/_job_status"): "updateJobStatus",
    ("get", "/health"): "health",
    ("get", "/ready"): "ready",
}


def needs_bearer(method: str, path: str) -> bool:
    """Operations that need the caller's ID token (CONTRACT: every /files and /jobs, and GET /user)."""
    return path.startswith(("/files", "/jobs")) or (method, path) == ("get", "/user")


def _ref(name: str) -> dict[str, Any]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


_PATH_PARAMETER = {
    "name": "path",
    "in": "path",
    "required": True,
    "description": (
        "a path in the caller's tree, relative to its root (`data/run1`); may contain slashes, "
        "sent as they are or as `%2F`; `..` and absolute paths are refused"
    ),
    "schema": {"type": "string"},
}
_FOLDER_PARAMETER = {
    **_PATH_PARAMETER,
    "description": (
        "a folder under `config/`, `data/` or `artifact/` (`data/run1`); may contain slashes, sent as "
        "they are or as `%2F`"
    ),
}


def _flag(name: str, default: bool, description: str) -> dict[str, Any]:
    return {
        "name": name,
        "in": "query",
        "required": False,
        "description": f"{description}; `true`/`false` in any letter case (`True` too)",
        "schema": {"type": "boolean", "default": default},
    }


_FILE_INFO_LIST = {"type": "array", "items": _ref("FileInfo")}
_CREDENTIALS_FORM = {
    "required": True,
    "content": {
        "application/x-www-form-urlencoded": {
            "schema": {
                "type": "object",
                "required": ["username", "password"],
                "properties": {
                    "username": {
                        "type": "string",
                        "minLength": 1,
                        "maxLength": 1024,
                        "description": "an email address, or a login of letters, digits and `@ . _ + -`",
                    },
                    "password": {"type": "string", "minLength": 1, "maxLength": 1024, "format": "password"},
                },
            }
        }
    },
}


def _file_operations(generated: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The `/files` operations one by one, each with the refusals its Litestar handler declares."""

    def errors(method: str) -> dict[str, Any]:
        operation = generated.get(method) or {}
        return {code: answer for code, answer in operation.get("responses", {}).items() if code[:1] in _ERROR_CODES}

    def operation(method: str, summary: str, description: str, answers: dict[str, Any], **extra: Any) -> dict[str, Any]:
        return {
            "tags": ["files"],
            "summary": summary,
            "description": description,
            "parameters": [_PATH_PARAMETER],
            **extra,
            "responses": {**answers, **errors(method)},
        }

    binary = {"type": "string", "format": "binary"}
    return {
        "/files/{path}": {
            "get": operation(
                "get",
                "List a folder",
                "The folder's entries sorted by path; an empty path or `/` is the root (`GET /files/`). "
                "Folders end in `/` and have size `\"\"`.",
                {"200": _json(_FILE_INFO_LIST, "the folder's entries")},
                parameters=[
                    _PATH_PARAMETER,
                    _flag("show_dirs", True, "list folders too"),
                    _flag("recursive", False, "list the whole subtree"),
                ],
            ),
            "put": operation(
                "put",
                "Rename a file or an empty folder",
                "Moves `{path}` to the body's `path`. A non-empty or predefined folder → 405; an existing "
                "target → 409, both kept.",
                {"200": _json(_ref("FileInfo"), "the file at its new path")},
                requestBody={"required": True, "content": {"application/json": {"schema": _ref("Rename")}}},
            ),
            "delete": operation(
                "delete",
                "Delete a file or a folder",
                "Folders recursively; 204 also when nothing was there. A predefined folder comes back empty.",
                {"204": {"description": "deleted"}},
            ),
        },
        "/files/{path}/download": {
            "get": operation(
                "get",
                "Download a file, or a folder as a zip",
                "A file's bytes, `Content-Type` guessed from its name (`application/octet-stream` when "
                "unknown); a folder → `application/zip`. `Content-Disposition: attachment` names it.",
                {
                    "200": {
                        "description": "the bytes",
                        "content": {"application/octet-stream": {"schema": binary}, "*/*": {"schema": binary}},
                    }
                },
            )
        },
        "/files/{path}/thumbnail": {
            "get": operation(
                "get",
                "A PNG thumbnail of an image file",
                "The first frame of a TIFF stack (or a PNG, JPEG, ...), fit into `size` × `size` pixels, as an "
                "8-bit PNG (16-bit and float frames stretched from their minimum to their maximum). `413` for a "
                "file over 64 MiB or a frame over 16 Mpx; `422` for what is not an image, or a folder.",
                {"200": {"description": "the PNG", "content": {"image/png": {"schema": binary}}}},
                parameters=[
                    _PATH_PARAMETER,
                    {
                        "name": "size",
                        "in": "query",
                        "required": False,
                        "description": "the thumbnail's longest side in pixels",
                        "schema": {"type": "integer", "minimum": 16, "maximum": 1024, "default": 256},
                    },
                ],
            )
        },
        "/files/{path}/url": {
            "get": operation(
                "get",
                "A request that downloads a file",
                "Send it as it is: local storage → a `get` of `…/download` with the caller's "
                "`authorization`; S3 → a pre-signed GET.",
                {"200": _json(_ref("FileHTTPRequest"), "the request to send")},
            ),
            "post": operation(
                "post",
                "A request that uploads files into a folder",
                "Send it as it is, adding the `file` part(s): local storage → a `post` to `…/upload` with "
                "the caller's `authorization`; S3 → a pre-signed POST whose `data` are its form fields.",
                {"201": _json(_ref("FileHTTPRequest"), "the request to send")},
                parameters=[_FOLDER_PARAMETER],
            ),
        },
        "/files/{path}/upload": {
            "post": operation(
                "post",
                "Upload files into a folder",
                "Multipart `file` parts, streamed to storage; a file name with folders in it counts by its "
                "last component. One part → its `FileInfo`; several → a list, in the order sent.",
                {"201": _json({"oneOf": [_ref("FileInfo"), _FILE_INFO_LIST]}, "the uploaded file(s)")},
                parameters=[_FOLDER_PARAMETER],
                requestBody={
                    "required": True,
                    "content": {
                        "multipart/form-data": {
                            "schema": {
                                "type": "object",
                                "required": ["file"],
                                "properties": {"file": {"type": "array", "items": binary, "minItems": 1}},
                            },
                            "encoding": {"file": {"contentType": "application/octet-stream"}},
                        }
                    },
                },
            ),
        },
        "/files/{path}/": {
            "post": operation(
                "post",
                "Create a folder",
                "Creates `{path}/` (and its parents) under `config/`, `data/` or `artifact/`; the trailing "
                "slash is what makes this a folder creation.",
                {"201": _json({"type": "null"}, "created (the body is `null`)")},
                parameters=[_FOLDER_PARAMETER],
            ),
        },
    }


def _drop_default_validation_answers(paths: dict[str, Any]) -> None:
    """Litestar documents a 400 "Validation Exception" on every operation with parameters; the
    service answers such refusals with 422 and a `detail` (the error table), which the operations
    declare already. The false 400, whose `extra` union generators cannot type, is dropped."""
    for path_item in paths.values():
        for operation in path_item.values():
            responses = operation.get("responses", {}) if isinstance(operation, dict) else {}
            answer = responses.get("400", {})
            schema = answer.get("content", {}).get("application/json", {}).get("schema", {})
            if schema.get("description") == "Validation Exception":
                del responses["400"]
                responses.setdefault("422", {
                    "description": "a parameter or body refused for its shape, type or value",
                    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorView"}}},
                })


def complete(generated: dict[str, Any]) -> dict[str, Any]:
    """Litestar's document completed for clients (see the module's docstring); `generated` is kept."""
    document = copy.deepcopy(generated)
    paths: dict[str, Any] = document.setdefault("paths", {})
    catch_all = paths.pop("/files/{p}", {})
    paths.pop("/files", None)
    paths.update(_file_operations(catch_all))
    for method, path in (("post", "/user"), ("post", "/token"), ("post", "/login")):
        if operation := paths.get(path, {}).get(method):
            operation["requestBody"] = copy.deepcopy(_CREDENTIALS_FORM)
    _drop_default_validation_answers(paths)
    components = document.setdefault("components", {})
    components["securitySchemes"] = {
        BEARER: {
            "type": "http",
            "scheme": "bearer",
            "bearerFormat": "JWT",
            "description": "the ID token from `POST /token` (built-in identity) or Cognito",
        },
        INTERNAL_KEY: {
            "type": "apiKey",
            "in": "header",
            "name": "x-api-key",
            "description": "INTERNAL_API_KEY_SECRET, shared with the worker-facing API",
        },
    }
    for path, item in paths.items():
        for method, operation in item.items():
            if not isinstance(operation, dict) or "responses" not in operation:
                continue
            if (method, path) in OPERATION_IDS:
                operation["operationId"] = OPERATION_IDS[method, path]
            if needs_bearer(method, path):
                operation["security"] = [{BEARER: []}]
            elif path == "/_job_status":
                operation["security"] = [{INTERNAL_KEY: []}]
    return document


class ApiDocument:
    """The completed document of one app, encoded once, at its first request."""

    def __init__(self) -> None:
        self._encoded: bytes | None = None

    def encoded(self, generated: dict[str, Any]) -> bytes:
        if self._encoded is None:
            import msgspec

            self._encoded = msgspec.json.encode(complete(generated))
        return self._encoded

    def from_app(self, request: Request[Any, Any, Any]) -> bytes:
        if self._encoded is None:
            return self.encoded(request.app.openapi_schema.to_schema())
        return self._encoded


class DocumentRenderPlugin(OpenAPIRenderPlugin):
    """Litestar's `/schema/openapi.json`, completed."""

    def __init__(self, document: ApiDocument) -> None:
        super().__init__(path="/openapi.json", media_type=MediaType.JSON)
        self.document = document

    def render(self, request: Request[Any, Any, Any], openapi_schema: dict[str, Any]) -> bytes:
        return self.document.encoded(openapi_schema)


def swagger_ui_dir() -> Path:
    """The Swagger UI files shipped by `swagger-ui-py`, found without importing its web-framework glue."""
    spec = importlib.util.find_spec("swagger_ui")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("the swagger-ui-py package is missing: reinstall decode-userapi")
    return Path(next(iter(spec.submodule_search_locations))) / "static"


def _docs_page(root: str) -> bytes:
    def url(path: str) -> str:
        return html.escape(f"{root}{path}", quote=True)

    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>DECODE OpenCloud user-facing API</title>
<link rel="icon" type="image/png" sizes="32x32" href="{url(DOCS_PATH + '/assets/favicon-32x32.png')}">
<link rel="icon" type="image/png" sizes="16x16" href="{url(DOCS_PATH + '/assets/favicon-16x16.png')}">
<link rel="stylesheet" href="{url(DOCS_PATH + '/assets/swagger-ui.css')}">
</head>
<body>
<div id="swagger-ui" data-openapi-url="{url('/openapi.json')}"></div>
<script src="{url(DOCS_PATH + '/assets/swagger-ui-bundle.js')}"></script>
<script src="{url(DOCS_PATH + '/assets/init.js')}"></script>
</body>
</html>
""".encode()


def docs_handlers(document: ApiDocument) -> list[Any]:
    """`/docs` (the page and its assets) and the document at `/openapi.json` and `/docs/openapi.json`."""
    static = swagger_ui_dir()

    @get([DOCS_PATH, f"{DOCS_PATH}/"], include_in_schema=False, media_type=MediaType.HTML, sync_to_thread=False)
    def docs_page(request: Request[Any, Any, Any]) -> bytes:
        return _docs_page(request.scope.get("root_path", "").rstrip("/"))

    @get(["/openapi.json", f"{DOCS_PATH}/openapi.json"], include_in_schema=False, sync_to_thread=False)
    def openapi_json(request: Request[Any, Any, Any]) -> Response[bytes]:
        return Response(document.from_app(request), media_type=MediaType.JSON)

    @get(f"{DOCS_PATH}/assets/{{name:str}}", include_in_schema=False, sync_to_thread=False)
    def docs_asset(name: FromPath[str]) -> Response[bytes] | File:
        headers = {"Cache-Control": "public, max-age=86400"}
        if name == "init.js":
            return Response(INIT_SCRIPT, media_type="text/javascript", headers=headers)
        if name not in ASSETS:
            raise NotFoundException(f"no asset {name!r}")
        return File(static / name, media_type=ASSETS[name], headers=headers, content_disposition_type="inline")

    return [docs_page, openapi_json, docs_asset]
