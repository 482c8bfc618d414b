"""The pytest plugin behind ``ventros conformance`` and ``pytest -p ventros_conformance.plugin``.

Options: ``--target HOST:PORT`` (the server under test), ``--service memory|agent|all``,
``--fixture-set auto|require|skip``, ``--fixtures-file FILE``, ``--thorough`` (the long Hypothesis profile), ``--token``.
It provides the session fixtures the checks use (``target``, ``fixture_set``, ``agent_types``),
keeps the checks of the other service out of the run, attaches each check's source (the spec
section or contract decision behind it) to the JUnit XML, and prints a table of every check
with its verdict and, for failures, why.

The plugin is inert in a pytest session that collects no check: it only acts on items from
``ventros_conformance.checks``.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from grpclib.const import Status
from hypothesis import HealthCheck, Phase, settings

from . import contract as c
from . import fixtures as fx
from ._transport import Target
from .checks._support import seeded

CI_PROFILE = "ventros-ci"
THOROUGH_PROFILE = "ventros-thorough"
SERVICES = ("memory", "agent", "all")
MARKER = "conformance"

settings.register_profile(
    CI_PROFILE,
    max_examples=20,
    derandomize=True,
    deadline=None,
    database=None,
    print_blob=False,
    phases=(Phase.explicit, Phase.reuse, Phase.generate, Phase.shrink),
    suppress_health_check=list(HealthCheck),
)
settings.register_profile(
    THOROUGH_PROFILE,
    max_examples=500,
    derandomize=False,
    deadline=None,
    database=None,
    print_blob=True,
    suppress_health_check=list(HealthCheck),
)


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("ventros-conformance", "Ventros conformance suite")
    group.addoption("--target", default=None, metavar="HOST:PORT", help="the gRPC server under test")
    group.addoption(
        "--service",
        default="all",
        choices=SERVICES,
        help="which service the target serves: memory, agent or all (default: all)",
    )
    group.addoption(
        "--fixture-set",
        default="auto",
        choices=("auto", "require", "skip"),
        dest="ventros_fixtures",
        help="checks that need the fixture set: run when it is loaded (auto), fail when it is not "
        "(require), or skip them (skip)",
    )
    group.addoption(
        "--thorough",
        action="store_true",
        default=False,
        help="long Hypothesis profile (many randomised examples) instead of the CI one",
    )
    group.addoption(
        "--fixtures-file",
        default=None,
        metavar="FILE.jsonl",
        help="the fixture set the target loaded (default: the suite's own fixtures.jsonl)",
    )
    group.addoption("--token", default=None, help="bearer token, when the server requires one")
    group.addoption(
        "--call-timeout", type=float, default=30.0, help="seconds one call may take (default: 30)"
    )


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        f"{MARKER}(source, service): a Ventros conformance check, with the spec section or contract "
        "decision it enforces and the service it applies to",
    )
    config.addinivalue_line("markers", "needs_fixtures: the check reads the shipped fixture set")
    if not config.getoption("hypothesis_profile", None):
        settings.load_profile(THOROUGH_PROFILE if config.getoption("--thorough") else CI_PROFILE)
    config._ventros_results = []  # type: ignore[attr-defined]


def _is_check(item: pytest.Item) -> bool:
    return item.get_closest_marker(MARKER) is not None


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    checks = [item for item in items if _is_check(item)]
    if not checks:
        return
    if not config.getoption("--target"):
        raise pytest.UsageError("the Ventros conformance checks need --target HOST:PORT")
    service = config.getoption("--service")
    keep: list[pytest.Item] = []
    drop: list[pytest.Item] = []
    for item in items:
        marker = item.get_closest_marker(MARKER)
        wanted = marker is None or service == "all" or marker.kwargs.get("service") in (service, "any")
        skip_fixtures = config.getoption("ventros_fixtures") == "skip" and item.get_closest_marker(
            "needs_fixtures"
        )
        (keep if wanted and not skip_fixtures else drop).append(item)
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = keep
    for item in items:
        marker = item.get_closest_marker(MARKER)
        if marker is not None:
            item.user_properties.append(("source", marker.kwargs.get("source", "")))
            item.user_properties.append(("service", marker.kwargs.get("service", "")))


# -- session fixtures -----------------------------------------------------------------------------


@pytest.fixture(scope="session")
def target(request: pytest.FixtureRequest) -> Iterator[Target]:
    """The server under test. Fails the run early (and clearly) when it cannot be reached."""
    config = request.config
    address = config.getoption("--target")
    tgt = Target(address, token=config.getoption("--token"), call_timeout=config.getoption("--call-timeout"))
    try:
        service = config.getoption("--service")
        if service in ("memory", "all"):
            probe = tgt.unary(
                c.RPCS["GetContactContext"].path,
                c.RPCS["GetContactContext"].request(contact_id=fx.CONTACT_A),
                c.RPCS["GetContactContext"].response,
                timeout=10,
            )
        else:
            probe = tgt.unary(
                c.RPCS["ListAvailableAgents"].path,
                c.RPCS["ListAvailableAgents"].request(),
                c.RPCS["ListAvailableAgents"].response,
                timeout=10,
            )
        if probe.local:
            pytest.exit(f"cannot reach the target {address}: {probe.message}", returncode=3)
        yield tgt
    finally:
        tgt.close()


@dataclass(frozen=True)
class FixtureState:
    loaded: bool
    reason: str
    data: fx.FixtureSet


@pytest.fixture(scope="session")
def fixture_state(target: Target, request: pytest.FixtureRequest) -> FixtureState:
    """Whether the target loaded fixtures.jsonl: GetContactContext of contact A is OK (loaded) or
    NOT_FOUND (not loaded)."""
    data = fx.load(request.config.getoption("--fixtures-file"))
    rpc = c.RPCS["GetContactContext"]
    outcome = target.unary(rpc.path, rpc.request(contact_id=fx.CONTACT_A), rpc.response)
    if outcome.ok and outcome.response.profile and outcome.response.profile.name:
        return FixtureState(True, "fixture contact A found", data)
    if outcome.ok:
        return FixtureState(
            False, "fixture contact A has no profile: the fixture set is not (fully) loaded", data
        )
    return FixtureState(False, f"GetContactContext(fixture contact A) -> {outcome.describe()}", data)


@pytest.fixture
def fixture_set(fixture_state: FixtureState, request: pytest.FixtureRequest) -> fx.FixtureSet:
    """The fixture set, for checks that need it loaded in the target (skipped otherwise)."""
    if not fixture_state.loaded:
        message = (
            f"needs fixtures: load {fx.fixtures_path()} into the server under test "
            f"(reference server: ventros serve --fixtures) [{fixture_state.reason}]"
        )
        if request.config.getoption("ventros_fixtures") == "require":
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    return fixture_state.data


@pytest.fixture(scope="session")
def agent_types(target: Target) -> tuple[str, ...]:
    """The agent types the target lists (ListAvailableAgents)."""
    rpc = c.RPCS["ListAvailableAgents"]
    outcome = target.unary(rpc.path, rpc.request(), rpc.response)
    if not outcome.ok:
        pytest.fail(f"ListAvailableAgents failed: {outcome.describe()}", pytrace=False)
    return tuple(a.type for a in outcome.response.agents)


@pytest.fixture(scope="session", autouse=True)
def _suite_properties(request: pytest.FixtureRequest) -> None:
    if not any(_is_check(item) for item in request.session.items):
        return
    xml = request.config.stash.get(_xml_key(), None) if _xml_key() else None
    if xml is not None:
        config = request.config
        xml.add_global_property("target", config.getoption("--target") or "")
        xml.add_global_property("service", config.getoption("--service"))
        xml.add_global_property("hypothesis_profile", str(getattr(settings.default, "_current_profile", "")))


def _xml_key() -> Any:
    try:
        from _pytest.junitxml import xml_key
    except ImportError:  # pragma: no cover - older/newer pytest
        return None
    return xml_key


# -- the report ------------------------------------------------------------------------------------


@dataclass
class CheckResult:
    name: str
    title: str
    source: str
    service: str
    outcome: str  # passed, failed, skipped, error
    reason: str


def _title(item: pytest.Item) -> str:
    doc = getattr(getattr(item, "function", None), "__doc__", None) or ""
    return " ".join(doc.strip().split("\n\n")[0].split()) if doc else item.name


def _reason(report: pytest.TestReport) -> str:
    if report.passed:
        return ""
    longrepr = report.longrepr
    if report.skipped and isinstance(longrepr, tuple):
        return str(longrepr[2]).removeprefix("Skipped: ")
    crash = getattr(longrepr, "reprcrash", None)
    text = crash.message if crash is not None else str(longrepr)
    for prefix in (
        "ventros_conformance.expect.ContractViolation: ",
        "ContractViolation: ",
        "AssertionError: ",
    ):
        text = text.replace(prefix, "")
    lines = [line for line in text.splitlines() if line.strip()]
    return "\n".join(lines[:6])


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[Any]) -> Iterator[None]:
    outcome = yield
    report: pytest.TestReport = outcome.get_result()  # type: ignore[attr-defined]
    marker = item.get_closest_marker(MARKER)
    if marker is None:
        return
    results: list[CheckResult] = item.config._ventros_results  # type: ignore[attr-defined]
    if report.when == "call" or (report.when == "setup" and not report.passed):
        status = report.outcome if report.when == "call" else ("skipped" if report.skipped else "error")
        if report.when == "call" and report.failed and call.excinfo is not None:
            exc = call.excinfo.value
            # Hypothesis re-raises the shrunk example's error; keep its full first lines.
            report.sections.append(("ventros", str(exc)))
        results.append(
            CheckResult(
                name=item.name,
                title=_title(item),
                source=marker.kwargs.get("source", ""),
                service=marker.kwargs.get("service", ""),
                outcome=status,
                reason=_reason(report),
            )
        )


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    results: list[CheckResult] = getattr(config, "_ventros_results", [])
    if not results:
        return
    terminalreporter.write_sep("=", "Ventros conformance report")
    terminalreporter.write(render_report(results, config, terminalreporter))


def render_report(results: list[CheckResult], config: pytest.Config, terminalreporter: Any = None) -> str:
    """Every check with its verdict and source, then each failure with the reason."""
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    writer = getattr(terminalreporter, "_tw", None)
    markup = bool(getattr(writer, "hasmarkup", False))
    width = getattr(writer, "fullwidth", 80) if markup else 160
    buffer = io.StringIO()
    console = Console(
        file=buffer,
        width=max(100, width),
        force_terminal=markup,
        color_system="standard" if markup else None,
        highlight=False,
    )
    style = {"passed": "green", "failed": "bold red", "error": "bold red", "skipped": "yellow"}
    table = Table(
        title=f"Ventros conformance: {config.getoption('--target')} (service: {config.getoption('--service')})",
        expand=True,
    )
    table.add_column("result", no_wrap=True)
    table.add_column("check", ratio=3, overflow="fold")
    table.add_column("source (spec section / contract decision)", ratio=4, overflow="fold")
    for r in results:
        table.add_row(f"[{style.get(r.outcome, '')}]{r.outcome}[/]", escape(r.name), escape(r.source))
    console.print(table)
    failed = [r for r in results if r.outcome in ("failed", "error")]
    skipped = [r for r in results if r.outcome == "skipped"]
    for r in failed:
        console.print(f"\n[bold red]FAILED[/] {escape(r.name)}: {escape(r.title)}")
        console.print(f"  source: {escape(r.source)}")
        for line in r.reason.splitlines():
            console.print(f"  {escape(line)}", soft_wrap=True)
    reasons = sorted({r.reason.split(" [")[0] for r in skipped})
    for reason in reasons:
        count = sum(1 for r in skipped if r.reason.split(" [")[0] == reason)
        console.print(f"\n[yellow]skipped[/] {count} check(s): {escape(reason)}")
    passed = sum(1 for r in results if r.outcome == "passed")
    console.print(
        f"\n{passed} passed, {len(failed)} failed, {len(skipped)} skipped (of {len(results)} checks)"
    )
    return buffer.getvalue()


__all__ = ["CI_PROFILE", "THOROUGH_PROFILE", "CheckResult", "FixtureState", "Status", "seeded"]
