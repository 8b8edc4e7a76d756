"""Tests of the deterministic sample-scene generator (files, determinism, designed properties)."""

from __future__ import annotations

import hashlib
import json
import math
from collections import Counter
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import rasterio
from numpy.lib.stride_tricks import sliding_window_view
from osgeo import gdal, ogr
from rasterio.enums import Compression
from rasterio.features import rasterize
from rasterio.transform import Affine, from_origin
from sklearn.ensemble import RandomForestClassifier

from lcfusion.engine.io.rasters import block_size_for
from lcfusion.engine.sample_scene import (
    BARE_SOIL,
    BUILT_UP,
    CONTEXT_CLASSES,
    CONTEXT_TWINS,
    GRASSLAND,
    INDUSTRIAL,
    MS_BANDS,
    ORCHARD,
    RESIDENTIAL,
    S1_BANDS,
    S2_BANDS,
    SAMPLE_CLASSES,
    SUMMER_CROP,
    WATER,
    WET_MEADOW,
    WINTER_CROP,
    WOODED_PASTURE,
    SampleScene,
    SampleSceneConfig,
    generate_sample_scene,
    per_pixel_ceiling,
)

SMALL = SampleSceneConfig(width=96, height=96, n_s2_dates=6, n_s1_dates=8, seed=3)
BLUE, RED, NIR = S2_BANDS.index("B02"), S2_BANDS.index("B04"), S2_BANDS.index("B08")
CLOUD_BLUE_DN = 2200


@pytest.fixture(scope="module")
def scene(tmp_path_factory: pytest.TempPathFactory) -> SampleScene:
    return generate_sample_scene(tmp_path_factory.mktemp("scene"), SMALL)


#: The smallest context scene (12 classes need about 120 x 120 pixels), and a second one with
#: other parcels to test on.
CONTEXT = SampleSceneConfig(width=120, height=120, n_s2_dates=6, n_s1_dates=8, seed=3,
                            context=True)


@pytest.fixture(scope="module")
def context_scenes(tmp_path_factory: pytest.TempPathFactory) -> tuple[SampleScene, SampleScene]:
    return tuple(
        generate_sample_scene(tmp_path_factory.mktemp("context"), replace(CONTEXT, seed=seed))
        for seed in (CONTEXT.seed, CONTEXT.seed + 1)
    )


@pytest.fixture(scope="module")
def truth(scene: SampleScene) -> np.ndarray:
    with rasterio.open(scene.truth_path) as src:
        return src.read(1)


def read(path: Path) -> np.ndarray:
    with rasterio.open(path) as src:
        return src.read().astype(np.float64)


def class_mean(data: np.ndarray, truth: np.ndarray, code: int, valid=None) -> np.ndarray:
    """Per-band mean of (bands, rows, cols) `data` over the pixels of class `code`."""
    mask = truth == code if valid is None else (truth == code) & valid
    assert mask.sum() > 50
    return data[:, mask].mean(axis=1)


def relative_difference(first: np.ndarray, second: np.ndarray) -> float:
    return float(np.max(np.abs(first - second) / ((np.abs(first) + np.abs(second)) / 2)))


def s2_clear(scene: SampleScene) -> list[tuple[np.ndarray, np.ndarray]]:
    """Per date: S2 reflectance and the mask of valid, cloud-free pixels."""
    clouds = read(scene.s2_cloud_mask_path)
    out = []
    for index, path in enumerate(scene.s2_paths):
        data = read(path)
        out.append((data / 10000, (data != 0).all(axis=0) & (clouds[index] == 0)))
    return out


def assert_same_s2(scene: SampleScene, truth: np.ndarray, first: int, second: int) -> None:
    """S2 class means within 3 % on every date where clouds hide at most a quarter of each class.

    Where clouds hide more, the few parcels left make the means a sample of parcel variation.
    """
    compared = 0
    for data, clear in s2_clear(scene):
        if min(clear[truth == code].mean() for code in (first, second)) < 0.75:
            continue
        compared += 1
        means = (class_mean(data, truth, code, clear) for code in (first, second))
        assert relative_difference(*means) < 0.03
    assert compared >= SMALL.n_s2_dates - 3


