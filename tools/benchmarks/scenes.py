"""Sample scenes at the sizes the bench needs, and the inputs of each family's jobs."""

from __future__ import annotations

import functools
from dataclasses import dataclass, replace
from pathlib import Path

import rasterio
from rasterio.windows import Window

from lcfusion.engine.io.rasters import GTIFF_OPTIONS
from lcfusion.engine.sample_scene import SampleSceneConfig, generate_sample_scene

#: The smallest side the generator accepts (it needs room for labelled parcels of every class).
SMALLEST_GENERATED = 96


@dataclass(frozen=True)
class SceneFiles:
    """The rasters of a scene (S2 grid `side` wide and `rows` high), its reference polygons and
    its true class of every pixel (S2 grid)."""

    side: int
    rows: int
    s2: tuple[Path, ...]
    s1: tuple[Path, ...]
    cloud_mask: Path
    pan: Path
    ms: Path
    reference: Path
    truth: Path

    def inputs(self, family: str) -> dict:
        """The job inputs of a family (the Random Forest uses the S2 series)."""
        s2 = {"paths": [str(p) for p in self.s2]}
        if family in ("fgunet",):
            return {"series": s2}
        if family == "randomforest":
            return {"s2": s2}
        if family == "mrfusion":
            return {"pan": {"paths": [str(self.pan)]}, "ms": {"paths": [str(self.ms)]}}
        return {"s1": {"paths": [str(p) for p in self.s1]},
                "s2": {**s2, "masks": [str(self.cloud_mask)], "gapfill": True}}

    def pixels(self, family: str) -> int:
        """Pixels of the family's class map (MRFusion maps the PAN grid)."""
        with rasterio.open(self.pan if family == "mrfusion" else self.s2[0]) as src:
            return src.width * src.height

    def input_bytes(self, family: str) -> int:
        """Bytes of the family's input pixels as float32 (what reading all at once would
        hold)."""
        paths = {"fgunet": self.s2, "randomforest": self.s2, "mrfusion": (self.pan, self.ms),
                 "twinns": (*self.s1, *self.s2, self.cloud_mask)}[family]
        total = 0
        for path in paths:
            with rasterio.open(path) as src:
                total += 4 * src.width * src.height * src.count
        return total


@functools.cache
def scene(folder: Path, side: int, seed: int = 7, rows: int | None = None) -> SceneFiles:
    """The sample scene `side` pixels wide and `rows` (default `side`) high, of `seed`, in
    `folder` (generated once); scenes narrower or lower than the generator's smallest are cut
    from the top-left corner of a larger generated scene, in files of the engine's blocks, as
    the generated scenes of 256 pixels or more have (a file's blocks, not its size, set what
    GDAL holds decoded of it)."""
    rows = rows or side
    done = folder / f"scene-{side}x{rows}-seed-{seed}"
    if min(side, rows) >= SMALLEST_GENERATED:
        generated = generate_sample_scene(done, SampleSceneConfig(width=side, height=rows,
                                                                  seed=seed))
        return SceneFiles(side, rows, generated.s2_paths, generated.s1_paths,
                          generated.s2_cloud_mask_path, generated.pan_path, generated.ms_path,
                          generated.reference_path, generated.truth_path)
    source = scene(folder, max(side, SMALLEST_GENERATED), seed,
                   max(rows, SMALLEST_GENERATED))
    done.mkdir(parents=True, exist_ok=True)

    def cut(path: Path, scale: int = 1) -> Path:
        target = done / path.name
        with rasterio.open(path) as src:
            window = Window(0, 0, side * scale, rows * scale)
            profile = dict(src.profile, width=side * scale, height=rows * scale,
                           transform=src.window_transform(window),
                           blockxsize=GTIFF_OPTIONS["blockxsize"],
                           blockysize=GTIFF_OPTIONS["blockysize"])
            with rasterio.open(target, "w", **profile) as dst:
                dst.write(src.read(window=window))
                dst.descriptions = src.descriptions
        return target

    with rasterio.open(source.pan) as pan, rasterio.open(source.ms) as ms:
        ratio = round(ms.res[0] / pan.res[0])
    return replace(source, side=side, rows=rows, s2=tuple(cut(p) for p in source.s2),
                   s1=tuple(cut(p) for p in source.s1), cloud_mask=cut(source.cloud_mask),
                   pan=cut(source.pan, ratio), ms=cut(source.ms), truth=cut(source.truth))
