"""Outputs appear complete or not at all; failures keep existing files."""

import pytest

from lcfusion.engine.errors import LcfusionError
from lcfusion.engine.outputs import atomic_output


def test_success_replaces_the_target(tmp_path):
    target = tmp_path / "map.tif"
    target.write_text("old")
    with atomic_output(target, "OUTPUT") as temporary:
        assert temporary.parent == tmp_path and temporary.suffix == ".tif"
        temporary.write_text("new")
    assert target.read_text() == "new"
    assert [p.name for p in tmp_path.iterdir()] == ["map.tif"]


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


def test_partial_files_finds_what_partial_path_names(tmp_path):
    from lcfusion.engine.outputs import partial_files, partial_path

    target = tmp_path / "map.tif"
    left = [partial_path(target), partial_path(target)]
    for path in left + [tmp_path / "map.qml", partial_path(tmp_path / "other.tif")]:
        path.write_text("x")
    assert partial_files(target) == sorted(left)