def pan_blocks(scene: SampleScene) -> np.ndarray:
    """PAN reshaped to (rows, ratio, cols, ratio): one ratio x ratio block per MS pixel."""
    ratio = SMALL.pan_ratio
    pan = read(scene.pan_path)[0]
    return pan.reshape(SMALL.height, ratio, SMALL.width, ratio)


def features(scene: SampleScene) -> list[tuple[int, str, str]]:
    dataset = ogr.Open(str(scene.reference_path))
    layer = dataset.GetLayerByName(scene.reference_layer)
    return [
        (f.GetField("class_id"), f.GetField("class_name"), f.GetGeometryRef().ExportToWkt())
        for f in layer
    ]


def test_files_metadata_and_grids(scene: SampleScene) -> None:
    expected = {"ms.tif", "pan.tif", "truth.tif", "reference.gpkg", "s2_cloudmask.tif"}
    expected |= {p.name for p in scene.s2_paths + scene.s1_paths}
    assert {p.name for p in scene.folder.iterdir()} == expected
    assert len(scene.s2_paths) == len(scene.s2_dates) == SMALL.n_s2_dates
    assert len(scene.s1_paths) == len(scene.s1_dates) == SMALL.n_s1_dates
    assert list(scene.s2_dates) == sorted(scene.s2_dates)
    assert list(scene.s1_dates) == sorted(scene.s1_dates)
    assert not set(scene.s1_dates) & set(scene.s2_dates)
    assert all(p.name == f"s2_{d}.tif" for p, d in zip(scene.s2_paths, scene.s2_dates, strict=True))
    assert scene.classes == SAMPLE_CLASSES and scene.classes.codes == list(range(1, 9))

    grid = from_origin(SMALL.origin_x, SMALL.origin_y, SMALL.pixel_size, SMALL.pixel_size)
    specs = [(p, 10, "uint16", 0, S2_BANDS) for p in scene.s2_paths]
    specs += [(p, 2, "float32", math.nan, S1_BANDS) for p in scene.s1_paths]
    specs += [
        (scene.ms_path, 4, "uint16", 0, MS_BANDS),
        (scene.truth_path, 1, "uint8", 0, ("class",)),
        (scene.s2_cloud_mask_path, SMALL.n_s2_dates, "uint8", None, scene.s2_dates),
    ]
    for path, count, dtype, nodata, descriptions in specs:
        with rasterio.open(path) as src:
            assert (src.count, src.dtypes[0], src.descriptions) == (count, dtype, descriptions)
            assert (src.width, src.height, src.transform) == (SMALL.width, SMALL.height, grid)
            assert src.crs.to_epsg() == SMALL.epsg
            # The writer's tiles (rasterio 1.4's profile["tiled"] is False for one-tile rasters).
            assert src.compression == Compression.deflate
            assert src.block_shapes[0] == block_size_for(SMALL.width, SMALL.height)[::-1]
            if nodata is None or not math.isnan(nodata):
                assert src.nodata == nodata
            else:
                assert math.isnan(src.nodata)
    with rasterio.open(scene.pan_path) as src:
        ratio = SMALL.pan_ratio
        assert (src.count, src.dtypes[0], src.nodata) == (1, "uint16", 0)
        assert (src.width, src.height) == (SMALL.width * ratio, SMALL.height * ratio)
        assert src.transform == grid * Affine.scale(1 / ratio)
        assert src.transform.a == SMALL.pixel_size / ratio and src.transform.c == SMALL.origin_x
        assert src.transform.f == SMALL.origin_y and src.crs.to_epsg() == SMALL.epsg
        assert src.compression == Compression.deflate and src.block_shapes[0] == (256, 256)
        assert src.tags()["ACQUISITION_DATE"] == scene.pan_date
    with rasterio.open(scene.truth_path) as src:
        colormap = src.colormap(1)
        assert src.block_shapes[0] == block_size_for(SMALL.width, SMALL.height)[::-1]
    for entry in SAMPLE_CLASSES:
        assert colormap[entry.code] == (*entry.rgb(), 255)
    assert not list(scene.folder.glob("*.aux.xml"))


