from datetime import UTC, datetime

from decode_userapi.domain.applications import AppSection, Entrypoint, HandlerSection
from decode_userapi.domain.dispatch import InputSelection, build_worker_request, files_down_keys
from decode_userapi.domain.files import UserPath
from decode_userapi.domain.jobs import ApplicationSpec, HardwareSpec, Job, JobAttributes


def test_folder_inputs_keep_their_layout_and_file_inputs_their_name():
    folder = InputSelection(
        mount="config",
        base=UserPath.parse("config/test/"),
        files=(UserPath.parse("config/test/a.yaml"), UserPath.parse("config/test/sub/b.yaml")),
    )
    single = InputSelection(mount="data", base=UserPath.parse("data/x/frames.tif"), files=())
    assert [k for k, _ in files_down_keys(folder)] == ["config/a.yaml", "config/sub/b.yaml"]
    assert files_down_keys(single) == [("data/frames.tif", UserPath.parse("data/x/frames.tif"))]


def test_payload_shape():
    job = Job(
        id=7,
        user_id="alice",
        user_email=None,
        job_name="run",
        environment="local",
        priority=3,
        application=ApplicationSpec("decode", "v0_10_1", "train"),
        attributes=JobAttributes(env_vars={"X": "1"}),
        hardware=HardwareSpec(gpu_model="A100"),
        date_created=datetime(2026, 1, 1, tzinfo=UTC),
    )
    entrypoint = Entrypoint(
        app=AppSection(cmd=["run.sh"], env=["X"]),
        handler=HandlerSection(image_url="img:1", files_down={"data_ids": "data"}, files_up={"log": "log"}),
    )
    payload = build_worker_request(job, entrypoint, {"data/a": "/root/alice/data/a"}, {"output": "o", "log": "l", "artifact": "a"})
    assert payload == {
        "job": {
            "app": {"cmd": ["run.sh"], "env": {"X": "1"}},
            "handler": {
                "image_url": "img:1",
                "image_name": "decode",
                "image_version": "v0_10_1",
                "entrypoint": "train",
                "files_down": {"data/a": "/root/alice/data/a"},
                "files_up": {"log": "log"},
            },
            "meta": {
                "job_id": 7,
                "date_created": "2026-01-01T00:00:00+00:00",
                "idempotency_key": "decode-userapi-job-7-1767225600000000",
            },
            "hardware": {"cpu_cores": None, "memory": None, "gpu_model": "A100", "gpu_archi": None, "gpu_mem": None},
        },
        "environment": "local",
        "group": None,
        "priority": 3,
        "paths_upload": {"output": "o", "log": "l", "artifact": "a"},
    }
