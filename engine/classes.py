"""Class tables: the codes, names and colours of a land-cover legend.

Pure Python (no torch, no qgis): the plugin reads class tables from model headers too.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass

# A qualitative palette (colour-blind aware first entries), cycled for large legends.
DEFAULT_PALETTE = (
    "#1f78b4", "#33a02c", "#e31a1c", "#ff7f00", "#6a3d9a", "#b15928",
    "#a6cee3", "#b2df8a", "#fb9a99", "#fdbf6f", "#cab2d6", "#ffff99",
    "#8dd3c7", "#bebada", "#fb8072", "#80b1d3", "#fdb462", "#b3de69",
    "#fccde5", "#d9d9d9",
)

#: Class maps are uint8 with this nodata value when every code fits below it, else uint16.
NODATA_UINT8 = 255
NODATA_UINT16 = 65535


@dataclass(frozen=True)
class LandCoverClass:
    """One legend entry: `code` is the user's value, `index` the network's output channel."""

    index: int
    code: int
    name: str
    color: str

    def rgb(self) -> tuple[int, int, int]:
        value = self.color.lstrip("#")
        return int(value[0:2], 16), int(value[2:4], 16), int(value[4:6], 16)


@dataclass(frozen=True)
class ClassTable:
    """An ordered legend; the order defines the network's output channels."""

    classes: tuple[LandCoverClass, ...]

    def __len__(self) -> int:
        return len(self.classes)

    def __iter__(self):
        return iter(self.classes)

    @property
    def codes(self) -> list[int]:
        return [c.code for c in self.classes]

    @property
    def names(self) -> list[str]:
        return [c.name for c in self.classes]

    def by_code(self, code: int) -> LandCoverClass:
        for entry in self.classes:
            if entry.code == code:
                return entry
        raise KeyError(code)

    def map_dtype(self) -> str:
        """Data type of a class map able to hold every code plus the nodata value."""
        return "uint8" if max(self.codes, default=0) < NODATA_UINT8 else "uint16"

    def map_nodata(self) -> int:
        return NODATA_UINT8 if self.map_dtype() == "uint8" else NODATA_UINT16

    def to_json(self) -> list[dict]:
        return [asdict(c) for c in self.classes]

    @classmethod
    def from_json(cls, items: Iterable[Mapping]) -> ClassTable:
        entries = []
        for item in items:
            entries.append(
                LandCoverClass(
                    index=int(item["index"]),
                    code=int(item["code"]),
                    name=str(item["name"]),
                    color=normalize_color(str(item["color"])),
                )
            )
        if [e.index for e in entries] != list(range(len(entries))):
            raise ValueError("class indices must be 0..n-1 in order")
        if len({e.code for e in entries}) != len(entries):
            raise ValueError("class codes must be unique")
        return cls(tuple(entries))

    @classmethod
    def build(
        cls,
        codes: Iterable[int],
        names: Mapping[int, str] | None = None,
        colors: Mapping[int, str] | None = None,
    ) -> ClassTable:
        """A table for sorted unique `codes`, with optional names and colours per code."""
        names = names or {}
        colors = colors or {}
        entries = []
        for index, code in enumerate(sorted(set(int(c) for c in codes))):
            color = colors.get(code) or DEFAULT_PALETTE[index % len(DEFAULT_PALETTE)]
            entries.append(
                LandCoverClass(
                    index=index,
                    code=code,
                    name=str(names.get(code) or f"class {code}"),
                    color=normalize_color(color),
                )
            )
        return cls(tuple(entries))


def normalize_color(value: str) -> str:
    """`#rrggbb` in lower case; accepts `#rgb`, `rrggbb` and `#rrggbbaa` (alpha dropped)."""
    text = value.strip().lstrip("#").lower()
    if len(text) == 3:
        text = "".join(ch * 2 for ch in text)
    if len(text) == 8:
        text = text[:6]
    if len(text) != 6 or any(ch not in "0123456789abcdef" for ch in text):
        raise ValueError(f"not a colour: {value!r} (expected #rrggbb)")
    return "#" + text
