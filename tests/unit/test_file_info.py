"""What a listing shows for a stored entry: its path string, its type and a readable size."""

import humanize
import pytest
from hypothesis import given
from hypothesis import strategies as st

from decode_userapi.domain.files import Entry, FileInfo, UserPath, natural_size

# Unit boundaries and the roundings around them (999,950 bytes is "1.0 MB", not "1000.0 kB").
EDGES = [0, 1, 2, 999, 1000, 1049, 1050, 1051, 1250, 1350, 999_949, 999_950, 999_999, 10**6]
EDGES += [10**k + d for k in range(7, 16) for d in (-1, 0, 1)]
EDGES += [9995 * 10**k + d for k in range(12) for d in (-1, 0, 1)]


@pytest.mark.parametrize("size", EDGES)
def test_sizes_read_as_humanize_writes_them(size: int) -> None:
    assert natural_size(size) == humanize.naturalsize(size)


@given(st.integers(min_value=0, max_value=2**53))  # humanize works on floats: exact up to here
def test_any_size_reads_as_humanize_writes_it(size: int) -> None:
    assert natural_size(size) == humanize.naturalsize(size)


def test_sizes_beyond_the_largest_unit_stay_in_it() -> None:
    assert natural_size(10**30) == "1.0 QB"
    assert natural_size(10**34) == "10000.0 QB"


def test_entry_info() -> None:
    assert Entry(UserPath(("data", "a.tif")), 1200).info() == FileInfo("data/a.tif", "file", "1.2 kB")
    assert Entry(UserPath(("data", "run")), None).info() == FileInfo("data/run/", "directory", "")
    assert Entry(UserPath(("data", "run"), True), None).info() == FileInfo("data/run/", "directory", "")
    assert Entry(UserPath.root(), None).info() == FileInfo("", "directory", "")


def test_the_root_is_always_a_folder() -> None:
    assert UserPath() == UserPath((), False) == UserPath.root()
    assert UserPath().is_dir and str(UserPath()) == ""
    assert hash(UserPath((), False)) == hash(UserPath.root())


def test_paths_are_immutable_values() -> None:
    path = UserPath(("data", "a"))
    with pytest.raises(AttributeError):
        path.parts = ("elsewhere",)  # type: ignore[misc]
    assert path == UserPath.parse("data/a") and path != UserPath.parse("data/a/")
    assert {path: 1}[UserPath.parse("data/a")] == 1
