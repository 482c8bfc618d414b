"""Shared fixtures of the hardening tests: throwaway TLS material and `ventros serve` subprocesses.

``pki`` makes a CA, a server certificate for 127.0.0.1/localhost and two client certificates
(one signed by the CA, one self-signed) with the ``openssl`` command line. ``ServeProcess``
runs the real ``ventros serve`` console script, reads the ports from its stdout and keeps
everything it printed (stdout and stderr) for the log assertions.
"""

from __future__ import annotations

import os
import queue
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

VENTROS = shutil.which("ventros", path=str(Path(sys.executable).parent)) or "ventros"
_LISTENING = re.compile(r"^(agent|memory) service listening on (\S+)$")
_SCRUBBED = {"PYTHON_ADK_GRPC", "MEMORY_SERVICE_GRPC", "GO_MEMORY_SERVICE", "VENTROS_TOKEN"}


def serve_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in _SCRUBBED and not k.startswith("VENTROS_API_KEYS")}
    env.update({"NO_COLOR": "1", "TERM": "dumb", "COLUMNS": "120", "PYTHONIOENCODING": "utf-8"})
    env.update(extra)
    return env


def run_cli(*args: str, env: dict[str, str], timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [VENTROS, *args], capture_output=True, text=True, env=env, timeout=timeout, encoding="utf-8"
    )


class ServeProcess:
    """``ventros serve ARGS`` as a subprocess; ``output`` is everything it printed so far."""

    def __init__(
        self, *args: str, env: dict[str, str] | None = None, expect: tuple[str, ...] = ("agent", "memory")
    ):
        self.args = args
        self.proc = subprocess.Popen(
            [VENTROS, "serve", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            encoding="utf-8",
            env=env or serve_env(),
        )
        self.lines: list[str] = []
        self.addresses: dict[str, str] = {}
        self._queue: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._pump, daemon=True).start()
        self._wait_listening(expect)

    def _pump(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))
            self._queue.put(line)
        self._queue.put(None)

    def _wait_listening(self, expect: tuple[str, ...], timeout: float = 90) -> None:
        deadline = time.monotonic() + timeout
        while set(self.addresses) != set(expect):
            try:
                line = self._queue.get(timeout=max(deadline - time.monotonic(), 0.01))
            except queue.Empty:
                line = None
            if line is None:
                self.proc.kill()
                self.proc.wait(10)
                pytest.fail(
                    f"ventros serve {' '.join(self.args)} did not start:\n" + "\n".join(self.lines[-40:])
                )
            match = _LISTENING.search(line.strip())
            if match:
                self.addresses[match.group(1)] = match.group(2)

    @property
    def output(self) -> str:
        return "\n".join(self.lines)

    def wait_for_line(self, fragment: str, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while not any(fragment in line for line in self.lines):
            if time.monotonic() > deadline or (self.proc.poll() is not None and self._queue.empty()):
                raise AssertionError(f"no line with {fragment!r} in:\n{self.output}")
            time.sleep(0.02)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        code = self.proc.wait(timeout)
        deadline = time.monotonic() + 10
        while self._queue.get(timeout=max(deadline - time.monotonic(), 0.01)) is not None:
            pass  # drain: every line it printed is in self.lines
        return code

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(30)


@dataclass(frozen=True)
class Pki:
    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path
    rogue_cert: Path
    rogue_key: Path


def _openssl(*args: str) -> None:
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("openssl is not installed")
    subprocess.run([openssl, *args], check=True, capture_output=True)


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    d = tmp_path_factory.mktemp("pki")
    key = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    _openssl("req", "-x509", *key, "-keyout", str(d / "ca.key"), "-out", str(d / "ca.pem"),
             "-days", "1", "-subj", "/CN=ventros test CA",
             "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign")  # fmt: skip
    (d / "server.ext").write_text("subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n")
    (d / "client.ext").write_text("extendedKeyUsage=clientAuth\n")
    for name in ("server", "client"):
        _openssl("req", *key, "-keyout", str(d / f"{name}.key"), "-out", str(d / f"{name}.csr"),
                 "-subj", f"/CN=ventros test {name}")  # fmt: skip
        _openssl("x509", "-req", "-in", str(d / f"{name}.csr"), "-CA", str(d / "ca.pem"),
                 "-CAkey", str(d / "ca.key"), "-CAcreateserial", "-days", "1",
                 "-extfile", str(d / f"{name}.ext"), "-out", str(d / f"{name}.pem"))  # fmt: skip
    _openssl("req", "-x509", *key, "-keyout", str(d / "rogue.key"), "-out", str(d / "rogue.pem"),
             "-days", "1", "-subj", "/CN=ventros rogue client")  # fmt: skip
    return Pki(
        d / "ca.pem", d / "server.pem", d / "server.key", d / "client.pem", d / "client.key",
        d / "rogue.pem", d / "rogue.key",
    )  # fmt: skip
