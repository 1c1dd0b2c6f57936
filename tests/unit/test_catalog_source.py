"""YamlFileCatalogSource over temporary files: load, hot reload, keep the last good version."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from decode_userapi.adapters.catalog.yaml_file import YamlFileCatalogSource
from decode_userapi.domain.applications import CatalogError
from decode_userapi.domain.jobs import ApplicationSpec

SAMPLE = """\
decode:
  v0_10_1:
    train:
      app: {cmd: ["/docker/entrypoint.sh", "--train"], env: []}
      handler:
        image_url: "public.ecr.aws/g0e9g3b1/decode:v0_10_1"
        files_down: {config_id: config, data_ids: data, artifact_ids: artifact}
        files_up: {log: log, artifact: model}
      aws_resources: {hardware: {MEMORY: 8000, VCPU: 4, GPU: 1}, timeout: 18000}
"""
TRAIN = ApplicationSpec("decode", "v0_10_1", "train")
FIT = ApplicationSpec("decode", "v0_10_1", "fit")
WITH_FIT = SAMPLE + SAMPLE.split("    train:\n", 1)[1].join(["    fit:\n", ""])
BAD_KEY = SAMPLE.replace("config_id: config", "bogus_id: config")


def write(path: Path, text: str) -> None:
    """Write and move the mtime forward, so the change shows even on coarse-timestamp filesystems."""
    before = path.stat().st_mtime_ns if path.exists() else 0
    path.write_text(text)
    later = max(path.stat().st_mtime_ns, before + 1_000_000_000)
    os.utime(path, ns=(later, later))


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "application_config.yaml"
    write(path, SAMPLE)
    return path


async def started(path: Path, check_interval: float = 0) -> YamlFileCatalogSource:
    source = YamlFileCatalogSource(path, check_interval=check_interval)
    await source.start()
    return source


async def test_loads(config):
    catalog = await (await started(config)).current()
    train = catalog.resolve(TRAIN)
    assert train.handler.files_up == {"log": "log", "artifact": "model"}
    assert train.aws_resources.hardware == {"MEMORY": 8000, "VCPU": 4, "GPU": 1}
    assert catalog.document["decode"]["v0_10_1"]["train"]["aws_resources"]["timeout"] == 18000


async def test_reloads_after_a_change(config):
    source = await started(config)
    assert set((await source.current()).applications["decode"]["v0_10_1"]) == {"train"}
    write(config, WITH_FIT)
    assert set((await source.current()).applications["decode"]["v0_10_1"]) == {"train", "fit"}
    (await source.current()).resolve(FIT)


async def test_checks_at_most_once_per_interval(config):
    source = await started(config, check_interval=60)
    write(config, WITH_FIT)
    assert set((await source.current()).applications["decode"]["v0_10_1"]) == {"train"}


@pytest.mark.parametrize("broken", [BAD_KEY, "decode: [unclosed", "decode:\n  v1: 3\n"])
async def test_a_bad_edit_keeps_the_last_good_and_is_logged_once(config, broken):
    source = await started(config)
    good = await source.current()
    with capture_logs() as logs:
        write(config, broken)
        for _ in range(3):
            assert await source.current() is good
    failures = [e for e in logs if e["event"] == "catalog.reload_failed"]
    assert len(failures) == 1 and str(config) in failures[0]["error"]

    write(config, WITH_FIT)  # fixed again
    (await source.current()).resolve(FIT)


async def test_a_deleted_file_keeps_the_last_good(config):
    source = await started(config)
    good = await source.current()
    config.unlink()
    with capture_logs() as logs:
        assert await source.current() is good
        assert await source.current() is good
    assert [e["event"] for e in logs] == ["catalog.reload_failed"]


async def test_a_bad_file_at_start_names_the_file_and_the_key(config):
    write(config, BAD_KEY)
    with pytest.raises(CatalogError) as caught:
        await started(config)
    assert str(config) in str(caught.value) and "bogus_id" in str(caught.value)


@pytest.mark.parametrize("text", ["decode: [unclosed", "- a list\n- not a mapping\n"])
async def test_unreadable_documents_at_start(config, text):
    write(config, text)
    with pytest.raises(CatalogError, match=str(config)):
        await started(config)


async def test_a_missing_file_at_start(tmp_path):
    with pytest.raises(CatalogError, match=r"nope\.yaml"):
        await started(tmp_path / "nope.yaml")
