"""Time-series inputs: `SeriesBinding` (rasters in date order or one stack, bands per date,
cloud masks, gap filling) and `series_shape`, the dates x bands they give."""

from __future__ import annotations

from dataclasses import dataclass

from ....engine.wording import counted
from ...export import raster_path
from .binding import Binding


def series_shape(layers: list, bands_per_date: int) -> tuple[int, int]:
    """(dates, bands per date) of a list of rasters or one stack."""
    if len(layers) == 1 and bands_per_date > 0:
        return layers[0].bandCount() // bands_per_date, bands_per_date
    return len(layers), layers[0].bandCount() if layers else 0


@dataclass
class SeriesBinding(Binding):
    """Time-series layers (+ bands per date), optional mask layers and the gap-fill switch;
    `label` names the series in messages."""

    layers: str = "INPUT"
    bands: str = "BANDS_PER_DATE"
    key: str = "series"
    label: str = "time series"
    masks: str | None = None
    gapfill: str | None = None

    def values(self, alg, parameters, context) -> tuple[list, int]:
        return (alg.parameterAsLayerList(parameters, self.layers, context),
                alg.parameterAsInt(parameters, self.bands, context))

    def check(self, alg, parameters, context):
        layers, bands = self.values(alg, parameters, context)
        if not layers:
            return self.layers, f"Add at least one raster layer to the {self.label}."
        crs = {layer.crs().authid() or layer.crs().toWkt() for layer in layers}
        if len(crs) > 1:
            return self.layers, (f"The {self.label} layers are in different CRSs "
                                 f"({', '.join(sorted(crs))}); reproject them onto one grid "
                                 "first.")
        if len(layers) == 1 and bands and layers[0].bandCount() % bands:
            return self.bands, (f"The stack '{layers[0].name()}' has {layers[0].bandCount()} "
                                f"bands, not a multiple of the bands per date ({bands}).")
        if len(layers) > 1 and bands and bands != layers[0].bandCount():
            return self.bands, ("Bands per date applies to a single multi-date stack; leave it "
                                "at 0 for a list of single-date layers.")
        masks = alg.parameterAsLayerList(parameters, self.masks, context) if self.masks else []
        if masks:
            dates, _ = series_shape(layers, bands)
            mask_bands = sum(layer.bandCount() for layer in masks)
            if mask_bands != dates:
                return self.masks, (f"The mask layers give {counted(mask_bands, 'band')} but "
                                    f"the {self.label} has {counted(dates, 'date')}; give one "
                                    "single-band mask "
                                    "per date, or one stack with a band per date.")
        return None

    def check_model(self, alg, parameters, context, metadata):
        layers, bands = self.values(alg, parameters, context)
        expected = metadata.get("inputs", {}).get(self.key, {})
        if not layers or not expected:
            return None
        dates, per_date = series_shape(layers, bands)
        wanted = (expected.get("n_dates"), expected.get("bands_per_date"))
        if (dates, per_date) == wanted:
            return None
        hint = (f" For a multi-date stack, set Bands per date to {wanted[1]}."
                if len(layers) == 1 and not bands else "")
        return self.layers, (f"The model expects {counted(wanted[0], 'date')} x "
                             f"{counted(wanted[1], 'band')}, but the layers give "
                             f"{counted(dates, 'date')} x {counted(per_date, 'band')}; give the "
                             f"same dates and bands as for training.{hint}")

    def to_job(self, alg, parameters, context, feedback, job):
        layers, bands = self.values(alg, parameters, context)
        paths = [raster_path(layer, job.folder, f"{self.key}_{i:03d}", context, feedback)
                 for i, layer in enumerate(layers)]
        feedback.pushInfo(f"{self.label[0].upper()}{self.label[1:]}, in this order: "
                          + ", ".join(layer.name() for layer in layers))
        if job.crs is None:
            job.crs = layers[0].crs()
        entry = {"paths": paths, "bands_per_date": bands if len(layers) == 1 else None,
                 "names": [layer.name() for layer in layers]}
        if self.masks:
            masks = alg.parameterAsLayerList(parameters, self.masks, context)
            entry["masks"] = [raster_path(layer, job.folder, f"{self.key}_mask_{i:03d}", context,
                                          feedback) for i, layer in enumerate(masks)]
            if masks:
                feedback.pushInfo("Masks (non-zero = cloud), in this order: "
                                  + ", ".join(layer.name() for layer in masks))
        if self.gapfill:
            entry["gapfill"] = alg.parameterAsBool(parameters, self.gapfill, context)
        job.sections["inputs"][self.key] = entry
