"""Readable errors for operator-written YAML validated with pydantic: ``file: field.path: problem``.

Shared by the tenants file and policy profiles (the policy package already depends on this one for country codes,
so the helper lives here rather than above both).
"""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

# Error types whose offending value helps the operator find the line.
_SHOW_INPUT = frozenset(
    {
        "greater_than_equal",
        "greater_than",
        "less_than_equal",
        "enum",
        "literal_error",
        "float_parsing",
        "int_parsing",
        "string_pattern_mismatch",
        "string_too_short",
        "string_too_long",
        "date_from_datetime_parsing",
        "date_parsing",
        "finite_number",
    }
)


def field_path(loc: tuple[int | str, ...], document: Any) -> str:
    """``('rules', 2, 'cap', 'amount')`` → ``rules[2] (tier2-cap).cap.amount``: a list item's ``id`` or ``name``
    is shown beside its index, so the operator finds the entry without counting."""
    out = ""
    node = document
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
            node = node[part] if isinstance(node, list) and 0 <= part < len(node) else None
            label = node.get("id") or node.get("name") if isinstance(node, dict) else None
            if isinstance(label, str):
                out += f" ({label})"
        else:
            out += f".{part}" if out else str(part)
            node = node.get(part) if isinstance(node, dict) else None
    return out


def explain(err: Any, unknown_field_hint: str = "") -> str:
    """One pydantic error in the operator's words."""
    if err["type"] == "extra_forbidden":
        return f"unknown field{unknown_field_hint}"
    if err["type"] == "missing":
        return "required field is missing"
    msg = str(err["msg"]).removeprefix("Value error, ")
    if "input" in err and err["type"] in _SHOW_INPUT:
        msg += f" (got {err['input']!r})"
    return msg


def describe(exc: ValidationError, document: Any, origin: str, unknown_field_hint: str = "") -> str:
    """``origin: path: problem; path: problem`` for every error pydantic found."""
    problems = []
    for err in exc.errors():
        where = field_path(tuple(err["loc"]), document)
        what = explain(err, unknown_field_hint)
        problems.append(f"{where}: {what}" if where else what)
    return f"{origin}: " + "; ".join(problems)


def one_line(exc: Exception) -> str:
    """A parser's multi-line error (PyYAML points at the line with a caret) folded onto one line for stderr."""
    return " ".join(str(exc).split())
