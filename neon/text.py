"""Plain-text tables and numbers for the command lines' reports."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

__all__ = ["format_table", "format_value"]


def format_value(value: Any) -> str:
    """A number as tables show it: four decimals, or four significant digits when tiny or
    huge."""
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        return f"{value:.4g}" if abs(value) >= 1e4 or (value and abs(value) < 1e-3) else \
            f"{value:.4f}"
    return str(value)


def format_table(rows: Sequence[dict[str, Any]], columns: Sequence[str]) -> str:
    """Right-aligned text table of ``rows`` restricted to ``columns``."""
    cells = [[format_value(r.get(c, "")) for c in columns] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) if cells else len(c)
              for i, c in enumerate(columns)]
    # numbers right-aligned, text (names, parameter lists) left-aligned
    text = [any(isinstance(r.get(c), str) and r.get(c) not in ("", "-") for r in rows)
            for c in columns]

    def align(value: str, width: int, left: bool) -> str:
        return value.ljust(width) if left else value.rjust(width)

    lines = ["  ".join(align(c, w, t) for c, w, t in zip(columns, widths, text)).rstrip()]
    lines += ["  ".join(align(v, w, t) for v, w, t in zip(row, widths, text)).rstrip()
              for row in cells]
    return "\n".join(lines)

