"""Value assertions for the end-to-end scripts, reporting where two nested values first differ."""

from __future__ import annotations

from typing import Any


class CheckFailure(Exception):
    """An observed value differed from the expected one."""


def first_difference(actual: Any, expected: Any, where: str = "") -> str | None:
    """Location and values of the first mismatch in nested dicts/lists, or None when equal."""
    if isinstance(actual, dict) and isinstance(expected, dict):
        for key in sorted(set(actual) | set(expected), key=repr):
            if key not in actual:
                return f"{where}[{key!r}] missing (expected {expected[key]!r})"
            if key not in expected:
                return f"{where}[{key!r}] unexpected (got {actual[key]!r})"
            found = first_difference(actual[key], expected[key], f"{where}[{key!r}]")
            if found:
                return found
        return None
    if isinstance(actual, list) and isinstance(expected, list) and len(actual) == len(expected):
        for index, (actual_item, expected_item) in enumerate(zip(actual, expected)):
            found = first_difference(actual_item, expected_item, f"{where}[{index}]")
            if found:
                return found
        return None
    if actual != expected or type(actual) is not type(expected):
        return f"{where or 'value'}: expected {expected!r}, got {actual!r}"
    return None


def expect(label: str, actual: Any, expected: Any) -> None:
    difference = first_difference(actual, expected)
    if difference:
        raise CheckFailure(f"{label}: {difference}")
