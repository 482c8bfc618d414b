"""Validation primitives both services share: one UUID rule, one error shape.

Every validation failure is INVALID_ARGUMENT with ErrorDetails: code MISSING_FIELD, INVALID_FIELD
or OUT_OF_RANGE, metadata["field"] naming the request field path, and a suggestion
(docs/contract.md, "Status codes and ErrorDetails"). The per-service modules
(memory/validation.py, agents/validation.py) state their fields' rules on top of these.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ventros import InvalidArgumentError

MISSING, INVALID, OUT_OF_RANGE = "MISSING_FIELD", "INVALID_FIELD", "OUT_OF_RANGE"

#: The canonical 8-4-4-4-12 hexadecimal form, any version, any case.
UUID_RE = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")


def is_uuid(value: str) -> bool:
    # fullmatch, not match with "$": "$" also matches before a trailing newline.
    return UUID_RE.fullmatch(value) is not None


def utf8_len(text: str) -> int:
    return len(text.encode("utf-8"))


def field_error(
    code: str, field: str, message: str, suggestion: str, **metadata: str
) -> InvalidArgumentError:
    """The INVALID_ARGUMENT a handler raises for one bad field."""
    from ventros import InvalidArgumentError  # here: the import's worker uses is_uuid only

    error = InvalidArgumentError.of(code, message, suggestions=[suggestion], field=field, **metadata)
    assert isinstance(error, InvalidArgumentError)
    return error