def test_same_config_gives_identical_files(tmp_path: Path, scene: SampleScene) -> None:
    def digests(folder: Path) -> dict[str, str]:
        return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in folder.iterdir()}

    again = generate_sample_scene(tmp_path / "again", SMALL)
    assert len(digests(scene.folder)) == 5 + SMALL.n_s2_dates + SMALL.n_s1_dates
    assert digests(again.folder) == digests(scene.folder)
    assert features(again) == features(scene)
    assert gdal.GetConfigOption("OGR_CURRENT_DATE") is None  # the fixed GeoPackage date is undone

    other = generate_sample_scene(tmp_path / "other", replace(SMALL, seed=SMALL.seed + 1))
    other_digests, own = digests(other.folder), digests(scene.folder)
    assert all(other_digests[name] != own[name] for name in own)
    assert features(other) != features(scene)


def test_reference_polygons_lie_inside_parcels_of_their_class(
    scene: SampleScene, truth: np.ndarray
) -> None:
    dataset = ogr.Open(str(scene.reference_path))
    layer = dataset.GetLayerByName("reference")
    assert scene.reference_layer == "reference"
    assert layer.GetSpatialRef().GetAuthorityCode(None) == str(SMALL.epsg)
    definition = layer.GetLayerDefn()
    fields = {
        definition.GetFieldDefn(i).GetName(): definition.GetFieldDefn(i).GetType()
        for i in range(definition.GetFieldCount())
    }
    assert fields == {"class_id": ogr.OFTInteger, "class_name": ogr.OFTString,
                      "class_color": ogr.OFTString}

    with rasterio.open(scene.truth_path) as src:
        transform, bounds = src.transform, src.bounds
    size = SMALL.pixel_size
    counts: Counter[int] = Counter()
    coverage = np.zeros(truth.shape, dtype=np.int32)
    for feature in layer:
        code = feature.GetField("class_id")
        assert feature.GetField("class_name") == SAMPLE_CLASSES.by_code(code).name
        assert feature.GetField("class_color") == SAMPLE_CLASSES.by_code(code).color
        counts[code] += 1
        geometry = feature.GetGeometryRef()
        min_x, max_x, min_y, max_y = geometry.GetEnvelope()
        assert geometry.GetArea() == pytest.approx((max_x - min_x) * (max_y - min_y))
        assert bounds.left <= min_x < max_x <= bounds.right
        assert bounds.bottom <= min_y < max_y <= bounds.top
        edges = [
            (SMALL.origin_y - max_y) / size,
            (SMALL.origin_y - min_y) / size,
            (min_x - SMALL.origin_x) / size,
            (max_x - SMALL.origin_x) / size,
        ]
        assert edges == pytest.approx([round(e) for e in edges])  # on pixel edges
        top, bottom, left, right = (round(e) for e in edges)
        burned = rasterize([json.loads(geometry.ExportToJson())], truth.shape, transform=transform)
        assert burned.sum() == (bottom - top) * (right - left) >= 36
        assert (truth[burned == 1] == code).all()
        coverage += burned
        grown = truth[top - 1 : bottom + 1, left - 1 : right + 1]  # the polygon plus one pixel
        assert grown.shape == (bottom - top + 2, right - left + 2) and (grown == code).all()
    assert coverage.max() == 1
    assert set(counts) == set(SAMPLE_CLASSES.codes)
    assert min(counts.values()) >= 5
    shares = np.bincount(truth.ravel(), minlength=9)[1:] / truth.size
    assert shares.min() > 0.04


def test_winter_and_summer_crops_differ_only_in_phenology(
    scene: SampleScene, truth: np.ndarray
) -> None:
    ms = read(scene.ms_path)
    winter, summer = (class_mean(ms, truth, c) for c in (WINTER_CROP, SUMMER_CROP))
    assert relative_difference(winter, summer) < 0.03
    blocks = pan_blocks(scene).mean(axis=(1, 3))[None]
    winter, summer = (class_mean(blocks, truth, c) for c in (WINTER_CROP, SUMMER_CROP))
    assert relative_difference(winter, summer) < 0.03
    for path in scene.s1_paths:
        s1 = read(path)
        winter, summer = (class_mean(s1, truth, c) for c in (WINTER_CROP, SUMMER_CROP))
        assert np.abs(winter - summer).max() < 0.5

    differences = []
    for data, clear in s2_clear(scene):
        ndvi = ((data[NIR] - data[RED]) / np.maximum(data[NIR] + data[RED], 1e-6))[None]
        winter, summer = (class_mean(ndvi, truth, c, clear) for c in (WINTER_CROP, SUMMER_CROP))
        differences.append(float(winter[0] - summer[0]))
    assert max(differences) > 0.2  # winter crop greener in spring
    assert min(differences) < -0.2  # summer crop greener in summer


