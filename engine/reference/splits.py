"""Object-level, class-stratified, seeded train / validation / test splits."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from ..errors import LcfusionError
from .classes import ClassTable
from .polygons import Reference

PARTS = ("train", "validation", "test")
METHODS = ("random", "area")
UNUSED = -1


@dataclass(frozen=True)
class SplitConfig:
    """Fractions of each class's polygons that go to each part, the method and the seed.

    ``random``: a seeded shuffle per class. ``area``: per class, polygons sorted by area and
    dealt to the parts in turn, so each part gets large and small polygons (the FG-UNET
    paper's protocol: every third polygon to test); the seed does not change it.
    """

    train: float = 0.6
    validation: float = 0.2
    test: float = 0.2
    seed: int = 0
    method: str = "random"

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise LcfusionError(f"unknown split method {self.method!r}; use one of "
                                f"{', '.join(METHODS)}", "SPLIT_METHOD")
        fractions = self.fractions
        if any(f < 0 or f > 1 for f in fractions):
            raise LcfusionError(f"split fractions must lie between 0 and 1, got {fractions}",
                                "TRAIN_FRACTION")
        if self.train <= 0:
            raise LcfusionError("the training fraction must be above 0", "TRAIN_FRACTION")
        if abs(sum(fractions) - 1.0) > 1e-6:
            raise LcfusionError(
                f"train + validation + test fractions must add up to 1 (they add up to "
                f"{sum(fractions):g}); for example 0.6 / 0.2 / 0.2", "TRAIN_FRACTION")

    @property
    def fractions(self) -> tuple[float, float, float]:
        return (self.train, self.validation, self.test)

    @classmethod
    def from_json(cls, data: dict) -> SplitConfig:
        return cls(float(data.get("train", 0.6)), float(data.get("validation", 0.2)),
                   float(data.get("test", 0.2)), int(data.get("seed", 0)),
                   str(data.get("method", "random")))

    def to_json(self) -> dict:
        return asdict(self)


def preset_split(split: dict, settings: dict, presets: dict[str, dict] | None = None
                 ) -> SplitConfig:
    """The job's split, with the fractions of the chosen preset (its ``split`` entry) applied."""
    preset = (presets or {}).get(settings.get("preset") or "", {})
    return SplitConfig.from_json({**split, **preset.get("split", {})})


def _allocate(n: int, fractions: tuple[float, ...]) -> list[int]:
    """Object counts per part: at least one in each part with a positive fraction."""
    wanted = [n * f for f in fractions]
    counts = [max(1, int(np.floor(w))) if f > 0 else 0 for w, f in zip(wanted, fractions,
                                                                        strict=True)]
    while sum(counts) > n:
        candidates = [i for i, c in enumerate(counts) if c > 1]
        counts[max(candidates, key=lambda i: counts[i] - wanted[i])] -= 1
    while sum(counts) < n:
        candidates = [i for i, f in enumerate(fractions) if f > 0]
        counts[max(candidates, key=lambda i: wanted[i] - counts[i])] += 1
    return counts


def _interleave(counts: list[int]) -> list[int]:
    """Parts in dealing order: each step goes to the part furthest behind its share."""
    n = sum(counts)
    dealt = [0] * len(counts)
    order = []
    for step in range(1, n + 1):
        part = max(range(len(counts)), key=lambda i: (step * counts[i] / n - dealt[i], -i))
        dealt[part] += 1
        order.append(part)
    return order


class ObjectSplit:
    """Assigns whole polygons to parts, per class (see `SplitConfig` for the methods)."""

    def __init__(self, config: SplitConfig):
        self.config = config

    def assign(self, object_class: np.ndarray, present: np.ndarray, classes: ClassTable,
               object_area: np.ndarray | None = None) -> np.ndarray:
        """Part index (0 train, 1 validation, 2 test) per object id; -1 for absent objects.

        `object_class` maps object id to class index; `present` lists the ids to split;
        `object_area` (by object id) is needed by the ``area`` method.
        """
        if len(classes) < 2:
            only = classes.classes[0]
            raise LcfusionError(
                f"the reference polygons hold only one class ({only.name!r}, code "
                f"{only.code}); a classifier needs at least two: add polygons of the other "
                "classes, or choose the field that holds the classes", "CLASS_FIELD")
        parts = np.full(object_class.size, UNUSED, dtype=np.int8)
        needed = sum(1 for f in self.config.fractions if f > 0)
        rng = np.random.default_rng(self.config.seed)
        too_few = []
        for entry in classes:
            ids = present[object_class[present] == entry.index]
            if ids.size < needed:
                too_few.append(f"{entry.name!r} (code {entry.code}): {ids.size}")
                continue
            counts = _allocate(ids.size, self.config.fractions)
            if self.config.method == "area":
                ids = ids[np.argsort(-object_area[ids], kind="stable")]
                parts[ids] = _interleave(counts)
                continue
            ids = rng.permutation(ids)
            start = 0
            for part, count in enumerate(counts):
                parts[ids[start: start + count]] = part
                start += count
        if too_few:
            names = [p for p, f in zip(PARTS, self.config.fractions, strict=True) if f > 0]
            raise LcfusionError(
                f"too few polygons per class to split: a {' / '.join(names)} split needs at "
                f"least {needed} polygons on the rasters in every class, but "
                f"{'; '.join(too_few)}; add polygons to these classes, filter them out of the "
                "reference layer, or lower the number of parts (validation or test fraction 0)",
                "REFERENCE")
        return parts


def split_summary(parts: np.ndarray, object_class: np.ndarray, object_pixels: np.ndarray,
                  classes: ClassTable) -> list[dict]:
    """Objects and pixels per class in each part."""
    rows = []
    for entry in classes:
        row = {"code": entry.code, "name": entry.name}
        for part, name in enumerate(PARTS):
            mask = (object_class == entry.index) & (parts == part)
            row[f"{name}_objects"] = int(np.count_nonzero(mask))
            row[f"{name}_pixels"] = int(object_pixels[mask].sum())
        rows.append(row)
    return rows


@dataclass
class SplitReference:
    """Labelled pixels with the part (train, validation, test) of their polygon."""

    reference: Reference
    parts: np.ndarray

    def __post_init__(self) -> None:
        self.pixel_part = self.parts[self.reference.pixels.objects]
        self.pixel_class = self.reference.pixel_classes()

    def mask(self, part: int) -> np.ndarray:
        """Which labelled pixels belong to polygons of `part`."""
        return self.pixel_part == part

    def labels_of(self, part: int) -> np.ndarray:
        """Object id -> class index for the objects of `part`, -1 for every other object."""
        return np.where(self.parts == part, self.reference.object_class, -1).astype(np.int64)

    def class_counts(self, part: int) -> np.ndarray:
        return np.bincount(self.pixel_class[self.mask(part)],
                           minlength=len(self.reference.classes))

    def feature_parts(self) -> list[str | None]:
        """The part of each feature of the reference layer, in the layer's order; None for
        features left out of the split (no class value or polygon, or no pixel on the grid)."""
        parts: list[str | None] = [None] * self.reference.n_features
        for object_id in self.reference.present_objects():
            part = int(self.parts[object_id])
            if part != UNUSED:
                parts[int(self.reference.object_feature[object_id])] = PARTS[part]
        return parts

    def summary(self) -> list[dict]:
        return split_summary(self.parts, self.reference.object_class,
                             self.reference.object_pixels, self.reference.classes)
