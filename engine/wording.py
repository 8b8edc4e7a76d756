"""Words for log lines and errors: counts with the noun in their grammatical number, and the
families' names."""

from __future__ import annotations

#: The families as the user sees them (the algorithms are "Classify with <name>").
FAMILY_NAMES = {"fgunet": "FG-UNET", "mrfusion": "MRFusion", "twinns": "TWINNS",
                "randomforest": "Random Forest"}


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
