"""ventros_conformance: checks that a gRPC server honours the Ventros contract.

    ventros conformance --target host:port --service memory [--junit FILE] [--thorough]
    pytest -p ventros_conformance.plugin --pyargs ventros_conformance.checks --target host:port --service memory

``run()`` is the entry point the CLI calls. The checks are plain pytest files shipped inside this
package (``ventros_conformance/checks``), driven by the plugin ``ventros_conformance.plugin``; the
fixture set the data-dependent checks read is ``fixtures.jsonl`` beside this file. See
docs/conformance.md.
"""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from pathlib import Path

from .fixtures import fixtures_path

__all__ = ["CHECKS_DIR", "fixtures_path", "pytest_args", "run"]

CHECKS_DIR = Path(__file__).resolve().parent / "checks"

_INI = """\
[pytest]
junit_family = xunit1
junit_suite_name = ventros-conformance
junit_logging = no
"""


def pytest_args(
    target: str,
    service: str,
    *,
    ini: str,
    junit: str | None = None,
    thorough: bool = False,
    fixtures: bool | str | Path | None = None,
    extra_args: Sequence[str] = (),
) -> list[str]:
    """The pytest command line ``run()`` uses (exposed for tools and tests)."""
    if isinstance(fixtures, (str, Path)):
        mode, fixtures_file = "auto", str(fixtures)
    else:
        mode, fixtures_file = {None: "auto", True: "require", False: "skip"}[fixtures], None
    args = [
        str(CHECKS_DIR),
        "-c", ini,
        "--rootdir", str(CHECKS_DIR.parent),
        "-p", "ventros_conformance.plugin",
        "-p", "no:cacheprovider",
        "--target", target,
        "--service", service,
        "--fixture-set", mode,
        "-rfE",
        "--tb=short",
    ]  # fmt: skip
    if fixtures_file:
        args += ["--fixtures-file", fixtures_file]
    if thorough:
        args.append("--thorough")
    if junit:
        args += ["--junitxml", str(junit)]
    args += list(extra_args)
    return args


def run(
    target: str,
    service: str,
    *,
    junit: str | None = None,
    thorough: bool = False,
    fixtures: bool | str | Path | None = None,
    extra_args: Sequence[str] = (),
) -> int:
    """Run the conformance checks against ``target`` ("host:port") and return pytest's exit code.

    service: "memory", "agent" or "all" (what the target serves).
    junit: write JUnit XML (xunit1, with each check's source as a property) to this file.
    thorough: the long Hypothesis profile (500 random examples per RPC) instead of the CI one.
    fixtures: None runs the fixture checks when the target has loaded fixtures.jsonl (and
        skips them otherwise), True requires the fixtures (their absence fails), False skips them;
        a path names the fixture file the target loaded (checked like None).
    extra_args: more pytest arguments, e.g. ["-k", "limit", "-x"].
    """
    import pytest

    if service not in ("memory", "agent", "all"):
        raise ValueError(f"service must be 'memory', 'agent' or 'all', not {service!r}")
    with tempfile.TemporaryDirectory(prefix="ventros-conformance-") as tmp:
        ini = Path(tmp) / "pytest.ini"
        ini.write_text(_INI, encoding="utf-8")
        args = pytest_args(
            target,
            service,
            ini=str(ini),
            junit=junit,
            thorough=thorough,
            fixtures=fixtures,
            extra_args=extra_args,
        )
        return int(pytest.main(args))
