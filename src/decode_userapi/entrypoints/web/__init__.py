"""The web page: plain ES modules, a stylesheet and one HTML file, shipped in the wheel and served
by the service itself under `/ui/` (no build step, no CDN: labs run closed networks).

The page is one more client of the HTTP API: it calls the same routes as scripts do, with the
bearer token it got from `POST /token` (or Cognito) in the Authorization header. It adds no rule of
its own.

- `GET /ui/` is the page, `GET /ui/<asset>` its files, each with its own `Content-Type`, an `ETag`
  (a hash of the bytes) and `Cache-Control: no-cache`: a browser keeps them and revalidates with
  `If-None-Match` (a 304 without body) on each load, so a new release is picked up at once.
- `GET /` answers a browser (an `Accept` naming `text/html`) with `303 See Other` to `/ui/`;
  every other client gets the JSON welcome of CONTRACT.md as before.
- Every UI answer carries a strict Content-Security-Policy: scripts, styles and fonts from the
  service only, no inline script or style; images also from `blob:` (previews the page fetched
  with its token); `connect-src` the service and, where configured, the Cognito endpoint and the
  S3 bucket the `/url` flow sends uploads to.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Annotated, Any

from litestar import Request, Response, get
from litestar.exceptions import NotFoundException
from litestar.params import Parameter

from decode_userapi.config import Settings

AssetPath = Annotated[Path | None, Parameter(description="a file of the page")]

UI_PATH = "/ui"
CACHE_CONTROL = "no-cache"  # keep, but revalidate (ETag) before each use: assets are not fingerprinted
MEDIA_TYPES = {
    ".html": "text/html",
    ".js": "text/javascript",
    ".css": "text/css",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".txt": "text/plain",
}


@dataclass(frozen=True)
class Asset:
    body: bytes
    media_type: str
    etag: str


def load_assets() -> dict[str, Asset]:
    """Every file under `static/`, by its path relative to it (read once, at app creation)."""
    assets: dict[str, Asset] = {}
    root = resources.files(__package__).joinpath("static")

    def walk(node: Any, prefix: str) -> None:
        for child in node.iterdir():
            name = f"{prefix}{child.name}"
            if child.is_dir():
                walk(child, f"{name}/")
                continue
            suffix = "." + child.name.rsplit(".", 1)[-1] if "." in child.name else ""
            if suffix not in MEDIA_TYPES:
                continue
            body = child.read_bytes()
            assets[name] = Asset(body, MEDIA_TYPES[suffix], f'"{hashlib.sha256(body).hexdigest()[:32]}"')

    walk(root, "")
    return assets


def _origin(url: str) -> str:
    scheme, _, rest = url.partition("://")
    return f"{scheme}://{rest.split('/', 1)[0]}" if rest else ""


def connect_sources(settings: Settings, environ: Mapping[str, str]) -> list[str]:
    """Where the page may send requests besides the service: Cognito's endpoint (sign-in) and the
    S3 bucket that the `/url` flow's pre-signed POSTs go to."""
    sources = ["'self'"]
    if settings.identity == "cognito":
        endpoint = environ.get("AWS_ENDPOINT_URL_COGNITO_IDENTITY_PROVIDER") or environ.get("AWS_ENDPOINT_URL")
        region = settings.cognito_region or environ.get("AWS_DEFAULT_REGION") or "us-east-1"
        sources.append(_origin(endpoint) if endpoint else f"https://cognito-idp.{region}.amazonaws.com")
    if settings.filesystem == "s3":
        endpoint = environ.get("AWS_ENDPOINT_URL_S3") or environ.get("AWS_ENDPOINT_URL")
        if endpoint:
            sources.append(_origin(endpoint))
        else:
            region = settings.s3_region or environ.get("AWS_DEFAULT_REGION") or "us-east-1"
            sources += [f"https://{settings.s3_bucket}.s3.{region}.amazonaws.com", f"https://s3.{region}.amazonaws.com"]
    return [source for source in sources if source]


def ui_csp(connect: list[str]) -> str:
    return (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' blob: data:; font-src 'self'; "
        f"connect-src {' '.join(connect)}; manifest-src 'self'; base-uri 'none'; form-action 'self'; "
        "frame-ancestors 'none'; object-src 'none'"
    )


def cognito_endpoint(settings: Settings, environ: Mapping[str, str]) -> str | None:
    """The Cognito API the page signs in against (`USER_PASSWORD_AUTH`), when the identity is Cognito."""
    if settings.identity != "cognito":
        return None
    endpoint = environ.get("AWS_ENDPOINT_URL_COGNITO_IDENTITY_PROVIDER") or environ.get("AWS_ENDPOINT_URL")
    region = settings.cognito_region or environ.get("AWS_DEFAULT_REGION") or "us-east-1"
    return endpoint.rstrip("/") + "/" if endpoint else f"https://cognito-idp.{region}.amazonaws.com/"


def web_handlers(settings: Settings, environ: Mapping[str, str]) -> list[Any]:
    """The page and its assets under `/ui/`."""
    assets = load_assets()
    csp = ui_csp(connect_sources(settings, environ))
    cognito = cognito_endpoint(settings, environ)
    if cognito is not None:
        # The page reads where to sign in from a file it loads (no inline script): its config.
        config = f'{{"cognito_endpoint": "{cognito}"}}\n'.encode()
    else:
        config = b"{}\n"
    assets["config.json"] = Asset(config, "application/json", f'"{hashlib.sha256(config).hexdigest()[:32]}"')

    def answer(request: Request[Any, Any, Any], name: str) -> Response[bytes]:
        asset = assets.get(name)
        if asset is None:
            raise NotFoundException(f"no such file: {name[:200]}")
        headers = {"Cache-Control": CACHE_CONTROL, "ETag": asset.etag, "Content-Security-Policy": csp}
        if request.headers.get("if-none-match") == asset.etag:
            return Response(b"", status_code=304, headers=headers)
        return Response(asset.body, media_type=asset.media_type, headers=headers)

    @get([f"{UI_PATH}/", f"{UI_PATH}/{{name:path}}"], include_in_schema=False, sync_to_thread=False)
    def ui(request: Request[Any, Any, Any], name: AssetPath = None) -> Response[bytes]:
        wanted = str(name).strip("/") if name is not None else ""
        return answer(request, wanted or "index.html")

    return [ui]
