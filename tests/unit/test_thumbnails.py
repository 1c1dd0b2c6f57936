"""Thumbnail rendering on its own: any bytes give a PNG or a 4xx error, within the bounds."""

from __future__ import annotations

import io
from collections.abc import AsyncIterator

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from decode_userapi.domain.errors import InvalidRequest, PayloadTooLarge
from decode_userapi.entrypoints.http.thumbnails import read_bounded, render
from decode_userapi.services.files import Download


def _download(chunks: list[bytes], size: int | None) -> Download:
    async def stream() -> AsyncIterator[bytes]:
        for chunk in chunks:
            yield chunk

    return Download("f.tif", stream(), size, "image/tiff")


async def test_a_file_over_the_limit_is_refused_before_and_while_reading():
    with pytest.raises(PayloadTooLarge):
        await read_bounded(_download([b"x"], 101), limit=100)
    with pytest.raises(PayloadTooLarge):  # a size that lied: counted while reading
        await read_bounded(_download([b"x" * 60, b"x" * 60], 10), limit=100)
    with pytest.raises(InvalidRequest):  # a zipped folder has no size
        await read_bounded(_download([b"PK"], None))
    assert await read_bounded(_download([b"ab", b"c"], 3)) == b"abc"


def test_a_pixel_bound_below_the_image_is_413():
    out = io.BytesIO()
    Image.new("L", (100, 100)).save(out, format="PNG")
    assert render(out.getvalue(), 32).startswith(b"\x89PNG")
    with pytest.raises(PayloadTooLarge):
        render(out.getvalue(), 32, max_pixels=9_999)


@pytest.mark.filterwarnings("ignore::UserWarning")  # Pillow's notes on corrupt EXIF and the like
@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=512), st.sampled_from([b"", b"II*\x00", b"MM\x00*", b"\x89PNG\r\n\x1a\n"]))
def test_any_bytes_give_a_png_or_a_4xx(data: bytes, magic: bytes):
    try:
        assert render(magic + data, 64).startswith(b"\x89PNG")
    except (InvalidRequest, PayloadTooLarge):
        pass
