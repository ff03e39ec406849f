"""How the report's prose writes lists and env steps (notes and summary.md share these)."""

from __future__ import annotations

from collections.abc import Sequence


def listing(items: Sequence[str], shown: int = 5) -> str:
    """The first ``shown`` items, comma-separated, and how many more there are."""
    return ", ".join(items[:shown]) + (f" and {len(items) - shown} more" if len(items) > shown else "")


def steps_text(step: float) -> str:
    """An env step with thousands separators; one decimal where it is not whole (an interpolated step)."""
    return f"{int(step):,}" if float(step).is_integer() else f"{step:,.1f}"
