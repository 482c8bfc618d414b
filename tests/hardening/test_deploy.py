"""deploy/ and docs/operations.md stay true to the code: flags exist, the example keys file
parses, every environment variable the deployment uses is documented. (No Docker engine is
needed or used: the image itself is not built here.)"""

from __future__ import annotations

import functools
import re
from pathlib import Path

from ventros_server.auth import ApiKeys

from .conftest import run_cli, serve_env

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
OPERATIONS = ROOT / "docs" / "operations.md"


@functools.cache
def _help(*args: str) -> str:
    result = run_cli(*args, "--help", env=serve_env(COLUMNS="200"))
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_every_flag_used_in_deploy_exists() -> None:
    known = set(re.findall(r"--[a-z][a-z-]+", _help("serve") + _help("health")))
    used = set()
    for name in ("compose.yaml", "Dockerfile"):
        used |= set(re.findall(r"(?<![\w-])--[a-z][a-z-]+", (DEPLOY / name).read_text()))
    used -= {"--build", "--no-cache-dir", "--no-install-recommends", "--wheel-dir", "--no-index", "--find-links",
             "--system", "--uid", "--home-dir", "--shell", "--interval", "--timeout", "--start-period",
             "--retries", "--rm", "--from"}  # fmt: skip  # docker, apt, pip and useradd flags
    assert used and used <= known, used - known


def test_every_serve_flag_and_env_var_is_documented() -> None:
    text = OPERATIONS.read_text()
    flags = set(re.findall(r"--[a-z][a-z-]+", _help("serve"))) - {"--help"}
    assert {f for f in flags if f"`{f}" not in text} == set()
    env_vars = set(
        re.findall(
            r"\b(VENTROS_[A-Z_]+|GO_MEMORY_SERVICE|OPENAI_[A-Z_]+)", (DEPLOY / "compose.yaml").read_text()
        )
    )
    env_vars |= set(re.findall(r"env var: ([A-Z_]+)", _help("serve")))
    assert {v for v in env_vars if v not in text} == set()


def test_example_keys_file_parses(tmp_path: Path) -> None:
    copy = tmp_path / "keys.toml"
    copy.write_text((DEPLOY / "keys.example.toml").read_text())
    copy.chmod(0o600)
    keys = ApiKeys.from_file(copy)
    assert {k.name: sorted(k.scopes) for k in keys} == {
        "go-crm": ["execute", "read", "write"],
        "python-adk": ["read", "write"],
        "analytics": ["read"],
    }
