import pytest
from hypothesis import given
from hypothesis import strategies as st

from decode_userapi.domain.errors import InvalidPath
from decode_userapi.domain.files import UserPath, check_username

HOSTILE = [
    "..",
    "../bob",
    "data/../../bob",
    "%2e%2e/bob",
    "%2E%2E%2Fbob",
    "%252e%252e/bob",
    "data%2F..%2F..%2Fbob",
    "data\\..\\bob",
    "data/x\x00y",
    "data/%00",
    "data/．．/x",
    "data/x./y",
    "data/x /y",
    "data/ x",
    "data/\u202eevil",
    "a/" * 70,
    "data/" + "x" * 300,
    "data/%ff",
]


@pytest.mark.parametrize("text", HOSTILE)
def test_hostile_paths_are_refused(text):
    with pytest.raises(InvalidPath):
        UserPath.parse(text, percent_encoded=True)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", ""),
        ("/", ""),
        ("data", "data"),
        ("data/", "data/"),
        ("/data//sub///f.tif", "data/sub/f.tif"),
        ("data/a%20b.tif", "data/a b.tif"),
        ("data/x%2Fy", "data/x/y"),
        ("config/déjà vu.yaml", "config/déjà vu.yaml"),
    ],
)
def test_normalisation(text, expected):
    assert str(UserPath.parse(text, percent_encoded=True)) == expected


def test_directory_and_file_forms():
    path = UserPath.parse("data/sub/")
    assert path.is_dir and path.parts == ("data", "sub")
    assert path.as_file().is_dir is False
    assert UserPath.root().is_root and UserPath.root().is_dir
    assert UserPath.parse("data").is_predefined_folder
    assert path.child("f.tif") == UserPath(("data", "sub", "f.tif"))


@pytest.mark.parametrize("name", ["../x", "a/b", "", ".", "a\\b"])
def test_child_refuses_separators(name):
    with pytest.raises(InvalidPath):
        UserPath.parse("data/").child(name)


@pytest.mark.parametrize("name", ["alice", "a.b+c-d_e@example.org", "x" * 128])
def test_usernames(name):
    assert check_username(name) == name


@pytest.mark.parametrize("name", ["", ".", "..", "a/b", "a b", "x" * 129, "é"])
def test_bad_usernames(name):
    with pytest.raises(InvalidPath):
        check_username(name)


@given(st.text(max_size=200))
def test_no_accepted_input_leaves_the_tree(text):
    try:
        path = UserPath.parse(text, percent_encoded=True)
    except InvalidPath:
        return
    assert all(p not in ("", ".", "..") and "/" not in p and "\\" not in p and "\x00" not in p for p in path.parts)
    # Parsing is idempotent: the string form parses to the same path.
    assert UserPath.parse(str(path)) == path


@given(st.lists(st.sampled_from(["..", ".", "%2e%2e", "%2E.", "%2f", "%5c", "a", "b%00", "/", "\\"]), max_size=8))
def test_traversal_building_blocks(parts):
    text = "/".join(parts)
    try:
        path = UserPath.parse(text, percent_encoded=True)
    except InvalidPath:
        return
    assert set(path.parts) <= {"a"}
