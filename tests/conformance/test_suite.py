"""The conformance suite itself: it passes against a correct server and reports each deliberate
defect as a failure of the check that owns it.

Servers run in this process (build_server on 127.0.0.1, in a thread); the suite runs in a
subprocess through ``ventros_conformance.run`` (what ``ventros conformance`` calls), and its
JUnit XML says which checks failed and why.
"""

from __future__ import annotations

import contextlib
import json
import re
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from ventros_conformance import fixtures as fx

from . import servers as s


@dataclass
class SuiteRun:
    code: int
    output: str
    results: dict[str, tuple[str, str]]  # check name -> (outcome, message)

    def outcome(self, name: str) -> str:
        return self.results[name][0]

    def failed(self) -> set[str]:
        return {n for n, (o, _) in self.results.items() if o in ("failed", "error")}

    def message(self, name: str) -> str:
        return self.results[name][1]


def run_suite(
    address: str, service: str, tmp_path: Path, *, fixtures: Any = None, args: tuple[str, ...] = ()
) -> SuiteRun:
    junit = tmp_path / f"junit-{len(list(tmp_path.iterdir()))}.xml"
    code = (
        "import sys, ventros_conformance as v; "
        f"sys.exit(v.run({address!r}, {service!r}, junit={str(junit)!r}, fixtures={fixtures!r}, "
        f"extra_args={list(args)!r}))"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=300, cwd=tmp_path, check=False
    )
    results: dict[str, tuple[str, str]] = {}
    if junit.exists():
        for case in ET.parse(junit).iter("testcase"):
            outcome, message = "passed", ""
            for tag in ("failure", "error", "skipped"):
                node = case.find(tag)
                if node is not None:
                    outcome = {"failure": "failed", "error": "error", "skipped": "skipped"}[tag]
                    message = (node.get("message") or "") + "\n" + (node.text or "")
            results[case.get("name", "")] = (outcome, message)
    return SuiteRun(proc.returncode, proc.stdout + proc.stderr, results)


# -- the fixture file ---------------------------------------------------------------------------------


def test_fixture_file_is_well_formed():
    data = fx.load()
    ids = [r["id"] for r in data.records if "id" in r]
    assert len(ids) == len(set(ids)), "duplicate ids in fixtures.jsonl"
    assert all(i.startswith("c0f0") for i in ids)
    assert {r["kind"] for r in data.records} == set(fx.KINDS)
    for line in fx.fixtures_path().read_text(encoding="utf-8").splitlines():
        fx.validate_record(json.loads(line))
    assert len(data.messages(fx.CONTACT_A)) == 6 and len(data.purchases(fx.CONTACT_A)) == 3
    assert len(fx.HUB_LEAVES) == 25 and len(fx.CHAIN) == 7


def test_fixture_validation_rejects_bad_lines():
    with pytest.raises(ValueError, match="unknown kind"):
        fx.validate_record({"kind": "invoice"})
    with pytest.raises(ValueError, match="lacks"):
        fx.validate_record({"kind": "edge", "from_id": "a"})


# -- a correct server passes -------------------------------------------------------------------------


@pytest.mark.slow
def test_suite_passes_against_a_correct_server(tmp_path):
    with s.serving([s.MiniMemory(fixtures=True), s.MiniAgents()]) as address:
        run = run_suite(address, "all", tmp_path, fixtures=True)
    assert run.code == 0, run.output[-6000:]
    assert not run.failed()
    assert len(run.results) > 150
    assert all(outcome == "passed" for outcome, _ in run.results.values()), run.output[-3000:]
    assert "Ventros conformance report" in run.output


@pytest.mark.slow
def test_fixture_checks_skip_without_fixtures(tmp_path):
    with s.serving([s.MiniMemory(fixtures=False)]) as address:
        run = run_suite(address, "memory", tmp_path, args=("-k", "fixture"))
    assert run.code == 0, run.output[-4000:]
    skipped = {n for n, (o, _) in run.results.items() if o == "skipped"}
    assert "test_fixture_profile" in skipped and "test_fixture_stats" in skipped
    assert "needs fixtures" in run.message("test_fixture_profile")


@pytest.mark.slow
def test_required_fixtures_fail_when_absent(tmp_path):
    with s.serving([s.MiniMemory(fixtures=False)]) as address:
        run = run_suite(address, "memory", tmp_path, fixtures=True, args=("-k", "test_fixture_profile"))
    assert run.code == 1
    assert run.outcome("test_fixture_profile") in ("failed", "error")


