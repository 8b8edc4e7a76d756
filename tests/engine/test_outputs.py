"""Outputs appear complete or not at all; failures keep existing files; temporary files name
the process that writes them; a full disk is a clear error naming the output."""

import os

import numpy as np
import pytest
import rasterio
import torch
from fault_helpers import small_tmpfs
from rasterio.transform import from_origin

from lcfusion.engine.errors import CancelledError, LcfusionError
from lcfusion.engine.io.outputs import (
    DiskFullError,
    atomic_output,
    gdal_write_errors,
    partial_files,
    partial_path,
)
from lcfusion.engine.modelfile.storage import save_model

NO_SPACE_MESSAGE = ("no space left on device while writing {}: free space or choose another "
                    "output folder")


def test_success_replaces_the_target(tmp_path):
    target = tmp_path / "map.tif"
    target.write_text("old")
    with atomic_output(target, "OUTPUT") as temporary:
        assert temporary.parent == tmp_path and temporary.suffix == ".tif"
        temporary.write_text("new")
    assert target.read_text() == "new"
    assert [p.name for p in tmp_path.iterdir()] == ["map.tif"]


@pytest.mark.parametrize("new_sidecar", [False, True])
def test_the_old_files_statistics_go_with_it(tmp_path, new_sidecar):
    target = tmp_path / "map.tif"
    target.write_text("old")
    (tmp_path / "map.tif.aux.xml").write_text("<PAMDataset>old statistics</PAMDataset>")
    with atomic_output(target, "OUTPUT") as temporary:
        temporary.write_text("new")
        if new_sidecar:
            (tmp_path / f"{temporary.name}.aux.xml").write_text("<PAMDataset>new</PAMDataset>")
    names = sorted(p.name for p in tmp_path.iterdir())
    if new_sidecar:
        assert names == ["map.tif", "map.tif.aux.xml"]
        assert "new" in (tmp_path / "map.tif.aux.xml").read_text()
    else:
        assert names == ["map.tif"]


def test_failure_keeps_the_old_file_and_leaves_nothing(tmp_path):
    target = tmp_path / "map.tif"
    target.write_text("old")
    with pytest.raises(RuntimeError), atomic_output(target, "OUTPUT") as temporary:
        temporary.write_text("half")
        raise RuntimeError("writer failed")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["map.tif"]


def test_missing_folder_or_a_folder_as_target(tmp_path):
    with pytest.raises(LcfusionError, match="does not exist") as info:
        with atomic_output(tmp_path / "no" / "map.tif", "OUTPUT"):
            pass
    assert info.value.parameter == "OUTPUT"
    (tmp_path / "map.tif").mkdir()
    with pytest.raises(LcfusionError, match="is a folder"):
        with atomic_output(tmp_path / "map.tif", "OUTPUT"):
            pass


def test_temporary_names_carry_the_writing_process(tmp_path):
    target = tmp_path / "map.tif"
    with atomic_output(target, "OUTPUT") as temporary:
        assert temporary.name.startswith(f"map.lcfusion-partial-{os.getpid()}-")
        assert temporary.suffix == ".tif"
        temporary.write_text("new")
        assert partial_files(target, os.getpid()) == [temporary]


def test_partial_files_finds_what_partial_path_names(tmp_path):
    target = tmp_path / "map.tif"
    mine = [partial_path(target), partial_path(target)]
    theirs = [partial_path(target, 1), partial_path(target, os.getpid() * 10)]
    for path in mine + theirs + [tmp_path / "map.qml", partial_path(tmp_path / "other.tif")]:
        path.write_text("x")
    assert partial_files(target, os.getpid()) == sorted(mine)
    assert partial_files(target, 1) == [theirs[0]]
    assert partial_files(target) == sorted(mine + theirs)


def test_a_full_disk_is_a_clear_error_and_keeps_the_old_file(tmp_path):
    with small_tmpfs(tmp_path / "disk", "64k") as disk:
        target = disk / "table.csv"
        target.write_text("old")
        with pytest.raises(DiskFullError) as info:
            with atomic_output(target, "OUTPUT") as temporary:
                temporary.write_bytes(b"x" * (1 << 20))
        assert str(info.value) == "OUTPUT: " + NO_SPACE_MESSAGE.format(target)
        assert info.value.parameter == "OUTPUT"
        assert [p.name for p in disk.iterdir()] == ["table.csv"]
        assert target.read_text() == "old"


def test_a_full_disk_while_saving_a_model_names_the_model_file(tmp_path):
    with small_tmpfs(tmp_path / "disk", "64k") as disk:
        model = disk / "model.lcfusion"
        with pytest.raises(DiskFullError) as info:
            save_model(model, {"family": "fgunet"}, {"weight": torch.ones(256, 1024)})
        assert info.value.message == NO_SPACE_MESSAGE.format(model)
        assert info.value.parameter == "OUTPUT_MODEL"
        assert list(disk.iterdir()) == []


def test_a_raster_that_does_not_fit_is_a_clear_error_not_a_truncated_file(tmp_path):
    """GDAL writes the cached blocks when the raster is closed, and rasterio lets the errors of
    that pass: the watch on GDAL's errors turns them into the full-disk error."""
    profile = {"driver": "GTiff", "width": 1024, "height": 1024, "count": 1, "dtype": "uint8",
               "tiled": True, "blockxsize": 256, "blockysize": 256, "compress": "deflate",
               "crs": "EPSG:32631", "transform": from_origin(500000, 5000000, 10, 10)}
    noise = np.random.default_rng(0).integers(0, 255, (1024, 1024), dtype=np.uint8)
    with small_tmpfs(tmp_path / "disk", "128k") as disk:
        target = disk / "map.tif"
        with pytest.raises(DiskFullError) as info:
            with atomic_output(target, "OUTPUT") as temporary, \
                    gdal_write_errors((target, "OUTPUT")), \
                    rasterio.open(temporary, "w", **profile) as ds:
                ds.write(noise, 1)
        assert info.value.message == NO_SPACE_MESSAGE.format(target)
        assert list(disk.iterdir()) == []


def test_a_cancel_while_the_disk_is_full_stays_a_cancel(tmp_path):
    with small_tmpfs(tmp_path / "disk", "64k") as disk:
        with pytest.raises(CancelledError):
            with atomic_output(disk / "table.csv", "OUTPUT") as temporary:
                try:
                    temporary.write_bytes(b"x" * (1 << 20))
                except OSError:
                    raise CancelledError() from None
        assert list(disk.iterdir()) == []
