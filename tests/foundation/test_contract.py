"""The contract's own guarantees: buf lint, no breaking change, generated code in sync."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BASELINE = ROOT / "baseline" / "ventros-v1.binpb"
BUF = shutil.which("buf") or str(Path(sys.executable).parent / "buf")
MEMORY_PROTO = "proto/ventros/memory/python_to_go.proto"
AGENTS_PROTO = "proto/ventros/agents/go_to_python.proto"


def buf(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    # buf finds protoc-gen-python_betterproto2 on PATH: put this interpreter's bin folder first.
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    return subprocess.run([BUF, *args], cwd=cwd, capture_output=True, text=True, timeout=120, env=env)


def test_buf_lint_passes():
    result = buf("lint")
    assert result.returncode == 0, result.stdout + result.stderr


def test_contract_has_no_breaking_change_against_the_v1_baseline():
    result = buf("breaking", "--against", str(BASELINE))
    assert result.returncode == 0, result.stdout + result.stderr


def test_generated_code_is_in_sync():
    # Generate inside the repository: the plugin formats its output with ruff, which must find
    # the same pyproject.toml settings as the committed code did.
    with tempfile.TemporaryDirectory(dir=ROOT, prefix=".gen-check-") as out:
        result = buf("generate", "--output", out)
        assert result.returncode == 0, result.stderr
        committed = ROOT / "sdk" / "ventros" / "_generated"
        fresh = Path(out) / "sdk" / "ventros" / "_generated"
        diff = subprocess.run(
            ["diff", "-r", "-x", "__pycache__", str(fresh), str(committed)], capture_output=True, text=True
        )
    assert diff.returncode == 0, "run `buf generate` and commit the result:\n" + diff.stdout[:2000]


def _scratch_copy(tmp_path: Path) -> Path:
    shutil.copytree(ROOT / "proto", tmp_path / "proto")
    shutil.copy(ROOT / "buf.yaml", tmp_path / "buf.yaml")
    return tmp_path


def _edit(path: Path, pattern: str, replacement: str) -> None:
    text = path.read_text()
    edited, count = re.subn(pattern, replacement, text, count=1)
    assert count == 1, f"pattern {pattern!r} not found in {path}"
    path.write_text(edited)


@pytest.mark.parametrize(
    ("proto", "pattern", "replacement", "expected"),
    [
        (MEMORY_PROTO, r"int32 limit = 3;", "int32 limit = 9;", "FIELD_NO_DELETE"),
        (AGENTS_PROTO, r"  rpc ExecuteAgentBatch\(.*?\n", "", "RPC_NO_DELETE"),
        (MEMORY_PROTO, r"string contact_id = 1;", "string contact = 1;", "FIELD_SAME_JSON_NAME"),
        (AGENTS_PROTO, r"GRAPH_ONLY = 3;|ANALYTICS = 4;", "", "ENUM_VALUE_NO_DELETE"),
    ],
    ids=["renumbered-field", "deleted-rpc", "renamed-field", "deleted-enum-value"],
)
def test_buf_breaking_reports_incompatible_edits(tmp_path, proto, pattern, replacement, expected):
    scratch = _scratch_copy(tmp_path)
    _edit(scratch / proto, pattern, replacement)
    result = buf("breaking", "--against", str(BASELINE), "--error-format", "json", cwd=scratch)
    assert result.returncode != 0
    assert expected in result.stdout, result.stdout + result.stderr
