"""Request validation, exactly as the comments of python_to_go.proto state it.

Every failure is INVALID_ARGUMENT with ErrorDetails: code MISSING_FIELD (required and empty),
INVALID_FIELD (malformed) or OUT_OF_RANGE (a number or a size beyond its bound), the field's
proto name in metadata["field"] (``related[2].entity_id`` for an element), and a suggestion.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ventros import InvalidArgumentError

from ..validation import INVALID, MISSING, OUT_OF_RANGE, field_error, is_uuid, utf8_len

SNAKE_RE = re.compile(r"^[a-z][a-z0-9]*(_[a-z0-9]+)*$")
ENTITY_ID_RE = re.compile(r"^[A-Za-z0-9_.:-]+$")

INCLUDE_FIELDS = ("content", "embedding", "metadata", "related")
DEFAULT_INCLUDE = frozenset({"content", "metadata", "related"})


_bytes = utf8_len


def missing(field: str, what: str, suggestion: str) -> InvalidArgumentError:
    return field_error(MISSING, field, f"{field} is required: {what}", suggestion)


def invalid(field: str, message: str, suggestion: str) -> InvalidArgumentError:
    return field_error(INVALID, field, f"{field}: {message}", suggestion)


def out_of_range(field: str, message: str, suggestion: str) -> InvalidArgumentError:
    return field_error(OUT_OF_RANGE, field, f"{field}: {message}", suggestion)


def uuid_field(field: str, value: str) -> str:
    if not value:
        raise missing(
            field, "a UUID", f"Set {field} to the contact's UUID, e.g. 550e8400-e29b-41d4-a716-446655440000."
        )
    if not is_uuid(value):
        raise invalid(
            field,
            f"{value[:64]!r} is not a UUID (8-4-4-4-12 hexadecimal digits)",
            "Send the canonical form, e.g. 550e8400-e29b-41d4-a716-446655440000.",
        )
    return value.lower()


def bounded_int(field: str, value: int, *, default: int, maximum: int) -> int:
    """The contract's "0 means the default, at most N; negative or larger is INVALID_ARGUMENT"."""
    if value < 0 or value > maximum:
        raise out_of_range(
            field, f"{value} is outside 0..{maximum}", f"Use 1..{maximum}, or 0 for the default ({default})."
        )
    return value or default


def snake_name(field: str, value: str, *, max_bytes: int = 64, example: str = "") -> str:
    if not value:
        raise missing(field, "a lower_snake_case name", f"Set {field}, e.g. {example!r}.")
    if _bytes(value) > max_bytes:
        raise out_of_range(
            field, f"longer than {max_bytes} bytes", f"Use a name of at most {max_bytes} bytes."
        )
    if not SNAKE_RE.match(value):
        raise invalid(
            field, f"{value[:64]!r} is not lower_snake_case", f"Use lower_snake_case, e.g. {example!r}."
        )
    return value


def text_field(field: str, value: str, *, max_bytes: int, required: bool) -> str:
    if _bytes(value) > max_bytes:
        raise out_of_range(
            field,
            f"{_bytes(value)} UTF-8 bytes, more than {max_bytes}",
            f"Shorten {field} to {max_bytes} bytes.",
        )
    if required and not value.strip():
        raise missing(field, "non-empty text", f"Set {field} to the text to store or search for.")
    return value


def list_size(field: str, values: Iterable[object], maximum: int) -> None:
    count = len(list(values))
    if count > maximum:
        raise out_of_range(field, f"{count} entries, more than {maximum}", f"Send at most {maximum} entries.")


def include_fields(values: list[str]) -> frozenset[str]:
    for i, name in enumerate(values):
        if name not in INCLUDE_FIELDS:
            raise invalid(
                f"include_fields[{i}]",
                f"unknown field {name!r}",
                f"Use any of {', '.join(INCLUDE_FIELDS)} (empty means content, metadata and related).",
            )
    return frozenset(values) if values else DEFAULT_INCLUDE


def metadata_map(field: str, values: dict[str, str]) -> dict[str, str]:
    list_size(field, values, 64)
    for key, value in values.items():
        if not 1 <= _bytes(key) <= 128:
            raise out_of_range(
                f"{field}[{key[:32]!r}]", "keys must be 1..128 bytes", "Use shorter, non-empty keys."
            )
        if _bytes(value) > 4096:
            raise out_of_range(
                f"{field}[{key[:32]!r}]", "values must be at most 4096 bytes", "Shorten the value."
            )
    return dict(values)


def entity_id(field: str, value: str) -> str:
    if not value:
        raise missing(field, "an entity id", f"Set {field}, e.g. a product's UUID.")
    if _bytes(value) > 128:
        raise out_of_range(
            field, "longer than 128 bytes", "Use an id of at most 128 bytes (a UUID is recommended)."
        )
    if not ENTITY_ID_RE.match(value):
        raise invalid(
            field, f"{value[:64]!r} has characters outside [A-Za-z0-9_.:-]", "Use a UUID or [A-Za-z0-9_.:-]."
        )
    return value


def strength(field: str, value: float) -> float:
    if not 0.0 <= value <= 1.0:  # also rejects NaN
        raise out_of_range(
            field, f"{value} is outside [0.0, 1.0]", "Use a strength in [0.0, 1.0]; 0 means 1.0."
        )
    return value or 1.0
