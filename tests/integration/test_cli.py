"""The operator CLI, as an operator runs it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


def cli(tmp_path: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("DECODE_", "DATABASE_", "AUTH", "COGNITO_"))}
    base.update(DECODE_DATA_DIR=str(tmp_path / "data"), **(env or {}))
    return subprocess.run(
        [sys.executable, "-m", "decode_userapi.entrypoints.cli", *args],
        cwd=tmp_path,
        env=base,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_user_commands(tmp_path):
    assert cli(tmp_path, "user", "create", "ada@example.org", "--password", "analytical-1").returncode == 0
    r = cli(tmp_path, "user", "create", "ada@example.org", "--password", "analytical-1")
    assert r.returncode == 1 and "exists" in r.stderr
    assert cli(tmp_path, "user", "create", "bob", "--password", "short").returncode == 1
    assert cli(tmp_path, "user", "add-group", "ada@example.org", "lab1").returncode == 0
    r = cli(tmp_path, "user", "list")
    assert r.stdout.splitlines() == ["ada@example.org  email=ada@example.org  groups=users,lab1"]
    assert cli(tmp_path, "user", "add-group", "nobody", "x").returncode == 1
    r = cli(tmp_path, "user", "create", ".hidden", "--password", "analytical-1")
    assert r.returncode == 1 and "'.'" in r.stderr
    assert ".hidden" not in cli(tmp_path, "user", "list").stdout


def test_apps_commands(tmp_path):
    r = cli(tmp_path, "apps", "list")
    assert "decode v0_10_1 train" in r.stdout and r.returncode == 0
    assert cli(tmp_path, "apps", "check").returncode == 0
    bad = tmp_path / "bad.yaml"
    bad.write_text("decode:\n  v1:\n    train:\n      app: {cmd: [1, {}]}\n      handler: {image_url: x}\n")
    r = cli(tmp_path, "apps", "check", str(bad))
    assert r.returncode == 1 and "decode.v1.train.app.cmd" in r.stderr


def test_config_show_masks_secrets(tmp_path):
    r = cli(
        tmp_path,
        "config",
        "show",
        env={
            "DATABASE_URL": "postgresql://app:{}@db.example.org/userapi",
            "DATABASE_SECRET": "hunter2",
            "INTERNAL_API_KEY_SECRET": "internal-key-value",
            "DATABASE_POOL_TIMEOUT_SECONDS": "12",
            "AWS_SECRET_ACCESS_KEY": "aws-secret-value",
        },
    )
    assert r.returncode == 0, r.stderr
    rows = {line.split()[0]: line[len(line.split()[0]) :].strip() for line in r.stdout.splitlines() if line[:1] != "#"}
    # the real variable names, the ones read outside Settings too
    assert rows["DATABASE_POOL_TIMEOUT_SECONDS"] == "12"
    assert {"LOG_LEVEL", "LOG_FORMAT", "TOKEN_TTL_SECONDS", "AWS_ENDPOINT_URL_S3"} <= rows.keys()
    assert "aws-secret-value" not in r.stdout
    assert "hunter2" not in r.stdout and "internal-key-value" not in r.stdout
    assert "postgresql://app:***@db.example.org/userapi" in r.stdout
    assert "INTERNAL_API_KEY_SECRET" in r.stdout


def test_db_commands(tmp_path):
    assert "none" in cli(tmp_path, "db", "current").stdout
    assert cli(tmp_path, "db", "upgrade").returncode == 0
    assert "(head)" in cli(tmp_path, "db", "current").stdout


def test_bad_settings_are_named(tmp_path):
    r = cli(tmp_path, "config", "show", env={"FILESYSTEM": "ftp"})
    assert r.returncode == 2 and "FILESYSTEM" in r.stderr


def test_help(tmp_path):
    for command in (["--help"], ["serve", "--help"], ["user", "--help"], ["apps", "--help"], ["db", "--help"]):
        assert cli(tmp_path, *command).returncode == 0


def test_s3_cleanup_aborts_stale_multipart_uploads(tmp_path, local_aws):
    import uuid

    import boto3

    admin = boto3.client("s3", **local_aws.client_kwargs())
    bucket = f"cli-{uuid.uuid4().hex}"
    admin.create_bucket(Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": local_aws.region})
    admin.create_multipart_upload(Bucket=bucket, Key="user_data/alice/data/big.tif")
    env = {"FILESYSTEM": "s3", "S3_BUCKET": bucket, "S3_REGION": local_aws.region, "USER_DATA_ROOT_PATH": "user_data"}
    # moto dates every multipart upload 2010-11-10: older than a day, younger than 200,000 hours.
    r = cli(tmp_path, "s3", "cleanup", "--older-than-hours", "200000", env=env)
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith(f"aborted 0 multipart uploads under s3://{bucket}/user_data/")
    assert len(admin.list_multipart_uploads(Bucket=bucket).get("Uploads", [])) == 1
    r = cli(tmp_path, "s3", "cleanup", env=env)  # default: begun more than 24 hours ago
    assert r.returncode == 0 and r.stdout.startswith("aborted 1 "), r.stderr
    assert admin.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []
    r = cli(tmp_path, "s3", "cleanup")
    assert r.returncode == 2 and "FILESYSTEM=s3" in r.stderr


def test_jobs_commands_show_a_jobs_history_and_cancel_it(tmp_path, monkeypatch, capsys):
    """In process (`main(argv)`), with the environment `cli()` gives a subprocess: two fewer starts."""
    import asyncio
    import json

    from structlog.testing import capture_logs

    from decode_userapi import ApplicationSpec, JobCreate, Settings, UserApi
    from decode_userapi.entrypoints.cli import main

    data = tmp_path / "data"
    for name in [k for k in os.environ if k.startswith(("DECODE_", "DATABASE_", "AUTH", "COGNITO_"))]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("DECODE_DATA_DIR", str(data))
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr("decode_userapi.logging.configure_logging", lambda level=None: None)  # leave structlog alone

    async def submit() -> int:  # as `decode-userapi serve` would, but with no dispatcher to deliver it
        async with UserApi.open(Settings.from_env(), dispatch=False) as api:
            ada = await api.register("ada", "analytical-1")
            job = await api.jobs.create(ada, JobCreate(job_name="run", application=ApplicationSpec("decode", "v0_10_1", "train")))
            assert job.id is not None
            return job.id

    with capture_logs():  # the service's log lines, which would go to stdout here
        job_id = asyncio.run(submit())
        assert main(["jobs", "cancel", str(job_id)]) == 0
        assert f"canceled job {job_id} (run) of ada; dispatch canceled" in capsys.readouterr().out
        assert main(["jobs", "cancel", str(job_id)]) == 1
        assert "ended already (canceled)" in capsys.readouterr().err
        assert main(["jobs", "events", str(job_id), "--json"]) == 0
        events = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
        assert [(e["kind"], e["status"]) for e in events] == [("created", "queued"), ("cancel", "canceled")]
        assert main(["jobs", "events", str(job_id)]) == 0
        lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2 and "cancel" in lines[1] and "not yet delivered" in lines[1]