def test_wet_meadow_differs_from_grassland_only_in_winter_radar(
    scene: SampleScene, truth: np.ndarray
) -> None:
    assert_same_s2(scene, truth, GRASSLAND, WET_MEADOW)
    ms = read(scene.ms_path)
    assert relative_difference(*(class_mean(ms, truth, c) for c in (GRASSLAND, WET_MEADOW))) < 0.03

    vv_differences, vh_differences = [], []
    for path in scene.s1_paths:
        s1 = read(path)
        grass, meadow = (class_mean(s1, truth, c) for c in (GRASSLAND, WET_MEADOW))
        vv_differences.append(grass[0] - meadow[0])
        vh_differences.append(grass[1] - meadow[1])
    vv, vh = np.array(vv_differences), np.array(vh_differences)
    months = np.array([int(day[5:7]) for day in scene.s1_dates])
    winter = (months <= 3) | (months == 12)
    summer = (months >= 5) & (months <= 10)
    assert winter.any() and summer.any()
    assert (vv[winter] > 3).all() and (vh[winter] > 1.5).all()
    assert (np.abs(vv[summer]) < 1).all() and (np.abs(vh[summer]) < 1).all()


def test_built_up_differs_from_bare_soil_only_in_pan_texture(
    scene: SampleScene, truth: np.ndarray
) -> None:
    ms = read(scene.ms_path)
    assert relative_difference(*(class_mean(ms, truth, c) for c in (BUILT_UP, BARE_SOIL))) < 0.03
    assert_same_s2(scene, truth, BUILT_UP, BARE_SOIL)
    for path in scene.s1_paths:
        s1 = read(path)
        built, bare = (class_mean(s1, truth, c) for c in (BUILT_UP, BARE_SOIL))
        assert np.abs(built - bare).max() < 0.5

    blocks = pan_blocks(scene)
    means = blocks.mean(axis=(1, 3))[None]
    assert relative_difference(*(class_mean(means, truth, c) for c in (BUILT_UP, BARE_SOIL))) < 0.03
    texture = blocks.std(axis=(1, 3))[None]
    built, bare = (class_mean(texture, truth, c)[0] for c in (BUILT_UP, BARE_SOIL))
    assert built > 3 * bare


def test_cloud_mask_matches_bright_pixels_and_swath_gap_is_empty(scene: SampleScene) -> None:
    clouds = read(scene.s2_cloud_mask_path).astype(bool)
    cover = clouds.mean(axis=(1, 2))
    cloudy = np.flatnonzero(cover > 0)
    assert len(cloudy) in (2, 3)
    assert ((cover[cloudy] > 0.09) & (cover[cloudy] < 0.31)).all()

    gap_dates = []
    for index, path in enumerate(scene.s2_paths):
        data = read(path)
        empty = data == 0
        valid = ~empty.any(axis=0)
        assert (empty.all(axis=0) == ~valid).all()  # no-data is 0 in every band at once
        bright = data[BLUE] > CLOUD_BLUE_DN
        assert np.array_equal(bright & valid, clouds[index] & valid)
        assert not clouds[index][~valid].any()
        if not valid.all():
            gap_dates.append(index)
            columns = np.flatnonzero(~valid.all(axis=0))
            assert (~valid[:, columns]).all()
            assert len(columns) == round(0.1 * SMALL.width)
            assert columns[0] == 0 or columns[-1] == SMALL.width - 1
            assert np.array_equal(columns, np.arange(columns[0], columns[-1] + 1))
    assert len(gap_dates) == 1 and gap_dates[0] not in cloudy
    assert (read(scene.ms_path) > 0).all() and (read(scene.pan_path) > 0).all()
    assert all(np.isfinite(read(p)).all() for p in scene.s1_paths)


