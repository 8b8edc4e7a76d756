"""The class map given to an evaluation or a comparison: `ClassMapInputBinding`, a single-band
raster of class codes whose CRS the polygons are sent in."""

from __future__ import annotations

from dataclasses import dataclass

from ...export import raster_path
from .binding import Binding


@dataclass
class ClassMapInputBinding(Binding):
    """A single-band raster of class codes; with `sets_crs`, its CRS is the one the polygons
    are sent in."""

    name: str = "INPUT"
    key: str = "class_map"
    sets_crs: bool = True

    def check(self, alg, parameters, context):
        layer = alg.parameterAsRasterLayer(parameters, self.name, context)
        if layer is not None and layer.bandCount() != 1:
            return self.name, (f"'{layer.name()}' has {layer.bandCount()} bands; choose a "
                               "single-band class map.")
        return None

    def to_job(self, alg, parameters, context, feedback, job):
        layer = alg.parameterAsRasterLayer(parameters, self.name, context)
        if self.sets_crs:
            job.crs = layer.crs()
        job.sections["inputs"][self.key] = raster_path(layer, job.folder, self.key, context,
                                                       feedback)
        description = alg.parameterDefinition(self.name).description().partition(" (")[0]
        feedback.pushInfo(f"{description}: {layer.name()} ({layer.width()} x {layer.height()} "
                          f"pixels, {layer.crs().authid() or 'custom CRS'}).")
