"""Counts in words."""

import pytest

from lcfusion.engine.wording import counted


@pytest.mark.parametrize("count, noun, plural, thousands, expected", [
    (1, "polygon", None, False, "1 polygon"),
    (0, "polygon", None, False, "0 polygons"),
    (3, "class", None, False, "3 classes"),
    (2, "patch", None, False, "2 patches"),
    (1, "class", None, False, "1 class"),
    (2, "GPU", None, False, "2 GPUs"),
    (12345, "pixel", None, True, "12,345 pixels"),
    (1, "labelled pixel", None, False, "1 labelled pixel"),
    (4, "child", "children", False, "4 children"),
])
def test_counted(count, noun, plural, thousands, expected):
    assert counted(count, noun, plural, thousands=thousands) == expected
