"""Content-Type from a file's name, and Content-Disposition: the same on every machine."""

from __future__ import annotations

import pytest

from decode_userapi.domain.media_types import MediaTypes, attachment


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("frames.tif", "image/tiff"),
        ("FRAMES.TIFF", "image/tiff"),
        ("stack.ome.tif", "image/tiff"),
        ("param.yaml", "application/yaml"),
        ("param.yml", "application/yaml"),
        ("result.json", "application/json"),
        ("notes.txt", "text/plain"),
        ("train.log", "text/plain"),
        ("table.csv", "text/csv"),
        ("model.h5", "application/x-hdf5"),
        ("archive.zip", "application/zip"),
        ("results.tar.gz", "application/gzip"),  # the stored bytes, never a Content-Encoding
        ("model.pt", "application/octet-stream"),
        ("weights.unknownext", "application/octet-stream"),
        ("no_extension", "application/octet-stream"),
        (".hidden", "application/octet-stream"),
    ],
)
def test_media_type_of(name, expected):
    assert MediaTypes().of(name) == expected


def test_attachment():
    assert attachment("frames.tif") == "attachment; filename=frames.tif"
    assert attachment('a "b".txt') == "attachment; filename=\"a _b_.txt\"; filename*=UTF-8''a%20%22b%22.txt"
    assert attachment("déjà.txt") == "attachment; filename=\"d_j_.txt\"; filename*=UTF-8''d%C3%A9j%C3%A0.txt"
