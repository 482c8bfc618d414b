"""Fixtures of the CLI tests: a real server on random ports and the CLI as a real subprocess.

``fake_server`` serves the deterministic servicers of ``servicers.py`` through
``ventros_server.app.VentrosApp`` (the same assembly ``ventros serve`` uses) on an event loop in
a background thread; ``cli(...)`` runs the installed ``ventros`` console script against it with a
fixed terminal (COLUMNS=120, NO_COLOR=1), so tables are deterministic.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from .servicers import FakeAgents, FakeMemory

SNAPSHOTS = Path(__file__).parent / "snapshots"
VENTROS = shutil.which("ventros", path=str(Path(sys.executable).parent)) or "ventros"
#: Set VENTROS_UPDATE_SNAPSHOTS=1 to (re)write snapshots instead of comparing.
UPDATE = os.environ.get("VENTROS_UPDATE_SNAPSHOTS") == "1"


def cli_env(**extra: str) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in {"PYTHON_ADK_GRPC", "MEMORY_SERVICE_GRPC", "GO_MEMORY_SERVICE", "VENTROS_TOKEN"}
    }
    env.update(
        {"COLUMNS": "120", "LINES": "50", "NO_COLOR": "1", "TERM": "dumb", "PYTHONIOENCODING": "utf-8"}
    )
    env.update(extra)
    return env


@dataclass
class Result:
    code: int
    stdout: str
    stderr: str

    def json(self) -> Any:
        import json

        return json.loads(self.stdout)


def run_cli(*args: str, env: dict[str, str] | None = None, timeout: float = 60) -> Result:
    proc = subprocess.run(
        [VENTROS, *args],
        capture_output=True,
        text=True,
        env=env or cli_env(),
        timeout=timeout,
        encoding="utf-8",
    )
    return Result(proc.returncode, proc.stdout, proc.stderr)


class ServerThread:
    """A VentrosApp on its own event loop in a daemon thread."""

    def __init__(self, config: Any, services: dict[str, Callable[[Any], Any]]) -> None:
        self.loop = asyncio.new_event_loop()
        self.lines: list[str] = []
        self.app: Any = None
        self._config = config
        self._services = services
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)

    def start(self) -> ServerThread:
        from ventros_server.app import VentrosApp

        self._thread.start()

        async def make_and_start() -> Any:
            app = VentrosApp(self._config, services=self._services, announce=self.lines.append)
            await app.start()
            return app

        self.app = asyncio.run_coroutine_threadsafe(make_and_start(), self.loop).result(30)
        return self

    def call(self, coro: Any, timeout: float = 30) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def stop(self, grace: float = 0) -> None:
        if self.app is not None:
            self.call(self.app.stop(grace))
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)

    @property
    def agent(self) -> str:
        return self.app.addresses["agent"]

    @property
    def memory(self) -> str:
        return self.app.addresses["memory"]


@pytest.fixture(scope="module")
def fake_server() -> Iterator[ServerThread]:
    from ventros_server.app import ServeConfig

    memory = FakeMemory()
    server = ServerThread(
        ServeConfig(agent_port=0, memory_port=0),
        {"agent": lambda app: FakeAgents(), "memory": lambda app: memory},
    ).start()
    server.memory_servicer = memory  # type: ignore[attr-defined]
    yield server
    server.stop()


@pytest.fixture(scope="module")
def cli(fake_server: ServerThread) -> Callable[..., Result]:
    """Run ``ventros`` with the fake server's addresses in the environment (as the spec's env vars)."""
    env = cli_env(PYTHON_ADK_GRPC=fake_server.agent, MEMORY_SERVICE_GRPC=fake_server.memory)

    def invoke(*args: str, **kwargs: Any) -> Result:
        return run_cli(*args, env=kwargs.pop("env", env), **kwargs)

    return invoke


# -- snapshots -------------------------------------------------------------------------------

_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", re.I)
_PORT = re.compile(r"\b((?:127\.0\.0\.1|localhost):)(\d+)")
_TIME = re.compile(r"\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?Z?")
_LATENCY = [
    (re.compile(r"\b\d+(\.\d+)? ms\b"), "<N> ms"),
    (re.compile(r'"(latency_ms|search_latency_ms|avg_latency_ms)": [\d.]+'), r'"\1": <N>'),
]


def _mask(match: re.Match[str]) -> str:
    return re.sub(r"[0-9a-fA-F]", "x", match.group(0))


def normalise(text: str, *, volatile: bool = False) -> str:
    """Ids and ports masked keeping their width (tables stay aligned), trailing spaces dropped.

    ``volatile=True`` (output of the real reference server) also replaces times and latencies
    and collapses table padding, since those change column widths from run to run.
    """
    text = _UUID.sub(_mask, text)
    text = _PORT.sub(lambda m: m.group(1) + "#" * len(m.group(2)), text)
    lines = [line.rstrip() for line in text.splitlines()]
    if volatile:
        text = _TIME.sub("<TIME>", "\n".join(lines))
        for pattern, replacement in _LATENCY:
            text = pattern.sub(replacement, text)
        lines = [re.sub(r"([ ─━])\1+", r"\1", line) for line in text.splitlines()]
    return "\n".join(lines).strip("\n") + "\n"


def assert_snapshot(name: str, text: str, *, volatile: bool = False) -> None:
    path = SNAPSHOTS / name
    actual = normalise(text, volatile=volatile)
    if UPDATE or not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(actual, encoding="utf-8")
        if not UPDATE:
            pytest.fail(f"snapshot {name} was missing and has been written; check it and re-run")
        return
    expected = path.read_text(encoding="utf-8")
    assert actual == expected, f"snapshot {name} differs (VENTROS_UPDATE_SNAPSHOTS=1 rewrites it)"
