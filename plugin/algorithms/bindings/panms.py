"""The PAN/MS pair: `PanMsBinding` (a single-band PAN and an MS on a grid a whole number of
times coarser, the MS alignment and the PAN/MS ratio) and `layer_transform`."""

from __future__ import annotations

from dataclasses import dataclass

from qgis.core import QgsRasterLayer

from ....engine.errors import LcfusionError
from ....engine.io.alignment import align_pan_ms, plan_ms_alignment
from ...export import raster_path
from .binding import Binding


def layer_transform(layer: QgsRasterLayer) -> tuple[float, float, float, float, float, float]:
    """The GDAL geotransform of a north-up raster layer."""
    extent = layer.extent()
    return (extent.xMinimum(), layer.rasterUnitsPerPixelX(), 0.0, extent.yMaximum(), 0.0,
            -layer.rasterUnitsPerPixelY())


@dataclass
class PanMsBinding(Binding):
    """A single-band PAN layer and an MS layer on a grid a whole number of times coarser.

    `patch_size` names the setting that must be a multiple of the ratio (if any); `align`
    names the parameter that chooses how the MS is put onto the PAN grid (its values:
    `align_choices`, ``model`` for the model's choice)."""

    pan: str = "PAN"
    ms: str = "MS"
    patch_size: str | None = None
    align: str | None = None
    align_choices: tuple[str, ...] = ()

    def layers(self, alg, parameters, context) -> tuple[QgsRasterLayer, QgsRasterLayer]:
        return (alg.parameterAsRasterLayer(parameters, self.pan, context),
                alg.parameterAsRasterLayer(parameters, self.ms, context))

    def method(self, alg, parameters, context) -> str:
        """The chosen MS alignment: ``none``, a resampling method, or ``model``."""
        if not self.align:
            return "none"
        return self.align_choices[alg.parameterAsEnum(parameters, self.align, context)]

    def ratio(self, alg, parameters, context, method: str) -> int:
        """The PAN/MS ratio once the MS is aligned with `method`; LcfusionError when the pair
        cannot be used so."""
        pan, ms = self.layers(alg, parameters, context)
        pan_grid, ms_grid = layer_transform(pan), layer_transform(ms)
        sizes = (pan.width(), pan.height()), (ms.width(), ms.height())
        if method == "none":
            return align_pan_ms(pan_grid, sizes[0], ms_grid, sizes[1]).ratio
        plan = plan_ms_alignment(pan_grid, sizes[0], ms_grid, sizes[1], method)
        aligned = plan.ms_transform or ms_grid
        window = plan.pan_window
        cropped = (pan_grid[0] + window[0] * pan_grid[1], pan_grid[1], 0.0,
                   pan_grid[3] + window[1] * pan_grid[5], 0.0, pan_grid[5])
        return align_pan_ms(cropped, window[2:], aligned, plan.ms_size).ratio

    def check(self, alg, parameters, context):
        pan, ms = self.layers(alg, parameters, context)
        if pan is None or ms is None:
            return None  # Processing reports a missing layer itself
        if pan.bandCount() != 1:
            return self.pan, (f"'{pan.name()}' has {pan.bandCount()} bands; choose a single-band "
                              "panchromatic layer.")
        if pan.crs() != ms.crs():
            return self.ms, (f"CRS mismatch: the PAN is in {pan.crs().authid()} and the MS in "
                             f"{ms.crs().authid()}; warp the MS into the PAN's CRS on a grid "
                             "aligned with the PAN.")
        method = self.method(alg, parameters, context)
        if method == "model":
            return None  # checked against the model's choice in check_model
        try:
            ratio = self.ratio(alg, parameters, context, method)
        except LcfusionError as exc:
            return exc.parameter or self.ms, exc.message[0].upper() + exc.message[1:] + "."
        if self.patch_size:
            size = alg.parameterAsInt(parameters, self.patch_size, context)
            if size and size % ratio:
                lower = size // ratio * ratio
                return self.patch_size, (
                    f"{size} is not divisible by the PAN/MS ratio {ratio}; use "
                    f"{max(lower, ratio)} or {lower + ratio}.")
        return None

    def check_model(self, alg, parameters, context, metadata):
        pan, ms = self.layers(alg, parameters, context)
        expected = metadata.get("inputs", {}).get("ms", {})
        if ms is None or not expected:
            return None
        if ms.bandCount() != expected.get("bands"):
            return self.ms, (f"The model expects an MS layer of {expected.get('bands')} bands "
                             f"({', '.join(expected.get('band_names', []))}) but "
                             f"'{ms.name()}' has {ms.bandCount()}.")
        method = self.method(alg, parameters, context)
        if method == "model":
            method = metadata.get("inputs", {}).get("align_ms", "none")
        try:
            ratio = self.ratio(alg, parameters, context, method)
        except LcfusionError as exc:
            if self.method(alg, parameters, context) != "model":
                return None  # reported by check()
            return exc.parameter or self.ms, exc.message[0].upper() + exc.message[1:] + "."
        trained = metadata.get("architecture", {}).get("ratio")
        if ratio != trained:
            return self.ms, (f"The model was trained on a PAN/MS ratio of {trained} but these "
                             f"layers have a ratio of {ratio}.")
        return None

    def to_job(self, alg, parameters, context, feedback, job):
        pan, ms = self.layers(alg, parameters, context)
        if self.align:
            job.sections["settings"]["align_ms"] = self.method(alg, parameters, context)
        job.crs = pan.crs()
        for key, layer in (("pan", pan), ("ms", ms)):
            path = raster_path(layer, job.folder, key, context, feedback)
            job.sections["inputs"][key] = {"paths": [path]}
        feedback.pushInfo(f"PAN: {pan.name()} ({pan.width()} x {pan.height()} pixels); MS: "
                          f"{ms.name()} ({ms.bandCount()} bands, {ms.width()} x {ms.height()} "
                          "pixels).")
