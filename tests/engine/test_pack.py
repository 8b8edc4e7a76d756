"""Sample packs read exactly what the files give, only where patches reach, and are checked."""

from __future__ import annotations

import numpy as np
import pytest
from rasterio.windows import Window

from lcfusion.engine.errors import LcfusionError
from lcfusion.engine.io.pack import ArraySource, Boxes, PackWriter, SamplePack
from lcfusion.engine.io.series import SeriesSpec, TimeSeries
from lcfusion.engine.progress import NullReporter


@pytest.fixture(scope="module")
def packed(scene, tmp_path_factory):
    """The scene's S2 series packed around four pixels (two at the raster's corners)."""
    series = TimeSeries(SeriesSpec(tuple(str(p) for p in scene.s2_paths)))
    rows, cols = np.array([0, 40, 95, 70]), np.array([0, 50, 95, 3])
    folder = tmp_path_factory.mktemp("pack")
    with series.open() as reader:
        writer = PackWriter(folder, block=16)
        writer.add_array(ArraySource("s2", series.n_channels, series.height, series.width,
                                     reader.read, Boxes.around(rows, cols, 5, 5, series.height,
                                                               series.width)), NullReporter())
        writer.add_table("pixels", rows=rows, cols=cols)
        writer.finish({"family": "test"})
    return series, folder, rows, cols


def test_packed_windows_equal_the_files_edges_mirrored(packed):
    series, folder, rows, cols = packed
    pack = SamplePack(folder)
    pack.verify()
    array = pack.array("s2")
    assert (array.height, array.width, array.n_channels) == (series.height, series.width,
                                                             series.n_channels)
    with series.open() as reader:
        for row, col in zip(rows, cols, strict=True):
            window = Window(int(col) - 5, int(row) - 5, 11, 11)
            np.testing.assert_array_equal(array.read(window), reader.read(window))
    np.testing.assert_array_equal(pack.table("pixels")["rows"], rows)


def test_only_the_blocks_patches_reach_are_packed(packed):
    series, folder, _, _ = packed
    entry = SamplePack(folder).manifest["arrays"]["s2"]
    # 16-px blocks touched by the clipped 11 x 11 boxes: (0, 0) rows 0-5 cols 0-5: 1 block;
    # (95, 95) rows 90-95 cols 90-95: 1; (40, 50) rows 35-45 cols 45-55: 2; (70, 3): 1.
    assert entry["blocks"] == 5 and (series.height // 16) * (series.width // 16) == 36
    with pytest.raises(LcfusionError, match="holds no data at block"):
        SamplePack(folder).array("s2").read(Window(30, 10, 4, 4))


def test_a_corrupt_or_missing_file_is_detected(packed, tmp_path):
    _, folder, _, _ = packed
    copy = tmp_path / "copy"
    copy.mkdir()
    for path in folder.iterdir():
        (copy / path.name).write_bytes(path.read_bytes())
    chunk = next(copy.glob("s2-*.npz"))
    data = bytearray(chunk.read_bytes())
    data[100] ^= 0xFF
    chunk.write_bytes(bytes(data))
    with pytest.raises(LcfusionError, match="is corrupt"):
        SamplePack(copy).verify()
    chunk.unlink()
    with pytest.raises(LcfusionError, match="lacks s2-"):
        SamplePack(copy).verify()
    (copy / "pack.json").unlink()
    with pytest.raises(LcfusionError, match="holds no sample pack"):
        SamplePack(copy)