def test_default_scene_is_complete(tmp_path: Path) -> None:
    scene = generate_sample_scene(tmp_path)
    assert len(scene.s2_dates) == 9 and len(scene.s1_dates) == 12
    assert not set(scene.s1_dates) & set(scene.s2_dates)
    with rasterio.open(scene.truth_path) as src:
        assert (src.width, src.height) == (160, 160)
        assert set(np.unique(src.read(1))) == set(SAMPLE_CLASSES.codes)
    counts = Counter(class_id for class_id, _, _ in features(scene))
    assert set(counts) == set(SAMPLE_CLASSES.codes) and min(counts.values()) >= 5


def test_too_small_grid_is_rejected(tmp_path: Path) -> None:
    folder = tmp_path / "small"
    with pytest.raises(ValueError, match="minimum is 40"):
        generate_sample_scene(folder, SampleSceneConfig(width=20, height=20))
    assert not folder.exists()


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"n_s2_dates": 3}, "n_s2_dates"),
        ({"n_s1_dates": 2}, "n_s1_dates"),
        ({"pan_ratio": 1}, "pan_ratio"),
        ({"label_fraction": 0.0}, "label_fraction"),
        ({"width": 8}, "at least 16"),
    ],
)
def test_invalid_config_is_rejected(tmp_path: Path, change: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        generate_sample_scene(tmp_path, replace(SMALL, **change))


def test_context_scene_holds_the_twin_classes_as_mosaics(
    context_scenes: tuple[SampleScene, SampleScene]
) -> None:
    scene = context_scenes[0]
    assert scene.classes == CONTEXT_CLASSES and scene.classes.codes == list(range(1, 13))
    assert [scene.classes.by_code(c).name for c in (ORCHARD, WOODED_PASTURE, RESIDENTIAL,
                                                    INDUSTRIAL)] == [
        "orchard", "wooded pasture", "residential", "industrial"]
    truth = read(scene.truth_path)[0]
    assert set(np.unique(truth)) == set(range(1, 13))
    counts = Counter(class_id for class_id, _, _ in features(scene))
    assert set(counts) == set(range(1, 13)) and min(counts.values()) >= 5
    with rasterio.open(scene.truth_path) as src:
        assert set(src.colormap(1)) >= set(range(1, 13))

    # Each context parcel is a mosaic of two materials, dark and bright in the MS red band:
    # trees over sward (a third trees), roofs among lawns (half roofs).
    red = read(scene.ms_path)[MS_BANDS.index("Red")] / 10000
    for code, bright_material, share in ((ORCHARD, False, 1 / 3), (WOODED_PASTURE, False, 1 / 3),
                                         (RESIDENTIAL, True, 1 / 2), (INDUSTRIAL, True, 1 / 2)):
        values = red[truth == code]
        threshold = (np.percentile(values, 5) + np.percentile(values, 95)) / 2
        first = values > threshold if bright_material else values < threshold
        assert first.mean() == pytest.approx(share, abs=0.05)
        assert values[first].std() < 0.2 * abs(values[first].mean() - values[~first].mean())


def local_variance(image: np.ndarray) -> np.ndarray:
    """Per band, the variance of each pixel's 3 x 3 window (mirrored at the edges)."""
    padded = np.pad(image, ((0, 0), (1, 1), (1, 1)), mode="reflect")
    return sliding_window_view(padded, (3, 3), axis=(1, 2)).var(axis=(-1, -2))


def pair_features(scene: SampleScene, pair: tuple[int, int], kind: str
                  ) -> tuple[np.ndarray, np.ndarray]:
    """Features and classes of the pixels of `pair` whose 3 x 3 window lies in their class:
    per-pixel values of a source (s2: every band and date; s1s2: with the S1 dates; panms:
    the MS bands and the 4 x 4 PAN pixels inside the MS pixel), or texture (the MS bands'
    local variance)."""
    truth = read(scene.truth_path)[0]
    ms = read(scene.ms_path)
    s2 = np.concatenate([read(p) for p in scene.s2_paths])
    ratio = CONTEXT.pan_ratio
    pan = read(scene.pan_path)[0].reshape(CONTEXT.height, ratio, CONTEXT.width, ratio)
    values = {"s2": s2,
              "s1s2": np.concatenate([s2, *(read(p) for p in scene.s1_paths)]),
              "panms": np.concatenate([ms, pan.transpose(1, 3, 0, 2).reshape(-1, *truth.shape)]),
              "texture": local_variance(ms)}[kind]
    inside = (local_variance(truth[None])[0] == 0) & np.isin(truth, pair)
    return values[:, inside].T, truth[inside]


def balanced_accuracy(train: tuple, test: tuple) -> float:
    forest = RandomForestClassifier(n_estimators=50, min_samples_leaf=5, random_state=0,
                                    n_jobs=1).fit(*train)
    predicted, reference = forest.predict(test[0]), test[1]
    return float(np.mean([(predicted[reference == c] == c).mean() for c in np.unique(reference)]))


@pytest.mark.parametrize("pair", CONTEXT_TWINS, ids=["orchard-pasture", "residential-industrial"])
def test_context_twins_are_alike_per_pixel_and_told_apart_by_local_variance(
    context_scenes: tuple[SampleScene, SampleScene], pair: tuple[int, int]
) -> None:
    """A forest learns the pair on one scene and is tested on another scene's parcels: on any
    source's pixel values it guesses; on the local variance it tells the twins apart."""
    first, second = context_scenes
    for kind in ("s2", "s1s2", "panms"):
        accuracy = balanced_accuracy(pair_features(first, pair, kind),
                                     pair_features(second, pair, kind))
        assert abs(accuracy - 0.5) < 0.08, (kind, accuracy)
    texture = balanced_accuracy(pair_features(first, pair, "texture"),
                                pair_features(second, pair, "texture"))
    assert texture > 0.7


def test_context_scene_is_deterministic_and_differs_from_the_plain_one(
    tmp_path: Path, context_scenes: tuple[SampleScene, SampleScene]
) -> None:
    def digests(folder: Path) -> dict[str, str]:
        return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in folder.iterdir()}

    again = generate_sample_scene(tmp_path / "again", CONTEXT)
    assert digests(again.folder) == digests(context_scenes[0].folder)
    assert features(again) == features(context_scenes[0])
    plain = generate_sample_scene(tmp_path / "plain", replace(CONTEXT, context=False))
    assert digests(plain.folder)["truth.tif"] != digests(again.folder)["truth.tif"]
    assert plain.classes == SAMPLE_CLASSES


