"""Assertions with readable failures: what the contract wanted, what came back, how to replay it."""

from __future__ import annotations

import hashlib
import json
import math
import shlex
import tempfile
from pathlib import Path
from typing import Any

import betterproto2
from grpclib.const import Status

from . import contract as c
from ._transport import Outcome

#: Requests whose JSON is longer than this are written to a file and replayed with ``-d @file``.
INLINE_JSON_LIMIT = 1500


class ContractViolation(AssertionError):
    """A check failed: the message says what the contract wanted and what the server did."""


def _json_safe(value: Any) -> Any:
    if isinstance(value, float):
        if math.isnan(value):
            return "NaN"
        if math.isinf(value):
            return "Infinity" if value > 0 else "-Infinity"
        return value
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_json_safe(v) for v in value]
    return value


def request_json(request: Any) -> str:
    """The request as protobuf JSON (proto field names), replayable with buf curl or grpcurl."""
    if isinstance(request, betterproto2.Message):
        data = request.to_dict(casing=betterproto2.Casing.SNAKE)
        return json.dumps(_json_safe(data), ensure_ascii=True, separators=(",", ":"))
    return json.dumps({"<raw bytes, hex>": bytes(request).hex()})


def replay_hint(address: str, method_path: str, request: Any, headers: dict[str, str] | None = None) -> str:
    """Commands that send this exact request again (``headers``: extra request headers to add)."""
    body = request_json(request)
    if len(body) > INLINE_JSON_LIMIT:
        digest = hashlib.sha256(body.encode()).hexdigest()[:12]
        folder = Path(tempfile.gettempdir()) / "ventros-conformance"
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"request-{digest}.json"
        path.write_text(body, encoding="utf-8")
        data = "@" + str(path)
        shown = f"(request JSON, {len(body)} chars, written to {path})"
    else:
        data = body
        shown = f"request: {body}"
    method = method_path.lstrip("/")
    extra = "".join(f" -H {shlex.quote(f'{k}: {v}')}" for k, v in (headers or {}).items())
    return "\n".join(
        [
            shown,
            "replay:",
            f"  buf curl --protocol grpc --http2-prior-knowledge{extra} -d {shlex.quote(data)} "
            f"http://{address}/{method}",
            f"  python -m ventros_conformance.replay {address} {method.rsplit('/', 1)[-1]} {shlex.quote(data)}",
        ]
    )


def details_problems(outcome: Outcome) -> list[str]:
    """'Every non-OK status carries a ventros.common.ErrorDetails' (code, message)."""
    if outcome.ok or outcome.local:
        return []
    d = outcome.details
    if d is None:
        extra = f" (found instead: {', '.join(outcome.foreign_details)})" if outcome.foreign_details else ""
        return [
            f"{outcome.status.name} without ventros.common.ErrorDetails in grpc-status-details-bin{extra}"
        ]
    problems = []
    if not c.ERROR_CODE_RE.fullmatch(d.code):
        problems.append(f"ErrorDetails.code {d.code!r} is not a non-empty UPPER_SNAKE_CASE reason")
    if not d.message.strip():
        problems.append("ErrorDetails.message is empty")
    if outcome.status == Status.INVALID_ARGUMENT:
        if not d.metadata.get("field"):
            problems.append(
                "INVALID_ARGUMENT without ErrorDetails.metadata['field'] naming the request field"
            )
        if not d.suggestions:
            problems.append(
                "INVALID_ARGUMENT without ErrorDetails.suggestions (validation errors give at least one)"
            )
    return problems


def fail(summary: str, outcome: Outcome | None, address: str, problems: list[str] = ()) -> None:  # type: ignore[assignment]
    lines = [summary]
    lines += [f"  - {p}" for p in problems]
    if outcome is not None:
        lines.append(f"got: {outcome.describe()}")
        lines.append(replay_hint(address, outcome.method, outcome.request))
    raise ContractViolation("\n".join(lines))


def expect_ok(outcome: Outcome, address: str, what: str = "") -> Any:
    if not outcome.ok:
        fail(f"expected OK{' ' + what if what else ''}", outcome, address, details_problems(outcome))
    return outcome.response


def expect_error(
    outcome: Outcome,
    status: Status,
    address: str,
    *,
    field: str | tuple[str, ...] | None = None,
    code: str | tuple[str, ...] | None = None,
    suggestions: bool = False,
) -> None:
    """The call ended with ``status``, with conforming ErrorDetails naming ``field``/``code``."""
    want = status.name
    if field:
        fields = (field,) if isinstance(field, str) else field
        want += f" (field {' or '.join(fields)})"
    if outcome.status != status:
        fail(f"expected {want}", outcome, address)
    problems = details_problems(outcome)
    if outcome.local:
        problems.append("the status was decided by the client, not sent by the server")
    d = outcome.details
    if d is not None:
        if field:
            fields = (field,) if isinstance(field, str) else field
            reported = d.metadata.get("field", "")
            if reported and not any(c.field_matches(reported, f) for f in fields):
                problems.append(
                    f"ErrorDetails.metadata['field'] is {reported!r}, expected {' or '.join(fields)}"
                )
        if code:
            codes = (code,) if isinstance(code, str) else code
            if d.code not in codes:
                problems.append(f"ErrorDetails.code is {d.code!r}, expected {' or '.join(codes)}")
        if suggestions and not d.suggestions:
            problems.append("ErrorDetails.suggestions is empty (the contract asks for next steps)")
    if problems:
        fail(f"expected {want} with conforming ErrorDetails", outcome, address, problems)


def expect_conforming(outcome: Outcome, address: str, problems: list[str], what: str) -> None:
    if problems:
        fail(what, outcome, address, problems)