# -- each defect fails the check that owns it ----------------------------------------------------------

BROKEN_MEMORY = [
    pytest.param(
        s.WrongStatusMemory,
        {"test_invalid_field_is_invalid_argument[context-contact_id-malformed]"},
        "expected INVALID_ARGUMENT",
        id="wrong-status",
    ),
    pytest.param(
        s.NoDetailsMemory,
        {"test_invalid_field_is_invalid_argument[store-content-empty]", "test_generated_requests_get_documented_statuses[StoreMemory]"},
        "without ventros.common.ErrorDetails",
        id="missing-error-details",
    ),
    pytest.param(
        s.UnsortedMemory,
        {"test_search_is_ranked[vector]", "test_search_is_ranked[hybrid]"},
        "not sorted by relevance_score",
        id="unsorted-results",
    ),
    pytest.param(
        s.IgnoredLimitMemory,
        {"test_search_limit_defaults_to_10", "test_search_honours_limit[3]"},
        "memories",
        id="ignored-limit",
    ),
    pytest.param(
        s.DroppedWriteMemory,
        {"test_read_your_writes[keyword]", "test_read_your_writes[vector]", "test_contacts_are_isolated[keyword]"},
        "did not return",
        id="dropped-write",
    ),
    pytest.param(
        s.CrashingMemory,
        {"test_invalid_field_is_invalid_argument[search-query-4098-bytes-multibyte]"},
        "INTERNAL",
        id="internal-on-unicode",
    ),
]  # fmt: skip


@pytest.mark.slow
@pytest.mark.parametrize(("servicer", "must_fail", "reason"), BROKEN_MEMORY)
def test_memory_defect_is_reported(tmp_path, servicer, must_fail, reason):
    with s.serving([servicer(fixtures=True)]) as address:
        run = run_suite(address, "memory", tmp_path)
    assert run.code == 1, run.output[-3000:]
    failed = run.failed()
    assert must_fail <= failed, f"expected failures {must_fail - failed}; failed: {sorted(failed)}"
    for name in must_fail:
        assert reason in run.message(name), run.message(name)
    assert "replay:" in run.output and "buf curl --protocol grpc" in run.output


BROKEN_AGENTS = [
    pytest.param(
        s.FinalNotLastAgents,
        {"test_stream", "test_generated_requests_get_documented_statuses[StreamAgentExecution]"},
        "exactly one FINAL chunk, last",
        id="final-not-last",
    ),
    pytest.param(
        s.NoSuggestionAgents,
        {"test_capabilities_unknown_type"},
        "suggestions is empty",
        id="no-suggestions",
    ),
]


@pytest.mark.slow
@pytest.mark.parametrize(("servicer", "must_fail", "reason"), BROKEN_AGENTS)
def test_agent_defect_is_reported(tmp_path, servicer, must_fail, reason):
    with s.serving([servicer()]) as address:
        run = run_suite(address, "agent", tmp_path)
    assert run.code == 1, run.output[-3000:]
    failed = run.failed()
    assert must_fail <= failed, f"expected failures {must_fail - failed}; failed: {sorted(failed)}"
    for name in must_fail:
        assert reason in run.message(name), run.message(name)


@pytest.mark.slow
@pytest.mark.parametrize(
    ("cap", "check"),
    [
        (200 * 1024 * 1024, "test_over_cap_message[memory]"),
        (4 * 1024 * 1024, "test_large_message_below_cap[memory]"),
    ],
    ids=["cap-too-high", "cap-too-low-grpc-go-default"],
)
def test_wrong_message_cap_is_reported(tmp_path, cap, check):
    with s.serving([s.MiniMemory()], max_message_bytes=cap) as address:
        run = run_suite(address, "memory", tmp_path, args=("-k", "cap"))
    assert run.outcome(check) == "failed", run.output[-3000:]
    other = ({"test_over_cap_message[memory]", "test_large_message_below_cap[memory]"} - {check}).pop()
    assert run.outcome(other) == "passed"


# -- the reference server ------------------------------------------------------------------------------

#: Defects the suite finds in the reference server today (reported; remove each once fixed).
#: - UUID validation accepts a trailing newline (re.match with "$" instead of fullmatch): fixed in
#:   the agents, still in memory (search-contact_id-trailing-newline).
#: Checks the reference servers are known to fail (none today; list test ids here with a reason).
KNOWN_REFERENCE_DEFECTS: set[str] = set()


