"""Object-level stratified splits."""

import numpy as np
import pytest
from osgeo import ogr, osr

from lcfusion.engine.errors import LcfusionError
from lcfusion.engine.io.rasters import Grid
from lcfusion.engine.reference.classes import ClassTable
from lcfusion.engine.reference.polygons import ReferenceSpec, load_reference
from lcfusion.engine.reference.splits import ObjectSplit, SplitConfig, SplitReference, split_summary

CLASSES = ClassTable.build([1, 2, 3], names={1: "water", 2: "forest", 3: "crop"})


def objects(counts):
    """object_class indexed by object id (0 unused) for `counts` objects per class index."""
    classes = np.concatenate([[-1]] + [[c] * n for c, n in enumerate(counts)]).astype(np.int32)
    return classes, np.arange(1, classes.size)


def test_every_class_is_split_by_whole_objects_in_the_right_shares():
    object_class, present = objects([10, 5, 3])
    parts = ObjectSplit(SplitConfig(0.6, 0.2, 0.2, seed=4)).assign(object_class, present, CLASSES)
    assert parts[0] == -1
    for index, n in enumerate([10, 5, 3]):
        counts = np.bincount(parts[object_class == index], minlength=3)
        assert counts.sum() == n and (counts >= 1).all()
    assert np.bincount(parts[object_class == 0], minlength=3).tolist() == [6, 2, 2]
    assert np.bincount(parts[object_class == 2], minlength=3).tolist() == [1, 1, 1]


def test_the_split_is_seeded():
    object_class, present = objects([12, 12, 12])
    a = ObjectSplit(SplitConfig(seed=1)).assign(object_class, present, CLASSES)
    b = ObjectSplit(SplitConfig(seed=1)).assign(object_class, present, CLASSES)
    c = ObjectSplit(SplitConfig(seed=2)).assign(object_class, present, CLASSES)
    assert (a == b).all() and not (a == c).all()


def test_paper_preset_30_70():
    object_class, present = objects([10, 10, 10])
    parts = ObjectSplit(SplitConfig(0.3, 0.0, 0.7)).assign(object_class, present, CLASSES)
    assert np.bincount(parts[object_class == 1], minlength=3).tolist() == [3, 0, 7]


def test_too_few_objects_names_the_classes():
    object_class, present = objects([5, 2, 1])
    with pytest.raises(LcfusionError) as info:
        ObjectSplit(SplitConfig()).assign(object_class, present, CLASSES)
    message = str(info.value)
    assert info.value.parameter == "REFERENCE"
    assert "at least 3 polygons" in message
    assert "'forest' (code 2): 2" in message and "'crop' (code 3): 1" in message
    assert "'water'" not in message


def test_a_single_class_is_refused():
    object_class, present = objects([12])
    with pytest.raises(LcfusionError) as info:
        ObjectSplit(SplitConfig()).assign(object_class, present, ClassTable.build([4]))
    assert info.value.parameter == "CLASS_FIELD"
    assert "only one class ('class 4', code 4)" in info.value.message
    assert "at least two" in info.value.message


@pytest.mark.parametrize("fractions", [(0.5, 0.2, 0.2), (0.0, 0.5, 0.5), (1.2, -0.1, -0.1)])
def test_bad_fractions(fractions):
    with pytest.raises(LcfusionError):
        SplitConfig(*fractions)


def test_summary_counts_objects_and_pixels():
    object_class, present = objects([3, 3, 3])
    parts = ObjectSplit(SplitConfig(seed=0)).assign(object_class, present, CLASSES)
    pixels = np.arange(object_class.size) * 10
    summary = split_summary(parts, object_class, pixels, CLASSES)
    assert [row["name"] for row in summary] == ["water", "forest", "crop"]
    water = summary[0]
    assert water["train_objects"] + water["validation_objects"] + water["test_objects"] == 3
    assert water["train_pixels"] + water["validation_pixels"] + water["test_pixels"] == 60


def test_area_method_deals_sorted_polygons_in_turn():
    object_class, present = objects([9, 3, 3])
    area = np.arange(object_class.size, dtype=float)  # larger id = larger polygon
    config = SplitConfig(2 / 3, 0.0, 1 / 3, method="area")
    parts = ObjectSplit(config).assign(object_class, present, CLASSES, area)
    water = np.flatnonzero(object_class == 0)
    by_area = water[np.argsort(-area[water])]
    # every third polygon, in order of area, goes to test
    assert parts[by_area].tolist() == [0, 2, 0, 0, 2, 0, 0, 2, 0]
    again = ObjectSplit(SplitConfig(2 / 3, 0.0, 1 / 3, seed=9, method="area"))
    assert (again.assign(object_class, present, CLASSES, area) == parts).all()
    three = ObjectSplit(SplitConfig(method="area")).assign(object_class, present, CLASSES, area)
    assert sorted(three[object_class == 1].tolist()) == [0, 1, 2]


def test_unknown_method():
    with pytest.raises(LcfusionError, match="unknown split method"):
        SplitConfig(method="spatial")


def test_feature_parts_follow_the_layer_order_and_skip_unsplit_features(tmp_path):
    """Features without a class value or off the grid get no part; the others the part of
    their polygon, at their own position in the layer."""
    srs = osr.SpatialReference()
    srs.ImportFromEPSG(32631)
    path = str(tmp_path / "r.gpkg")
    source = ogr.GetDriverByName("GPKG").CreateDataSource(path)
    layer = source.CreateLayer("ref", srs, ogr.wkbPolygon)
    layer.CreateField(ogr.FieldDefn("code", ogr.OFTInteger))
    for code, col in ((1, 0), (None, 2), (2, 4), (1, 6), (2, 100), (2, 8)):
        feature = ogr.Feature(layer.GetLayerDefn())
        if code is not None:
            feature.SetField("code", code)
        x0, x1 = 500000 + 10 * col, 500000 + 10 * (col + 2)
        feature.SetGeometry(ogr.CreateGeometryFromWkt(
            f"POLYGON(({x0} 5000000,{x1} 5000000,{x1} 4999980,{x0} 4999980,{x0} 5000000))"))
        layer.CreateFeature(feature)
    source = None
    grid = Grid(srs.ExportToWkt(), (500000.0, 10.0, 0.0, 5000000.0, 0.0, -10.0), 20, 10)
    reference = load_reference(ReferenceSpec(path, "code"), grid, tmp_path)
    parts = ObjectSplit(SplitConfig(0.5, 0.0, 0.5, seed=3)).assign(
        reference.object_class, reference.present_objects(), reference.classes)
    feature_parts = SplitReference(reference, parts).feature_parts()
    assert len(feature_parts) == 6
    assert feature_parts[1] is None and feature_parts[4] is None  # no class value; off the grid
    assert sorted(feature_parts[i] for i in (0, 3)) == ["test", "train"]  # class 1
    assert sorted(feature_parts[i] for i in (2, 5)) == ["test", "train"]  # class 2
    assert [feature_parts[i] for i in (0, 2, 3, 5)] == [
        ("train", "validation", "test")[parts[o]] for o in (1, 2, 3, 5)]
