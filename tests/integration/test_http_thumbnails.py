"""`GET /files/{path}/thumbnail` on both storages: the first frame of a TIFF stack as a PNG, and 4xx
(never 5xx, never a blow-up) for what is too big, hostile or not an image."""

from __future__ import annotations

import io
import struct

import pytest
from PIL import Image

from tests.integration.harness import STORAGE_STACKS, stacks

pytestmark = stacks(*STORAGE_STACKS)


def tiff_stack(frames: int = 3, size: tuple[int, int] = (200, 100)) -> bytes:
    """16-bit frames; the first has a bright left half, the others are dark."""
    images = []
    for index in range(frames):
        image = Image.new("I;16", size)
        width, height = size
        image.putdata([60000 if x < width // 2 and index == 0 else 10 for _ in range(height) for x in range(width)])
        images.append(image)
    out = io.BytesIO()
    images[0].save(out, format="TIFF", save_all=True, append_images=images[1:])
    return out.getvalue()


def tiff_header_only(width: int, height: int) -> bytes:
    """A TIFF whose header claims `width` x `height` 8-bit pixels, with 16 bytes of pixel data."""
    entries = [  # tag, type (3 short, 4 long), count, value
        (256, 4, 1, width), (257, 4, 1, height), (258, 3, 1, 8), (259, 3, 1, 1), (262, 3, 1, 1),
        (273, 4, 1, 8 + 2 + 12 * 8 + 4), (278, 4, 1, height), (279, 4, 1, 16),
    ]
    ifd = struct.pack("<H", len(entries))
    for tag, kind, count, value in entries:
        ifd += struct.pack("<HHII", tag, kind, count, value) if kind == 4 else struct.pack("<HHIHH", tag, kind, count, value, 0)
    return b"II*\x00" + struct.pack("<I", 8) + ifd + struct.pack("<I", 0) + b"\x7f" * 16


async def put(client, user, folder: str, name: str, content: bytes) -> None:
    r = await client.post(f"/files/{folder}/upload", headers=user.headers, files={"file": (name, content)})
    assert r.status_code == 201, r.text


async def test_first_frame_of_a_tiff_stack_as_a_png(client, alice):
    await put(client, alice, "data/run1", "frames.tif", tiff_stack())
    r = await client.get("/files/data/run1/frames.tif/thumbnail?size=100", headers=alice.headers)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "image/png"
    image = Image.open(io.BytesIO(r.content))
    assert image.format == "PNG" and image.size == (100, 50) and image.mode == "L"
    assert image.getpixel((10, 25)) == 255 and image.getpixel((90, 25)) == 0  # frame 0, stretched

    r = await client.get("/files/data/run1/frames.tif/thumbnail", headers=alice.headers)  # default 256: not enlarged
    assert Image.open(io.BytesIO(r.content)).size == (200, 100)


async def test_a_png_and_a_colour_image(client, alice):
    out = io.BytesIO()
    Image.new("RGBA", (640, 480), (10, 200, 30, 255)).save(out, format="PNG")
    await put(client, alice, "data", "plot.png", out.getvalue())
    r = await client.get("/files/data/plot.png/thumbnail?size=64", headers=alice.headers)
    assert r.status_code == 200
    assert Image.open(io.BytesIO(r.content)).size == (64, 48)


@pytest.mark.parametrize(
    ("name", "content", "status"),
    [
        ("notes.txt", b"not an image at all", 422),
        ("huge.tif", tiff_header_only(100_000, 100_000), 413),  # 10 Gpx claimed in 120 bytes
        ("wide.tif", tiff_header_only(5_000, 4_000), 413),  # 20 Mpx: over the 16 Mpx bound
        ("truncated.tif", tiff_header_only(64, 64), 422),  # 16 bytes of 4096
        ("cut.tif", tiff_stack()[:300], 422),
    ],
)
async def test_what_cannot_be_previewed_is_a_4xx(client, alice, name, content, status):
    await put(client, alice, "data", name, content)
    r = await client.get(f"/files/data/{name}/thumbnail", headers=alice.headers)
    assert r.status_code == status, r.text
    assert r.json()["detail"]
    assert (await client.get("/health")).status_code == 200


async def test_bad_requests(client, alice, bob):
    await put(client, alice, "data", "a.png", tiff_stack(1))
    assert (await client.get("/files/data/missing.tif/thumbnail", headers=alice.headers)).status_code == 404
    assert (await client.get("/files/data/thumbnail", headers=alice.headers)).status_code == 422  # a folder
    for size in ("8", "5000", "big"):
        r = await client.get(f"/files/data/a.png/thumbnail?size={size}", headers=alice.headers)
        assert r.status_code == 422, (size, r.text)
    assert (await client.get("/files/data/a.png/thumbnail")).status_code == 401
    assert (await client.get("/files/data/a.png/thumbnail", headers=bob.headers)).status_code == 404  # not bob's