def test_per_pixel_ceiling_counts_only_the_larger_class_of_each_twin_pair() -> None:
    support = {WATER: 60, GRASSLAND: 30, WET_MEADOW: 10, ORCHARD: 5, WOODED_PASTURE: 15}
    assert per_pixel_ceiling(support, "s2") == pytest.approx((120 - 10 - 5) / 120)
    assert per_pixel_ceiling(support, "s1s2") == pytest.approx((120 - 5) / 120)
    assert per_pixel_ceiling({WATER: 7, BUILT_UP: 3}, "s2") == 1.0
    with pytest.raises(ValueError, match="at least one pixel"):
        per_pixel_ceiling({}, "s2")


def test_too_small_context_grid_is_rejected(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"minimum is 60 .* 12 classes.* 120x120"):
        generate_sample_scene(tmp_path, replace(CONTEXT, width=96, height=96))


def test_engine_command_writes_the_context_scene(tmp_path: Path,
                                                 capsys: pytest.CaptureFixture) -> None:
    from lcfusion.engine.cli import main

    assert main(["sample-scene", str(tmp_path), "--size", "120", "--seed", "3", "--context"]) == 0
    assert "sample scene written" in capsys.readouterr().err
    with rasterio.open(tmp_path / "truth.tif") as src:
        assert set(np.unique(src.read(1))) == set(CONTEXT_CLASSES.codes)


def test_documented_per_pixel_ceilings_of_the_default_context_scene(tmp_path: Path) -> None:
    """The figures of the module's docstring and the README: all labelled pixels of the
    default context scene."""
    scene = generate_sample_scene(tmp_path, SampleSceneConfig(context=True))
    with rasterio.open(scene.truth_path) as src:
        shape, transform = src.shape, src.transform
    support: Counter[int] = Counter()
    for code, _, wkt in features(scene):
        polygon = ogr.CreateGeometryFromWkt(wkt)
        support[code] += int(rasterize([json.loads(polygon.ExportToJson())], shape,
                                       transform=transform).sum())
    ceilings = {source: round(per_pixel_ceiling(support, source), 3)
                for source in ("s2", "s1s2", "panms")}
    assert ceilings == {"s2": 0.686, "s1s2": 0.780, "panms": 0.698}
