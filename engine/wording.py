"""Counts in words: the noun in the grammatical number of its count, for log lines and errors."""

from __future__ import annotations


def counted(count: int, noun: str, plural: str | None = None, *,
            thousands: bool = False) -> str:
    """'1 polygon', '3 polygons', '2 classes': `plural` when given, else the noun with "es"
    after s, x, ch and sh, "s" otherwise; `thousands` writes 12,345."""
    number = f"{count:,}" if thousands else str(count)
    if count == 1:
        return f"{number} {noun}"
    if plural is None:
        plural = noun + ("es" if noun.endswith(("s", "x", "ch", "sh")) else "s")
    return f"{number} {plural}"
