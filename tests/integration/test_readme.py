"""The README's embedding example runs as written."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

README = Path(__file__).resolve().parents[2] / "README.md"


def test_embedding_example_runs(tmp_path: Path):
    (example,) = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
    result = subprocess.run(
        [sys.executable, "-c", example], cwd=tmp_path, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert "data/run1/frames.tif" in result.stdout
    assert (tmp_path / "my-lab" / "user_data" / "ada@example.org" / "data" / "run1" / "frames.tif").is_file()


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait_until_up(url: str, process: subprocess.Popen[str], timeout: float = 30.0) -> None:
    import time

    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert process.poll() is None, process.communicate()[0]
        try:
            httpx.get(url, timeout=1)
            return
        except httpx.HTTPError:
            time.sleep(0.1)
    raise AssertionError(f"{url} did not come up")


def test_shell_walk_through_ends_with_the_job_finished_and_its_outputs_downloaded(tmp_path: Path):
    """The README's curl walk-through, run by bash line by line (`set -e`: each line must succeed), in
    a fresh directory, against `decode-userapi serve` and `decode-userapi worker-sim` started as the
    README says (the shared key from the README's `.env` line), on free ports."""
    import zipfile

    text = README.read_text()
    (walk,) = [b for b in re.findall(r"```sh\n(.*?)```", text, flags=re.S) if b.startswith("API=")]
    (key_line,) = [line for line in text.splitlines() if line.startswith('echo "INTERNAL_API_KEY_SECRET=')]
    subprocess.run(["bash", "-c", key_line], cwd=tmp_path, check=True, timeout=30)
    assert (tmp_path / ".env").read_text().startswith("INTERNAL_API_KEY_SECRET=")

    api_port, sim_port = _free_port(), _free_port()
    api, sim = f"http://127.0.0.1:{api_port}", f"http://127.0.0.1:{sim_port}"
    prefixes = ("DECODE_", "DATABASE_", "AUTH", "COGNITO_", "INTERNAL_API", "WORKERFACING", "USER_DATA", "FILESYSTEM")
    env = {k: v for k, v in os.environ.items() if not k.startswith(prefixes)}
    cli = [sys.executable, "-m", "decode_userapi.entrypoints.cli"]
    processes = [
        subprocess.Popen(
            [*cli, "serve", "--port", str(api_port)],
            cwd=tmp_path, env={**env, "WORKERFACING_API_URL": sim}, stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT, text=True,
        ),
        subprocess.Popen(
            [*cli, "worker-sim", "--port", str(sim_port), "--userapi-url", api, "--step-seconds", "0.2"],
            cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        ),
    ]
    try:
        _wait_until_up(f"{api}/health", processes[0])
        _wait_until_up(sim, processes[1])
        assert "http://127.0.0.1:8000" in walk
        result = subprocess.run(
            ["bash", "-euo", "pipefail", "-c", walk.replace("http://127.0.0.1:8000", api)],
            cwd=tmp_path, capture_output=True, text=True, timeout=90,
        )
        assert result.returncode == 0, result.stdout + result.stderr
        scientist = _run_client_session(text, api, tmp_path / "scientist", env)
    finally:
        for process in processes:
            process.terminate()
        logs = [process.communicate(timeout=30)[0] for process in processes]
    assert "finished" in result.stdout.splitlines(), result.stdout  # the status the wait loop ended on
    assert '"path":"artifact/train1/model/model.pt"' in result.stdout.replace(" ", "")
    assert (tmp_path / "model.pt").read_bytes() == b"simulated model weights\n"
    with zipfile.ZipFile(tmp_path / "train1-log.zip") as archive:
        assert [name.rsplit("/", 1)[-1] for name in archive.namelist()] == ["job.log"], logs
    assert scientist.returncode == 0, scientist.stdout + scientist.stderr
    assert "finished" in scientist.stdout
    assert (tmp_path / "scientist" / "train1" / "model" / "model.pt").read_bytes() == b"simulated model weights\n"


def _run_client_session(text: str, api: str, where: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """The "For scientists" session with `decode-cloud` (client/), by bash with `set -e`, as another
    user than the curl walk's (whose tree already holds run1 and train1), on a folder of frames."""
    import httpx

    (session,) = [b for b in re.findall(r"```sh\n(.*?)```", text, flags=re.S) if b.startswith("export DECODE_CLOUD_URL=")]
    password = "grace-password-1"
    httpx.post(f"{api}/user", data={"username": "grace@example.org", "password": password}).raise_for_status()
    (where / "run1" / "frames").mkdir(parents=True)
    for i in range(3):
        (where / "run1" / "frames" / f"frame{i}.tif").write_bytes(bytes([i]) * 100_000)
    (where / "run1" / "param.yaml").write_text("lr: 0.0001\n")
    session = session.replace("http://127.0.0.1:8000", api).replace("ada@example.org", "grace@example.org")
    client_env = {
        **env,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}",
        "DECODE_CLOUD_PASSWORD": password,
        "DECODE_CLOUD_CONFIG_DIR": str(where / "config"),
    }
    command = ["bash", "-euo", "pipefail", "-c", session]
    return subprocess.run(command, cwd=where, env=client_env, capture_output=True, text=True, timeout=90)
