"""Spectral indices added to each date of a Sentinel-2-like series.

Which six indices TWINNS used is not stated in any source; the default list is NDVI, NDWI
(green / NIR), MNDWI (green / SWIR1), NDBI (SWIR1 / NIR), NDRE (NIR / red edge) and a
brightness index. The band playing each role is found by name (Sentinel-2 names by default)
or given as a 1-based band number; list and roles are recorded in the model file.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from .errors import LcfusionError

#: Index name -> (first role, second role) of a normalised difference, or the brightness.
INDICES = {
    "NDVI": ("nir", "red"),
    "NDWI": ("green", "nir"),
    "MNDWI": ("green", "swir1"),
    "NDBI": ("swir1", "nir"),
    "NDRE": ("nir", "rededge"),
    "BRIGHTNESS": ("blue", "green", "red", "nir"),
}
DEFAULT_INDICES = tuple(INDICES)
#: Sentinel-2 band names of each role.
S2_ROLES = {"blue": "B02", "green": "B03", "red": "B04", "rededge": "B05", "nir": "B08",
            "swir1": "B11"}


@dataclass(frozen=True)
class IndexConfig:
    """Indices to add, and the band (name or 1-based number) that plays each role."""

    indices: tuple[str, ...] = DEFAULT_INDICES
    roles: dict[str, str] = field(default_factory=lambda: dict(S2_ROLES))

    def __post_init__(self) -> None:
        unknown = [name for name in self.indices if name not in INDICES]
        if unknown:
            raise LcfusionError(f"unknown index {', '.join(unknown)}; known: "
                                f"{', '.join(INDICES)}", "INDICES")

    def band_numbers(self, band_names: Sequence[str]) -> dict[str, int]:
        """0-based band number of every role the indices need."""
        needed = sorted({role for name in self.indices for role in INDICES[name]})
        numbers = {}
        for role in needed:
            value = str(self.roles.get(role, S2_ROLES[role])).strip()
            if value.isdigit():
                number = int(value) - 1
            elif value in band_names:
                number = list(band_names).index(value)
            else:
                raise LcfusionError(
                    f"the {role} band {value!r} is not among the Sentinel-2 bands "
                    f"({', '.join(band_names)}); give its band name or number", "BAND_ROLES")
            if not 0 <= number < len(band_names):
                raise LcfusionError(f"the {role} band number {value} is outside 1.."
                                    f"{len(band_names)}", "BAND_ROLES")
            numbers[role] = number
        return numbers

    def to_json(self) -> dict:
        return {"indices": list(self.indices), "roles": dict(self.roles)}

    @classmethod
    def from_json(cls, data: dict) -> IndexConfig:
        return cls(tuple(data.get("indices", DEFAULT_INDICES)),
                   {**S2_ROLES, **(data.get("roles") or {})})


def add_indices(data: np.ndarray, config: IndexConfig, numbers: dict[str, int]) -> np.ndarray:
    """(dates, bands, h, w) -> (dates, bands + indices, h, w); a missing band gives a missing
    index."""
    extra = []
    with np.errstate(divide="ignore", invalid="ignore"):
        for name in config.indices:
            roles = INDICES[name]
            bands = [data[:, numbers[role]] for role in roles]
            if name == "BRIGHTNESS":
                value = np.sqrt(np.mean(np.stack(bands) ** 2, axis=0))
            else:
                a, b = bands
                value = (a - b) / (a + b)
            extra.append(np.where(np.isfinite(value), value, np.nan).astype(np.float32))
    return np.concatenate([data, np.stack(extra, axis=1)], axis=1)


def parse_index_config(add: bool, indices: str, band_roles: str) -> IndexConfig | None:
    """The indices to add to S2 (comma-separated names) with the band roles (``role=band``
    pairs, comma-separated), or None when indices are off."""
    if not add:
        return None
    roles = dict(S2_ROLES)
    for pair in filter(None, (p.strip() for p in band_roles.split(","))):
        role, _, band = pair.partition("=")
        if role.strip().lower() not in S2_ROLES or not band.strip():
            raise LcfusionError(
                f"{pair!r} is not a role=band pair with a role among "
                f"{', '.join(S2_ROLES)} (for example red=B04 or nir=8)", "BAND_ROLES")
        roles[role.strip().lower()] = band.strip()
    names = tuple(n.strip().upper() for n in indices.split(",") if n.strip())
    return IndexConfig(names, roles)

