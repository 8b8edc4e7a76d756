"""FG-UNET on real Sentinel-2 data: Slovenia, 5 scenes x 13 bands, LULC polygons.

Classes 0 (no class) and 1 (cultivated land: 11 pixels in 4 polygons) are filtered out, as a
user would with a layer filter. The split is the FG-UNET paper's: per class, polygons sorted by
area, every third one to test.
"""

import numpy as np
import pytest
import rasterio
from helpers import shared_data
from osgeo import gdal

from lcfusion.engine.families.fgunet.commands import classify_fgunet, train_fgunet
from lcfusion.engine.jobs import Job, write_job
from lcfusion.engine.modelfile.header import read_metadata
from lcfusion.engine.progress import NullReporter

pytestmark = [pytest.mark.slow, pytest.mark.realdata]
gdal.UseExceptions()
SCENES = (5, 2, 1, 4, 3)  # date order (scene 5 is 2015-07-11, scene 3 is 2015-09-09)
SETTINGS = {"epochs": 4, "patch_size": 32, "batch_size": 8, "patches_per_epoch": 128,
            "validation_patches": 16, "learning_rate": 3e-4, "max_shift": 8,
            "tile_size": 128, "class_weighting": "sqrt"}


@pytest.fixture(scope="module")
def slovenia(tmp_path_factory):
    folder = tmp_path_factory.mktemp("slovenia")
    source = shared_data("slovenia_s2", "lulc_reference.gpkg")
    reference = folder / "reference.gpkg"
    gdal.VectorTranslate(str(reference), str(source), format="GPKG",
                         where="LULC_ID NOT IN (0, 1)")
    scenes = [str(shared_data("slovenia_s2", f"s2_scene_{i}.tif")) for i in SCENES]
    model = folder / "fgunet.lcfusion"
    job = write_job(folder / "train", "train-fgunet", inputs={"series": {"paths": scenes}},
                    reference={"path": str(reference), "class_field": "LULC_ID",
                               "name_field": "LULC_NAME"},
                    split={"train": 0.5, "validation": 0.17, "test": 0.33, "seed": 0,
                           "method": "area"},
                    settings=SETTINGS, outputs={"model": str(model)})
    outputs = train_fgunet(Job.load(job), NullReporter())
    class_map = folder / "landcover.tif"
    classify = write_job(folder / "classify", "classify-fgunet",
                         inputs={"model": str(model), "series": {"paths": scenes}},
                         settings={"tile_size": 128, "margin": 20},
                         outputs={"class_map": str(class_map)})
    classify_fgunet(Job.load(classify), NullReporter())
    return {"model": model, "outputs": outputs, "map": class_map, "reference": reference,
            "scenes": scenes}


def test_accuracy_on_held_out_polygons_beats_the_majority_class(slovenia):
    metrics = read_metadata(slovenia["model"])["metrics"]
    support = np.array([row["support"] for row in metrics["per_class"]])
    majority = support.max() / support.sum()
    assert support.sum() > 1000
    assert metrics["overall_accuracy"] > majority + 0.03
    assert metrics["kappa"] > 0.3


def shifted(labels: np.ndarray, rows: int, cols: int) -> np.ndarray:
    """`labels` moved by (rows, cols) pixels, 255 where nothing moved in."""
    out = np.full_like(labels, 255)
    height, width = labels.shape
    part = labels[max(0, -rows): height - max(0, rows), max(0, -cols): width - max(0, cols)]
    out[max(0, rows): max(0, rows) + part.shape[0], max(0, cols): max(0, cols) + part.shape[1]] \
        = part
    return out


def test_the_map_lies_on_the_scene_grid_and_overlays_the_polygons(slovenia):
    with rasterio.open(slovenia["scenes"][0]) as scene, rasterio.open(slovenia["map"]) as out:
        assert out.crs == scene.crs
        assert out.transform.almost_equals(scene.transform, precision=1e-9)
        assert (out.width, out.height) == (scene.width, scene.height) == (100, 101)
        labels = out.read(1)
    # lulc.tif: the polygons burned by the data's provider, independently of lcfusion.
    with rasterio.open(shared_data("slovenia_s2", "lulc.tif")) as reference:
        truth = reference.read(1)
    labelled = np.isin(truth, [2, 3, 4, 8])

    def agreement(candidate: np.ndarray) -> float:
        return float((candidate[labelled] == truth[labelled]).mean())

    aligned = agreement(labels)
    assert aligned > 0.8
    assert aligned > agreement(labels[::-1]) + 0.1
    assert aligned > agreement(labels[:, ::-1]) + 0.1
    scores = {(r, c): agreement(shifted(labels, r, c)) for r in range(-3, 4)
              for c in range(-3, 4)}
    best = max(scores, key=scores.get)
    assert abs(best[0]) + abs(best[1]) <= 1, f"best alignment at {best} pixels: {scores}"
