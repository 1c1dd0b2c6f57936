"""A large direct upload to S3 through the API: the service's peak RSS stays flat and the object
arrives intact. The S3 endpoint is moto's server in this process (stand-in for any S3-compatible
store); the service is `decode-userapi serve` in a child process on SQLite.

    python bench/s3_upload.py [GiB]      # default 2
"""

from __future__ import annotations

import hashlib
import logging
import os
import socket
import subprocess
import sys
import tempfile
import time

import boto3
import httpx
from moto.server import ThreadedMotoServer

CHUNK = 1 << 20


class Generated:
    """A file-like object of `size` pseudo-random-ish bytes, hashed as it is read."""

    def __init__(self, size: int) -> None:
        self.size, self.sent, self.md5 = size, 0, hashlib.md5()
        self.block = os.urandom(CHUNK)

    def read(self, n: int = -1) -> bytes:
        n = CHUNK if n is None or n < 0 else min(n, CHUNK)
        n = min(n, self.size - self.sent)
        data = self.block[:n]
        self.sent += n
        self.md5.update(data)
        return data


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss_kib(pid: int, field: str) -> int:
    with open(f"/proc/{pid}/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith(field))


def main() -> int:
    gib = float(sys.argv[1]) if len(sys.argv) > 1 else 2.0
    size = int(gib * 1024**3)
    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # moto's server logs every request
    moto = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    moto.start()
    host, moto_port = moto.get_host_and_port()
    aws = {"AWS_ENDPOINT_URL": f"http://{host}:{moto_port}", "AWS_ACCESS_KEY_ID": "x", "AWS_SECRET_ACCESS_KEY": "x", "AWS_DEFAULT_REGION": "us-east-1"}
    s3 = boto3.client("s3", endpoint_url=aws["AWS_ENDPOINT_URL"], region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x")
    s3.create_bucket(Bucket="bench")
    port = free_port()
    with tempfile.TemporaryDirectory() as data:
        env = {**os.environ, **aws, "DECODE_DATA_DIR": data, "FILESYSTEM": "s3", "S3_BUCKET": "bench", "MAX_UPLOAD_BYTES": str(size + 1), "LOG_LEVEL": "WARNING"}
        service = subprocess.Popen([sys.executable, "-m", "decode_userapi.entrypoints.cli", "serve", "--port", str(port), "--log-level", "warning"], env=env, stdout=subprocess.DEVNULL)
        try:
            base = f"http://127.0.0.1:{port}"
            for _ in range(300):
                try:
                    httpx.get(base + "/")
                    break
                except httpx.TransportError:
                    time.sleep(0.05)
            form = {"username": "bench@example.org", "password": "bench-pass-1"}
            httpx.post(base + "/user", data=form)
            token = httpx.post(base + "/token", data=form).json()["id_token"]
            before = rss_kib(service.pid, "VmRSS")
            with open(f"/proc/{service.pid}/clear_refs", "w") as f:
                f.write("5")  # reset the peak (VmHWM) to the current RSS
            body = Generated(size)
            started = time.monotonic()
            r = httpx.post(
                base + "/files/data/big/upload",
                headers={"Authorization": f"Bearer {token}"},
                files={"file": ("big.bin", body, "application/octet-stream")},
                timeout=600,
            )
            seconds = time.monotonic() - started
            peak = rss_kib(service.pid, "VmHWM")
            assert r.status_code == 201, r.text
            etag_md5 = hashlib.md5()
            for chunk in s3.get_object(Bucket="bench", Key="user_data/bench@example.org/data/big/big.bin")["Body"].iter_chunks(CHUNK):
                etag_md5.update(chunk)
            intact = etag_md5.hexdigest() == body.md5.hexdigest()
            print(f"| upload to S3 through the API | {gib:g} GiB | {seconds:.1f} s | {size / seconds / 1024**2:.0f} MiB/s "
                  f"| RSS before {before / 1024:.0f} MiB, peak {peak / 1024:.0f} MiB (growth {(peak - before) / 1024:.0f} MiB) "
                  f"| md5 {'matches' if intact else 'DIFFERS'} |")
            return 0 if intact else 1
        finally:
            service.terminate()
            service.wait(timeout=30)
            moto.stop()


if __name__ == "__main__":
    sys.exit(main())
