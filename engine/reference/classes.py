"""Class tables: the codes, names and colours of a land-cover legend.

Pure Python (no torch, no qgis): the plugin reads class tables from model headers too.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass

# A qualitative palette (colour-blind aware first entries), cycled for large legends.
DEFAULT_PALETTE = (
    "#1f78b4", "#33a02c", "#e31a1c", "#ff7f00", "#6a3d9a", "#b15928",
    "#a6cee3", "#b2df8a", "#fb9a99", "#fdbf6f", "#cab2d6", "#ffff99",
    "#8dd3c7", "#bebada", "#fb8072", "#80b1d3", "#fdb462", "#b3de69",
    "#fccde5", "#d9d9d9",
)

#: Conventional colours of land-cover classes, by words of their names (a word matches the
#: start of a word of the name, case-insensitively; one ending in a space, a whole word), in
#: the order they are tried: "wet meadow" is a wetland, "tree crops" an orchard. After the
#: CORINE and ESA WorldCover legends.
CONVENTIONAL_COLORS = (
    (("snow", "ice", "glacier"), "#e4f1f8"),
    (("wet", "marsh", "swamp", "bog", "fen", "peat", "mangrove", "reed"), "#3fa7a0"),
    (("water", "river", "lake", "sea ", "ocean", "reservoir", "pond", "canal"), "#2166ac"),
    (("vine", "orchard", "olive", "fruit", "plantation", "tree crop"), "#9a4f9e"),
    (("forest", "tree", "wood", "conifer", "broadleaf", "deciduous", "evergreen"), "#1b6b30"),
    (("shrub", "schrub", "scrub", "bush", "heath", "moor"), "#8a8f32"),
    (("grass", "meadow", "pasture", "lawn", "prairie", "steppe", "herbaceous"), "#9fd46a"),
    (("crop", "cultivat", "arable", "farm", "agricult", "cereal", "wheat", "maize", "corn",
      "barley"), "#f0cf3c"),
    (("urban", "built", "building", "artificial", "residential", "industrial", "commercial",
      "settlement", "impervious", "road", "city", "town"), "#d7301f"),
    (("bare", "soil", "sand", "rock", "desert", "dune", "beach", "barren", "quarry"),
     "#d2b48c"),
)
#: Words that, just before a word of `CONVENTIONAL_COLORS`, say the class is not that cover.
NEGATIONS = ("no", "non", "not", "without", "other than")

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
        """A table for sorted unique `codes`, with optional names and colours per code.

        A class without a colour gets the conventional colour of its name (water blue,
        forest dark green...), else the palette's; classes that would share a colour are
        told apart by shades of it."""
        names = names or {}
        given = {code: normalize_color(color) for code, color in (colors or {}).items()
                 if color}
        taken = set(given.values())
        entries = []
        for index, code in enumerate(sorted(set(int(c) for c in codes))):
            name = str(names.get(code) or f"class {code}")
            color = given.get(code)
            if color is None:
                color = distinct_shade(conventional_color(name)
                                       or DEFAULT_PALETTE[index % len(DEFAULT_PALETTE)], taken)
                taken.add(color)
            entries.append(LandCoverClass(index=index, code=code, name=name, color=color))
        return cls(tuple(entries))


def conventional_color(name: str) -> str | None:
    """The conventional colour of a land-cover class name (see `CONVENTIONAL_COLORS`), or
    None when no word of the name is recognised or a recognised word is negated ("No
    cropland", "non-forest", "other than water")."""
    text = " " + " ".join(re.findall(r"[a-z]+", name.lower())) + " "
    keywords = [word for words, _ in CONVENTIONAL_COLORS for word in words]
    if any(f" {negation} {word}" in text for negation in NEGATIONS for word in keywords):
        return None
    for words, color in CONVENTIONAL_COLORS:
        if any(f" {word}" in text for word in words):
            return color
    return None


def distinct_shade(color: str, taken: set[str]) -> str:
    """`color`, or when it is taken the first untaken of its shades: darker, lighter, darker
    still..."""
    red, green, blue = (int(color[i:i + 2], 16) for i in (1, 3, 5))
    shade, step = color, 0
    while shade in taken and step < 8:
        step += 1
        amount = 0.22 * ((step + 1) // 2)
        target = 0 if step % 2 else 255
        shade = "#" + "".join(f"{round(value + (target - value) * amount):02x}"
                              for value in (red, green, blue))
    return shade


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
