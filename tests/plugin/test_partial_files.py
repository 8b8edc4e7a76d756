"""A killed engine's temporary files are removed; nothing else is touched."""

from lcfusion.plugin.algorithms.base import remove_partial_files


def test_only_partial_siblings_of_the_outputs_are_removed(tmp_path):
    names = ["map.tif", "map.lcfusion-partial-0123456789ab.tif",
             "map.lcfusion-partial-ba9876543210.tif", "other.lcfusion-partial-0123456789ab.tif",
             "map.qml", "model.lcfusion-partial-aaaaaaaaaaaa.lcfusion"]
    for name in names:
        (tmp_path / name).write_text(name)
    remove_partial_files([str(tmp_path / "map.tif"), str(tmp_path / "model.lcfusion"), None])
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "map.qml", "map.tif", "other.lcfusion-partial-0123456789ab.tif"]
