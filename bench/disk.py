"""The machine's file ceilings, measured on the same bytes as the file scenarios (run pinned to the
service's core by bench.py). Prints one JSON object: {"seconds": s, "bytes": n}.

    python disk.py copy SRC DST       a plain file copy (shutil.copyfile), no sync: what an upload
                                      that lands in the page cache could do at best
    python disk.py zip FOLDER         a stored (uncompressed) zip of FOLDER's files written to a sink
                                      that drops the bytes: CRC-32 plus copying, what a streamed
                                      zip download could do at best
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import time
import zipfile

CHUNK = 1 << 20


class Sink:
    """A write-only stream that counts and drops bytes (zipfile streams to unseekable files)."""

    def __init__(self) -> None:
        self.count = 0

    def write(self, data: bytes) -> int:
        self.count += len(data)
        return len(data)

    def flush(self) -> None:
        pass


def copy(source: str, target: str) -> dict[str, float]:
    started = time.perf_counter()
    shutil.copyfile(source, target)
    return {"seconds": time.perf_counter() - started, "bytes": os.path.getsize(target)}


def stored_zip(folder: str) -> dict[str, float]:
    sink = Sink()
    started = time.perf_counter()
    with zipfile.ZipFile(sink, "w", compression=zipfile.ZIP_STORED, allowZip64=True) as archive:  # type: ignore[arg-type]
        for name in sorted(os.listdir(folder)):
            path = os.path.join(folder, name)
            with open(path, "rb") as source, archive.open(name, "w", force_zip64=True) as member:
                shutil.copyfileobj(source, member, CHUNK)
    return {"seconds": time.perf_counter() - started, "bytes": sink.count}


if __name__ == "__main__":
    command, *args = sys.argv[1:]
    result = copy(*args) if command == "copy" else stored_zip(*args)
    print(json.dumps(result))
