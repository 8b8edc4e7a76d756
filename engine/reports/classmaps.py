"""The class map an evaluation or an area estimate reads: its header checked (one band of
integer codes) and the legend it carries. No scikit-learn here: the area estimates run in any
interpreter with numpy, rasterio and GDAL."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import rasterio
from osgeo import gdal

from ..errors import LcfusionError
from ..io.rasters import RasterInfo, read_info
from ..jobs import Job

gdal.UseExceptions()


def class_map_info(job: Job, key: str = "class_map", parameter: str = "INPUT") -> RasterInfo:
    """The header of the class map ``inputs[key]`` (the parameter `parameter`): one band of
    integer codes on a north-up grid."""
    path = job.resolve(job.section("inputs").get(key))
    if path is None:
        raise LcfusionError("no class map given", parameter)
    info = read_info(path, parameter)
    if info.count != 1:
        raise LcfusionError(f"the class map {path.name} has {info.count} bands; choose a "
                            "single-band raster of class codes", parameter)
    if np.dtype(info.dtype).kind not in "iu":
        raise LcfusionError(f"the class map {path.name} holds {info.dtype} values; a class map "
                            "holds integer class codes (as written by the classify "
                            "algorithms)", parameter)
    return info



def map_legend(class_map: Path) -> tuple[dict[int, str], dict[int, str]]:
    """Names and colours per code stored in a class map: the lcfusion tag, else GDAL's
    category names, and its colour table."""
    names: dict[int, str] = {}
    colors: dict[int, str] = {}
    with rasterio.open(class_map) as source:
        try:
            tagged = json.loads(source.tags().get("LCFUSION_CLASSES", "[]"))
            names = {int(c["code"]): str(c["name"]) for c in tagged}
        except (ValueError, TypeError, KeyError):
            names = {}
        try:
            colors = {code: "#{:02x}{:02x}{:02x}".format(*rgba[:3])
                      for code, rgba in source.colormap(1).items()}
        except ValueError:
            colors = {}
    if not names:
        dataset = gdal.Open(str(class_map))
        categories = dataset.GetRasterBand(1).GetCategoryNames() or []
        names = {code: name for code, name in enumerate(categories) if name}
    return names, colors
