"""Render a raster zoomed out to its full extent with QGIS's `QgsMapRendererParallelJob`, in
QGIS's Python (`make bench` runs it from `benchmarks.rendering`, which never imports qgis).

Prints one JSON line: the seconds to open the layer and to render it, the renderer QGIS chose,
whether it sees overviews (pyramids) and the rendering errors.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

from qgis.core import QgsApplication, QgsMapRendererParallelJob, QgsMapSettings, QgsRasterLayer
from qgis.PyQt.QtCore import QSize


def render(path: str, size: int) -> dict:
    started = time.perf_counter()
    layer = QgsRasterLayer(path, "map", "gdal")
    opened = time.perf_counter() - started
    if not layer.isValid():
        raise SystemExit(f"QGIS cannot open {path}")
    settings = QgsMapSettings()
    settings.setLayers([layer])
    settings.setDestinationCrs(layer.crs())
    settings.setExtent(layer.extent())
    settings.setOutputSize(QSize(size, size))
    started = time.perf_counter()
    job = QgsMapRendererParallelJob(settings)
    job.start()
    job.waitForFinished()
    seconds = time.perf_counter() - started
    image = job.renderedImage()
    return {"open_seconds": opened, "seconds": seconds, "renderer": layer.renderer().type(),
            "pyramids": layer.dataProvider().hasPyramids(),
            "image": [image.width(), image.height()],
            "errors": [error.message for error in job.errors()]}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("raster")
    parser.add_argument("--size", type=int, default=1000, help="output side in pixels")
    args = parser.parse_args()
    app = QgsApplication([], False)
    app.initQgis()
    try:
        print(json.dumps(render(args.raster, args.size)), flush=True)
    finally:
        app.exitQgis()
    return 0


if __name__ == "__main__":
    sys.exit(main())
