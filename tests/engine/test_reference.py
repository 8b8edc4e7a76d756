"""Reference polygons: class tables, rasterization, CRS handling, clear errors."""

import numpy as np
import pytest
from osgeo import ogr, osr

from lcfusion.engine.errors import LcfusionError
from lcfusion.engine.io.rasters import Grid
from lcfusion.engine.progress import NullReporter
from lcfusion.engine.reference.polygons import ReferenceSpec, load_reference

ogr.UseExceptions()


def utm(epsg=32631) -> osr.SpatialReference:
    srs = osr.SpatialReference()
    srs.ImportFromEPSG(epsg)
    srs.SetAxisMappingStrategy(osr.OAMS_TRADITIONAL_GIS_ORDER)
    return srs


def grid() -> Grid:
    return Grid(utm().ExportToWkt(), (500000.0, 10.0, 0.0, 5000000.0, 0.0, -10.0), 20, 10)


def box(col0, row0, col1, row1, dx=0.0):
    """A polygon covering pixel columns [col0, col1) and rows [row0, row1) of `grid()`."""
    x0, x1 = 500000 + 10 * col0 + dx, 500000 + 10 * col1 + dx
    y0, y1 = 5000000 - 10 * row0, 5000000 - 10 * row1
    return ogr.CreateGeometryFromWkt(
        f"POLYGON(({x0} {y0},{x1} {y0},{x1} {y1},{x0} {y1},{x0} {y0}))")


def write_polygons(path, rows, fields=(("code", ogr.OFTInteger),), srs=None, transform=None):
    driver = ogr.GetDriverByName("GPKG")
    source = driver.CreateDataSource(str(path))
    layer = source.CreateLayer("ref", srs or utm(), ogr.wkbPolygon)
    for name, kind in fields:
        layer.CreateField(ogr.FieldDefn(name, kind))
    for values, geometry in rows:
        feature = ogr.Feature(layer.GetLayerDefn())
        for (name, _), value in zip(fields, values, strict=True):
            if value is not None:
                feature.SetField(name, value)
        if transform is not None:
            geometry = geometry.Clone()
            geometry.Transform(transform)
        feature.SetGeometry(geometry)
        layer.CreateFeature(feature)
    source = None
    return str(path)


def test_integer_codes_objects_and_pixel_centres(tmp_path):
    path = write_polygons(tmp_path / "r.gpkg", [((5,), box(0, 0, 4, 3)), ((2,), box(10, 5, 12, 7)),
                                                ((5,), box(15, 0, 17, 2))])
    ref = load_reference(ReferenceSpec(path, "code"), grid(), tmp_path)
    assert ref.classes.codes == [2, 5]
    assert ref.n_objects == 3
    assert ref.object_pixels.tolist() == [0, 12, 4, 4]
    assert ref.object_class.tolist() == [-1, 1, 0, 1]
    # pixel (row 6, col 11) belongs to object 2 (code 2, index 0)
    hit = (ref.pixels.rows == 6) & (ref.pixels.cols == 11)
    assert ref.pixels.objects[hit].tolist() == [2]
    assert set(ref.pixel_classes().tolist()) == {0, 1}


def test_text_classes_get_sorted_codes_and_names(tmp_path):
    fields = (("landcover", ogr.OFTString),)
    path = write_polygons(tmp_path / "r.gpkg", [(("wheat",), box(0, 0, 2, 2)),
                                                (("forêt",), box(4, 0, 6, 2)),
                                                (("wheat",), box(8, 0, 10, 2))], fields)
    ref = load_reference(ReferenceSpec(path, "landcover", colors={"wheat": "#ffcc00"}),
                         grid(), tmp_path)
    assert [(c.code, c.name) for c in ref.classes] == [(1, "forêt"), (2, "wheat")]
    assert ref.classes.by_code(2).color == "#ffcc00"


def test_text_holding_whole_numbers_gives_those_codes(tmp_path):
    """A text field of codes (as a CSV or shapefile import leaves them) keeps the user's codes:
    numbered as names, "10" would become code 1 and "2" code 2 in alphabetical order."""
    fields = (("code", ogr.OFTString), ("colour", ogr.OFTString))
    path = write_polygons(tmp_path / "r.gpkg", [(("10", "#ff0000"), box(0, 0, 2, 2)),
                                                ((" 2", None), box(4, 0, 6, 2)),
                                                (("10", None), box(8, 0, 10, 2))], fields)
    ref = load_reference(ReferenceSpec(path, "code", color_field="colour",
                                       colors={"2": "#0000ff"}), grid(), tmp_path)
    assert [(c.code, c.name, c.color) for c in ref.classes] == [
        (2, "class 2", "#0000ff"), (10, "class 10", "#ff0000")]
    assert ref.object_class.tolist() == [-1, 1, 0, 1]


