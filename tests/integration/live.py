"""The user API and the worker simulator as they run for a user: uvicorn on loopback ports, lifespan on.

Each `LiveApp` binds its socket when made, so two apps can be told each other's URL before either
starts (the user API needs the simulator's, the simulator the user API's).
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import uvicorn

from decode_userapi.config import Settings
from decode_userapi.container import build_services
from decode_userapi.entrypoints.http.app import create_app
from decode_userapi.entrypoints.worker_sim import SimulatorConfig, create_simulator_app

KEY = "live-internal-key"


class LiveApp:
    def __init__(self, name: str) -> None:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 0))
        self.name, self.sock = name, sock
        self.url = f"http://127.0.0.1:{sock.getsockname()[1]}"
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None

    def start(self, app: Any) -> None:
        config = uvicorn.Config(app, lifespan="on", log_level="warning", timeout_graceful_shutdown=2)
        self._server = server = uvicorn.Server(config)
        self._thread = threading.Thread(target=server.run, kwargs={"sockets": [self.sock]}, daemon=True, name=self.name)
        self._thread.start()
        deadline = time.monotonic() + 30
        while not server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"{self.name} did not start")
            time.sleep(0.01)

    def stop(self) -> None:
        if self._server is not None and self._thread is not None:
            self._server.should_exit = True
            self._thread.join(timeout=10)
        self.sock.close()


@dataclass
class LiveStack:
    api: str  # the user API's base URL
    simulator: str
    settings: Settings
    data_root: Path  # USER_DATA_ROOT_PATH, resolved


@contextmanager
def live_stack(tmp_path: Path, step_seconds: float = 0.05) -> Iterator[LiveStack]:
    """The embedded default (SQLite, local files, built-in identity) and the simulator beside it."""
    api, simulator = LiveApp("userapi"), LiveApp("worker-sim")
    data_root = (tmp_path / "data" / "user_data").resolve()
    settings = Settings(
        data_dir=str(tmp_path / "data"),
        user_data_root_path=str(data_root),
        database_url=f"sqlite:///{tmp_path / 'data' / 'userapi.db'}",
        workerfacing_api_url=simulator.url,
        internal_api_key=KEY,
        dispatch_max_delay_seconds=0.2,
    )
    config = SimulatorConfig(api_key=KEY, userapi_url=api.url, data_root=str(data_root), step_seconds=step_seconds)
    try:
        simulator.start(create_simulator_app(config))
        api.start(create_app(build_services(settings)))
        yield LiveStack(api.url, simulator.url, settings, data_root)
    finally:
        api.stop()
        simulator.stop()
