"""A killed engine's temporary files are removed; nothing else is touched, not even the
temporary files of another run writing the same outputs."""

from lcfusion.plugin.algorithms.bindings.outputs import remove_partial_files

KILLED, OTHER = 4242, 4343


def test_only_the_partial_files_of_the_killed_engine_are_removed(tmp_path):
    names = ["map.tif", f"map.lcfusion-partial-{KILLED}-0123456789ab.tif",
             f"map.lcfusion-partial-{KILLED}-0123456789ab.tif.aux.xml",
             f"map.lcfusion-partial-{OTHER}-0123456789ab.tif.aux.xml",
             f"map.lcfusion-partial-{KILLED}-ba9876543210.tif",
             f"map.lcfusion-partial-{OTHER}-0123456789ab.tif",
             f"map.lcfusion-partial-{KILLED}1-0123456789ab.tif",
             f"other.lcfusion-partial-{KILLED}-0123456789ab.tif",
             "map.qml", f"model.lcfusion-partial-{KILLED}-aaaaaaaaaaaa.lcfusion",
             f"model.lcfusion-partial-{OTHER}-aaaaaaaaaaaa.lcfusion"]
    for name in names:
        (tmp_path / name).write_text(name)
    remove_partial_files([str(tmp_path / "map.tif"), str(tmp_path / "model.lcfusion"), None],
                         KILLED)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([
        "map.qml", "map.tif", f"map.lcfusion-partial-{OTHER}-0123456789ab.tif",
        f"map.lcfusion-partial-{OTHER}-0123456789ab.tif.aux.xml",
        f"map.lcfusion-partial-{KILLED}1-0123456789ab.tif",
        f"other.lcfusion-partial-{KILLED}-0123456789ab.tif",
        f"model.lcfusion-partial-{OTHER}-aaaaaaaaaaaa.lcfusion"])


def test_output_names_with_glob_characters_are_matched_literally(tmp_path):
    kept = tmp_path / f"map1.lcfusion-partial-{KILLED}-0123456789ab.tif"
    removed = tmp_path / f"map[1].lcfusion-partial-{KILLED}-0123456789ab.tif"
    for path in (kept, removed):
        path.write_text("x")
    remove_partial_files([str(tmp_path / "map[1].tif")], KILLED)
    assert [p.name for p in tmp_path.iterdir()] == [kept.name]
