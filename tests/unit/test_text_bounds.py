"""Issue 11: text no database stores is refused (commands) or replaced (runtime details), and runtime
details keep their newest 64 Ki characters."""

from __future__ import annotations

import re

import msgspec
import pytest

from decode_userapi.domain.commands import JobCreate, StatusUpdate
from decode_userapi.domain.errors import InvalidRequest
from decode_userapi.domain.jobs import MAX_RUNTIME_DETAILS, ApplicationSpec, append_runtime_details
from decode_userapi.domain.text import UnsafeText, check_text, replace_unsafe_text

APP = {"application": "a", "version": "b", "entrypoint": "c"}


def decode(body: dict) -> JobCreate:
    return msgspec.json.decode(msgspec.json.encode(body), type=JobCreate)


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"job_name": "a\x00"}, "job_name"),
        ({"application": {**APP, "version": "\x00"}}, "application.version"),
        ({"environment": "cl\x00oud"}, "environment"),
        ({"attributes": {"env_vars": {"K\x00": "v"}}}, "attributes.env_vars (a name)"),
        ({"attributes": {"env_vars": {"K": "v\x00"}}}, "attributes.env_vars['K']"),
        ({"hardware": {"gpu_model": "\x00"}}, "hardware.gpu_model"),
        ({"hardware": {"gpu_archi": "\x00"}}, "hardware.gpu_archi"),
    ],
)
def test_nul_anywhere_in_a_job_is_refused_naming_the_field(body: dict, field: str) -> None:
    with pytest.raises(UnsafeText, match=rf"^{re.escape(field)}: NUL"):
        decode({"job_name": "j", "application": APP, **body})


def test_input_ids_are_paths_refused_by_the_path_rule_not_here() -> None:
    # The job service parses them as paths (NUL: 400, as an input that does not exist).
    files_down = {"config_id": "c\x00", "data_ids": ["\x00"], "artifact_ids": ["a\x00"]}
    assert decode({"job_name": "j", "application": APP, "attributes": {"files_down": files_down}})


def test_built_directly_a_command_refuses_it_too() -> None:
    with pytest.raises(UnsafeText, match="job_name"):
        JobCreate(job_name="a\udc80", application=ApplicationSpec(**APP))


@pytest.mark.parametrize(
    "body",
    [
        {"application": {**APP, "entrypoint": "e" * 257}},
        {"attributes": {"env_vars": {f"K{i}": "v" for i in range(65)}}},
        {"attributes": {"env_vars": {"K" * 257: "v"}}},
        {"attributes": {"env_vars": {"K": "v" * 4097}}},
        {"attributes": {"files_down": {"data_ids": ["d"] * 1001}}},
        {"hardware": {"gpu_model": "g" * 257}},
    ],
)
def test_job_fields_are_bounded(body: dict) -> None:
    with pytest.raises(InvalidRequest, match="at most"):
        decode({"job_name": "j", "application": APP, **body})


def test_odd_but_storable_text_is_accepted() -> None:
    for text in ("\u202eabc\u200f", "e\u0301", "\U0001f600", "a\u2028b", "\ufeff\uffff", ""):
        assert check_text(text, "f") == text
    assert decode({"job_name": "j", "application": APP, "hardware": {"gpu_model": "\U0001f600"}})


def test_status_updates_are_never_refused_for_their_text() -> None:
    update = msgspec.json.decode(b'{"job_id": 1, "status": "running", "runtime_details": "a\\u0000b"}', type=StatusUpdate)
    assert update.runtime_details == "a\x00b"
    assert append_runtime_details(None, update.runtime_details) == "a\ufffdb"
    assert replace_unsafe_text("x\udc80\x00y") == "x\ufffd\ufffdy"


def test_runtime_details_keep_the_newest_text_with_a_marker() -> None:
    text = append_runtime_details(None, "\n".join(f"line {i:06d}" for i in range(10_000)))
    assert len(text) <= MAX_RUNTIME_DETAILS
    first, second, *_ = text.split("\n")
    assert text.endswith("line 009999")
    assert first.startswith("[… ") and first.endswith(" earlier characters dropped …]")
    assert second.startswith("line ")  # the kept text starts at a line of its own
    dropped = int(first[3:].split(" ")[0].replace(",", ""))
    original = "\n".join(f"line {i:06d}" for i in range(10_000))
    assert original[dropped:] == text[len(first) + 1 :]


def test_runtime_details_count_every_truncation() -> None:
    text = None
    for _ in range(10):
        text = append_runtime_details(text, "y" * 30_000)
    first = text.split("\n", 1)[0]
    dropped = int(first[3:].split(" ")[0].replace(",", ""))
    kept = len(text) - len(first) - 1
    assert dropped + kept == 10 * 30_000 + 9  # the 9 line breaks between the updates count too
    assert len(text) <= MAX_RUNTIME_DETAILS


def test_short_details_are_appended_as_before() -> None:
    assert append_runtime_details(append_runtime_details(None, "a"), "b") == "a\nb"
