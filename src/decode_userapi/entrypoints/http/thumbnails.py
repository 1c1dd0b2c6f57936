"""`GET /files/{path}/thumbnail`: a small PNG of an image file, for the web page's previews.

Browsers do not render TIFF, the format microscopes write; this turns the first frame of a TIFF
stack (or a PNG, JPEG, ...) into a downscaled 8-bit PNG. 16-bit and float frames are stretched from
their own minimum to their maximum, as image viewers show them.

Bounded, so a huge or hostile file costs little and answers 4xx, never 5xx: at most
`MAX_SOURCE_BYTES` are read (`413` past that, before decoding), the frame's width times height is
checked from the header before any pixel is decoded (`413` past `MAX_PIXELS`), and anything Pillow
cannot decode (not an image, truncated, an unsupported layout) is `422`. Decoding runs in a worker
thread, off the event loop.
"""

from __future__ import annotations

import io

import anyio.to_thread
from PIL import Image, UnidentifiedImageError

from decode_userapi.domain.errors import InvalidRequest, PayloadTooLarge
from decode_userapi.services.files import Download

MAX_SOURCE_BYTES = 64 * 1024 * 1024
MAX_PIXELS = 16 * 1024 * 1024  # one 4096 × 4096 frame: at most 64 MiB decoded (32-bit pixels)
MIN_SIZE, MAX_SIZE, DEFAULT_SIZE = 16, 1024, 256
_PLAIN_MODES = ("1", "L", "LA", "RGB", "RGBA")


def thumbnail_size(value: int | None) -> int:
    if value is None:
        return DEFAULT_SIZE
    if not MIN_SIZE <= value <= MAX_SIZE:
        raise InvalidRequest(f"size: between {MIN_SIZE} and {MAX_SIZE} pixels")
    return value


async def read_bounded(download: Download, limit: int = MAX_SOURCE_BYTES) -> bytes:
    """The file's bytes, refusing (413) a file over `limit` before or while reading it."""
    if download.size is None:
        raise InvalidRequest("a thumbnail is made of a file, not of a folder")
    if download.size > limit:
        raise PayloadTooLarge(f"a thumbnail is made of files up to {limit // (1024 * 1024)} MiB")
    chunks: list[bytes] = []
    total = 0
    try:
        async for chunk in download.chunks:
            total += len(chunk)
            if total > limit:
                raise PayloadTooLarge(f"a thumbnail is made of files up to {limit // (1024 * 1024)} MiB")
            chunks.append(chunk)
    finally:
        close = getattr(download.chunks, "aclose", None)
        if close is not None:
            await close()
    return b"".join(chunks)


def render(data: bytes, size: int, max_pixels: int = MAX_PIXELS) -> bytes:
    """The first frame of the image in `data`, fit into a `size` square, as PNG bytes."""
    try:
        # Reads the header only. Past 2 x Image.MAX_IMAGE_PIXELS Pillow refuses by itself; between
        # that and our bound it only warns, and the size check below refuses.
        image = Image.open(io.BytesIO(data))
        with image:
            width, height = image.size
            if width * height > max_pixels:
                raise PayloadTooLarge(f"the image has {width} × {height} pixels; thumbnails are made of at most {max_pixels}")
            image.seek(0)
            frame = _eight_bit(image)
            frame.thumbnail((size, size))
            out = io.BytesIO()
            frame.save(out, format="PNG")
            return out.getvalue()
    except Image.DecompressionBombError as e:
        raise PayloadTooLarge("the image has too many pixels for a thumbnail") from e
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError, EOFError, TypeError) as e:
        # Pillow's refusals of a file it cannot read (SyntaxError and TypeError included: some
        # plugins raise them on malformed headers).
        raise InvalidRequest(f"not an image that can be previewed ({type(e).__name__})") from e


def _eight_bit(image: Image.Image) -> Image.Image:
    if image.mode in _PLAIN_MODES:
        image.load()
        return image
    if image.mode.startswith(("I", "F")):
        frame = image.convert("F")
        low, high = (float(v) for v in frame.getextrema())  # type: ignore[arg-type]  # one band: two numbers
        scale = 255.0 / (high - low) if high > low else 0.0
        return frame.point(lambda v: (v - low) * scale).convert("L")
    return image.convert("RGBA" if "transparency" in image.info else "RGB")


async def thumbnail(download: Download, size: int) -> bytes:
    data = await read_bounded(download)
    return await anyio.to_thread.run_sync(render, data, size)
