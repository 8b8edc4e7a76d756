"""What a failed classification on a compute target says its job folder keeps."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest

from lcfusion.engine.compute.launcher import LocalShell
from lcfusion.engine.compute.profiles import ComputeProfile
from lcfusion.engine.families.blockjobs import finished_blocks, kept_wording


def remote_in(folder: Path) -> SimpleNamespace:
    """What `finished_blocks` asks of a `RemoteJob`: its folder and shell (here)."""
    return SimpleNamespace(folder=str(folder), shell=LocalShell(ComputeProfile("here")))


def test_blocks_are_counted_in_the_job_folder(tmp_path):
    result = tmp_path / "job" / "result"
    assert finished_blocks(remote_in(tmp_path / "job")) == (0, None), "nothing written yet"
    result.mkdir(parents=True)
    (result / "layout.json").write_text(json.dumps({"blocks": [[0, 0, 1, 1]] * 9}))
    for name in ("block-00000.tif", "block-00003.tif", "block-00000-confidence.tif",
                 ".block-00004.tif.partial"):
        (result / name).write_bytes(b"")
    assert finished_blocks(remote_in(tmp_path / "job")) == (2, 9)


@pytest.mark.parametrize(("finished", "said", "not_said"), [
    ((0, None), "It finished no block, so /w/job holds none to resume from", "kept in"),
    ((0, 9), "It finished no block, so /w/job holds none", "missing"),
    ((3, 9), "It finished 3 of 9 blocks, kept in /w/job; run the algorithm again with the same "
             "inputs and profile to classify only the 6 missing", "none"),
    ((1, None), "It finished 1 block, kept in /w/job", "none"),
    ((9, 9), "It finished all 9 blocks, kept in /w/job; run the algorithm again with the same "
             "inputs and profile to merge them", "missing"),
    (None, "The blocks it finished, if any, are kept in /w/job", "none"),
])
def test_the_error_says_what_the_folder_keeps(finished, said, not_said):
    wording = kept_wording("/w/job", finished)
    assert said in wording and not_said not in wording
