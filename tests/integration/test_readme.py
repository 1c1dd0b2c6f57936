"""The README's embedding example runs as written."""

from __future__ import annotations

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