def test_names_from_a_name_field(tmp_path):
    fields = (("code", ogr.OFTInteger), ("label", ogr.OFTString))
    path = write_polygons(tmp_path / "r.gpkg", [((1, "water"), box(0, 0, 2, 2)),
                                                ((3, "urban"), box(4, 0, 6, 2))], fields)
    ref = load_reference(ReferenceSpec(path, "code", name_field="label"), grid(), tmp_path)
    assert ref.classes.names == ["water", "urban"]


def test_colours_from_the_colour_field_then_the_style(tmp_path):
    fields = (("code", ogr.OFTInteger), ("colour", ogr.OFTString))
    path = write_polygons(tmp_path / "r.gpkg", [((1, "#00FF00"), box(0, 0, 2, 2)),
                                                ((2, None), box(4, 0, 6, 2)),
                                                ((3, "green"), box(8, 0, 10, 2))], fields)
    warnings = []

    class Recorder(NullReporter):
        def log(self, message, level="info"):
            warnings.append(message) if level == "warning" else None

    spec = ReferenceSpec(path, "code", color_field="colour", colors={"1": "#ff0000",
                                                                      "2": "#0000ff"})
    ref = load_reference(spec, grid(), tmp_path, Recorder())
    assert [c.color for c in ref.classes][:2] == ["#00ff00", "#0000ff"]
    assert ref.classes.by_code(3).color.startswith("#")
    assert any("'green' of class 3 is not #rrggbb" in w for w in warnings)


def test_polygons_in_another_crs_are_reprojected(tmp_path):
    wgs84 = osr.SpatialReference()
    wgs84.ImportFromEPSG(4326)
    wgs84.SetAxisMappingStrategy(osr.OAMS_TRADITIONAL_GIS_ORDER)
    to_wgs84 = osr.CoordinateTransformation(utm(), wgs84)
    path = write_polygons(tmp_path / "r.gpkg", [((1,), box(2, 2, 6, 5))], srs=wgs84,
                          transform=to_wgs84)
    ref = load_reference(ReferenceSpec(path, "code"), grid(), tmp_path)
    assert ref.object_pixels[1] == 12
    assert sorted(set(ref.pixels.rows.tolist())) == [2, 3, 4]


def test_missing_class_field_lists_the_fields(tmp_path):
    path = write_polygons(tmp_path / "r.gpkg", [((1,), box(0, 0, 2, 2))])
    with pytest.raises(LcfusionError, match=r"'klass' is not in the reference layer "
                                            r"\(its fields: code\)") as info:
        load_reference(ReferenceSpec(path, "klass"), grid(), tmp_path)
    assert info.value.parameter == "CLASS_FIELD"


def test_no_overlap_is_explained(tmp_path):
    path = write_polygons(tmp_path / "r.gpkg", [((1,), box(0, 0, 2, 2, dx=1e5))])
    with pytest.raises(LcfusionError, match="none of the 1 polygons overlaps the rasters") as e:
        load_reference(ReferenceSpec(path, "code"), grid(), tmp_path)
    assert e.value.parameter == "REFERENCE"


def test_non_integer_float_codes_and_null_values(tmp_path):
    fields = (("code", ogr.OFTReal),)
    good = write_polygons(tmp_path / "g.gpkg", [((2.0,), box(0, 0, 2, 2)),
                                                ((None,), box(4, 0, 6, 2))], fields)
    ref = load_reference(ReferenceSpec(good, "code"), grid(), tmp_path)
    assert ref.classes.codes == [2] and ref.n_objects == 1
    bad = write_polygons(tmp_path / "b.gpkg", [((2.5,), box(0, 0, 2, 2))], fields)
    with pytest.raises(LcfusionError, match="non-integer value 2.5"):
        load_reference(ReferenceSpec(bad, "code"), grid(), tmp_path)