@contextlib.contextmanager
def reference_server(tmp_path: Path, *args: str) -> Iterator[dict[str, str]]:
    """``ventros serve ARGS`` on free ports; yields {"agent": addr, "memory": addr} as announced.

    Its output goes to a file (a pipe nobody reads would fill up and stall the server's logging).
    """
    log = tmp_path / f"serve-{len(list(tmp_path.iterdir()))}.log"
    with log.open("w") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "ventros_cli", "serve", "--agent-port", "0", "--memory-port", "0", *args],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    wanted = {"agent", "memory"} if "--only" not in args else {args[args.index("--only") + 1]}
    addresses: dict[str, str] = {}
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not wanted <= addresses.keys():
            text = log.read_text()
            addresses = dict(re.findall(r"(agent|memory) service listening on (\S+)", text))
            if proc.poll() is not None:
                break
            time.sleep(0.2)
        if not wanted <= addresses.keys():
            pytest.skip(f"the reference server does not start: {log.read_text()[-500:]}")
        yield addresses
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


@pytest.mark.slow
def test_suite_against_reference_agent_service(tmp_path):
    with (
        s.serving([s.MiniMemory(fixtures=True)]) as memory,
        reference_server(tmp_path, "--only", "agent", "--memory-addr", memory) as addresses,
    ):
        run = run_suite(addresses["agent"], "agent", tmp_path)
    assert len(run.results) > 50, run.output[-3000:]
    unexpected = run.failed() - KNOWN_REFERENCE_DEFECTS
    assert not unexpected, run.output[-8000:]


@pytest.mark.slow
def test_suite_against_reference_memory_service(tmp_path):
    with reference_server(tmp_path, "--only", "memory", "--db", ":memory:", "--fixtures") as addresses:
        run = run_suite(addresses["memory"], "memory", tmp_path, fixtures=True)
    assert len(run.results) > 100, run.output[-3000:]
    unexpected = run.failed() - KNOWN_REFERENCE_DEFECTS
    assert not unexpected, run.output[-8000:]


# -- the other entry points ----------------------------------------------------------------------------


@pytest.mark.slow
def test_plain_pytest_form_runs_the_packaged_checks(tmp_path):
    """``pytest -p ventros_conformance.plugin --pyargs ventros_conformance.checks --target ...``."""
    junit = tmp_path / "plain.xml"
    with s.serving([s.MiniMemory()]) as address:
        proc = subprocess.run(
            [sys.executable, "-m", "pytest", "-p", "ventros_conformance.plugin", "-p", "no:cacheprovider",
             "--pyargs", "ventros_conformance.checks", "--target", address, "--service", "memory",
             "-k", "limit and not fixture", f"--junitxml={junit}"],
            capture_output=True, text=True, timeout=300, cwd=tmp_path, check=False,
        )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    cases = list(ET.parse(junit).iter("testcase"))
    assert len(cases) >= 10
    assert all(case.find("failure") is None for case in cases)
    sources = [p.get("value") for case in cases for p in case.iter("property") if p.get("name") == "source"]
    assert len(sources) == len(cases) and all(sources)


@pytest.mark.slow
def test_grpcio_check_skips_cleanly_without_grpcio(tmp_path):
    junit = tmp_path / "nogrpcio.xml"
    code = (
        "import sys; sys.modules['grpc'] = None; import ventros_conformance as v; "
        f"sys.exit(v.run(sys.argv[1], 'memory', junit={str(junit)!r}, extra_args=['-k', 'gzip']))"
    )
    with s.serving([s.MiniMemory()]) as address:
        proc = subprocess.run([sys.executable, "-c", code, address], capture_output=True, text=True, timeout=120,
                              cwd=tmp_path, check=False)  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-3000:]
    outcomes = {c.get("name"): c.find("skipped") for c in ET.parse(junit).iter("testcase")}
    skipped = outcomes["test_gzip_request_grpcio[memory]"]
    assert skipped is not None and "grpcio is not installed" in (skipped.get("message") or "")
    assert outcomes["test_gzip_request_raw[memory]"] is None


@pytest.mark.slow
def test_replay_command(tmp_path):
    request = tmp_path / "request.json"
    request.write_text('{"contact_id": "not-a-uuid", "content": "x", "memory_type": "fact"}')
    with s.serving([s.MiniMemory()]) as address:
        proc = subprocess.run(
            [sys.executable, "-m", "ventros_conformance.replay", address, "StoreMemory", f"@{request}"],
            capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
    assert proc.returncode == 1
    assert "INVALID_ARGUMENT" in proc.stderr and "contact_id" in proc.stderr