def test_a_class_field_null_everywhere_is_named(tmp_path):
    path = write_polygons(tmp_path / "r.gpkg", [((None,), box(0, 0, 2, 2)),
                                                ((None,), box(4, 0, 6, 2))])
    with pytest.raises(LcfusionError) as error:
        load_reference(ReferenceSpec(path, "code"), grid(), tmp_path)
    assert error.value.parameter == "CLASS_FIELD"
    assert "'code' is empty (NULL) in all 2 features" in error.value.message


def test_objects_without_pixels_are_dropped(tmp_path):
    # a sliver narrower than a pixel that contains no pixel centre
    sliver = ogr.CreateGeometryFromWkt("POLYGON((500001 4999999,500004 4999999,500004 4999991,"
                                       "500001 4999991,500001 4999999))")
    path = write_polygons(tmp_path / "r.gpkg", [((1,), box(4, 4, 6, 6)), ((1,), sliver)])
    ref = load_reference(ReferenceSpec(path, "code"), grid(), tmp_path)
    assert ref.present_objects().tolist() == [1]


def test_every_labelled_pixel_matches_a_reference_burn(tmp_path):
    rng = np.random.default_rng(1)
    rows = []
    for i in range(6):
        c, r = rng.integers(0, 16), rng.integers(0, 7)
        rows.append(((int(i % 3) + 1,), box(c, r, c + 3, r + 2)))
    path = write_polygons(tmp_path / "r.gpkg", rows)
    ref = load_reference(ReferenceSpec(path, "code"), grid(), tmp_path)
    assert len(ref.pixels) == int(ref.object_pixels.sum()) > 0


def _overlapping_polygons(tmp_path):
    """1 and 2 (other classes) share 4 pixels; 4 shares 8 pixels with 3 (same class);
    5 lies inside 1 (same class); 6 covers no pixel centre."""
    sliver = ogr.CreateGeometryFromWkt("POLYGON((500181 4999999,500184 4999999,500184 4999991,"
                                       "500181 4999991,500181 4999999))")
    fields = (("code", ogr.OFTInteger), ("part", ogr.OFTString))
    return write_polygons(tmp_path / "r.gpkg", [
        ((1, "train"), box(0, 0, 4, 4)), ((2, "test"), box(2, 2, 6, 6)),
        ((1, "train"), box(10, 0, 14, 4)), ((1, "test"), box(12, 0, 16, 4)),
        ((1, "test"), box(0, 0, 1, 1)), ((1, "test"), sliver)], fields)


class _Log(NullReporter):
    def __init__(self):
        self.lines = []

    def log(self, message, level="info"):
        self.lines.append((level, message))


def test_pixels_of_overlapping_classes_are_left_out_and_said(tmp_path):
    log = _Log()
    ref = load_reference(ReferenceSpec(_overlapping_polygons(tmp_path), "code"), grid(),
                         tmp_path, log)
    # ambiguous pixels dropped; a same-class overlap goes to the first polygon
    assert ref.object_pixels.tolist() == [0, 12, 12, 16, 8, 0, 0]
    assert len(ref.pixels) == 48
    hit = (ref.pixels.rows == 0) & (ref.pixels.cols == 0)
    assert ref.pixels.objects[hit].tolist() == [1]
    assert not ((ref.pixels.rows == 2) & (ref.pixels.cols == 2)).any()
    warnings = [m for level, m in log.lines if level == "warning"]
    assert any("4 pixels" in m and "2 polygons" in m and "different classes" in m
               and "REFERENCE" in m for m in warnings), warnings
    infos = [m for level, m in log.lines if level == "info"]
    assert any("1 of 6 polygons covers no pixel centre" in m for m in infos), infos
    assert any("1 of 6 polygons lies inside other polygons" in m for m in infos), infos


def test_a_part_keeps_the_pixels_it_has_in_the_whole_layer(tmp_path):
    path = _overlapping_polygons(tmp_path)
    (tmp_path / "whole").mkdir()
    whole = load_reference(ReferenceSpec(path, "code"), grid(), tmp_path / "whole")
    test = load_reference(ReferenceSpec(path, "code", part_field="part", part="test"), grid(),
                          tmp_path)
    in_test = np.isin(whole.object_feature[whole.pixels.objects], [1, 3, 4, 5])
    expected = set(zip(whole.pixels.rows[in_test].tolist(), whole.pixels.cols[in_test].tolist(),
                       strict=True))
    assert set(zip(test.pixels.rows.tolist(), test.pixels.cols.tolist(), strict=True)) == expected
    assert len(test.pixels) == 20
