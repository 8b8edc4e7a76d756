"""Spectral indices added to each date of a Sentinel-2-like series.

Which six indices TWINNS used is not stated in any source; the default list is NDVI, NDWI
(green / NIR), MNDWI (green / SWIR1), NDBI (SWIR1 / NIR), NDRE (NIR / red edge) and a
brightness index. The band playing each role is given (a band name or a 1-based number) or
found from the band descriptions: common names (Red, NIR, SWIR1...), Sentinel-2 codes (B04, B8A)
or Landsat Collection-2 codes (SR_B4); indices whose bands are not found are left out, with a
warning. The indices used and the band number of each role are recorded in the model file.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from ..errors import LcfusionError
from ..progress import Reporter

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
#: Phrases (regular expressions) of a band description that name each role, in lower case and
#: matched as whole words, in the order they are tried: "red edge" before "red".
COMMON_NAMES = {
    "rededge": ("red edge", "rededge", "rededge1", "re1", "vre1"),
    "swir1": ("swir1", "swir 1", "swir16", "swir 16", "shortwave infrared 1",
              "short wave infrared 1"),
    "nir": ("nir", "near infrared", "nir08"),
    "blue": ("blue",),
    "green": ("green",),
    "red": ("red(?! ?edge)",),
}
#: Band number of each role in the Sentinel-2 and Landsat 8/9 and 4-7 band codes.
CODE_ROLES = {
    "Sentinel-2": {"2": "blue", "3": "green", "4": "red", "5": "rededge", "8": "nir",
                   "11": "swir1"},
    "Landsat 8/9": {"2": "blue", "3": "green", "4": "red", "5": "nir", "6": "swir1"},
    "Landsat 4-7": {"1": "blue", "2": "green", "3": "red", "4": "nir", "5": "swir1"},
}
_S2_CODE = re.compile(r"\bb(0?\d{1,2}|8a)\b")
_LANDSAT_CODE = re.compile(r"\bsr b(\d)\b")


@dataclass(frozen=True)
class IndexConfig:
    """Indices to add, and the band (name or 1-based number) that plays each role."""

    indices: tuple[str, ...] = DEFAULT_INDICES
    roles: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        unknown = [name for name in self.indices if name not in INDICES]
        if unknown:
            raise LcfusionError(f"unknown index {', '.join(unknown)}; known: "
                                f"{', '.join(INDICES)}", "INDICES")

    def band_numbers(self, band_names: Sequence[str]) -> dict[str, int]:
        """0-based band number of every role the indices need."""
        needed = sorted({role for name in self.indices for role in INDICES[name]})
        return {role: band_number(role, self.roles.get(role, S2_ROLES[role]), band_names)
                for role in needed}

    def to_json(self) -> dict:
        return {"indices": list(self.indices), "roles": dict(self.roles)}

    @classmethod
    def from_json(cls, data: dict) -> IndexConfig:
        return cls(tuple(data.get("indices", DEFAULT_INDICES)),
                   {**S2_ROLES, **(data.get("roles") or {})})


def band_number(role: str, value: str, band_names: Sequence[str]) -> int:
    """0-based number of the band given for a role: a 1-based number or a band name."""
    value = str(value).strip()
    if re.fullmatch(r"[0-9]+", value):
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
    return number


def _words(description: str) -> str:
    """A band description in lower case, every run of other characters one space."""
    return " ".join(re.findall(r"[a-z0-9]+", description.lower()))


def _code_scheme(words: Sequence[str]) -> tuple[str, re.Pattern] | None:
    """The band-code convention of a set of descriptions, when they show it unambiguously:
    Sentinel-2 (a zero-padded code, B8A or B12), Landsat 8/9 (SR_B6, or an LC08/LC09
    product), Landsat 4-7 (an LT04, LT05 or LE07 product)."""
    text = " ".join(words)
    if re.search(r"\bb(0\d|8a|12)\b", text):
        return "Sentinel-2", _S2_CODE
    if re.search(r"\bsr b6\b|\blc0?[89]", text):
        return "Landsat 8/9", _LANDSAT_CODE
    if re.search(r"\b(lt0?[45]|le0?7)", text):
        return "Landsat 4-7", _LANDSAT_CODE
    return None


def identify_roles(band_names: Sequence[str]) -> dict[str, int]:
    """0-based band number of each role that the band descriptions name, by common name
    first, then by the band codes of Sentinel-2 or Landsat; the first band of a role wins."""
    words = [_words(name) for name in band_names]
    found: dict[str, int] = {}
    taken: set[int] = set()
    for role, phrases in COMMON_NAMES.items():
        for number, text in enumerate(words):
            if number not in taken and any(re.search(rf"\b{phrase}\b", text)
                                           for phrase in phrases):
                found[role] = number
                taken.add(number)
                break
    scheme = _code_scheme(words)
    if scheme is not None:
        roles, pattern = CODE_ROLES[scheme[0]], scheme[1]
        for number, text in enumerate(words):
            match = pattern.search(text)
            role = roles.get(match.group(1).lstrip("0")) if match else None
            if role and role not in found and number not in taken:
                found[role] = number
                taken.add(number)
    return found


def resolve_indices(config: IndexConfig | None, band_names: Sequence[str],
                    reporter: Reporter) -> IndexConfig | None:
    """The indices these bands allow, each role bound to a band number: the roles given in
    `config` first, then those the band descriptions identify. Indices with a role not found
    are left out with a warning naming the missing roles and how to give them; None when no
    index is left."""
    if config is None:
        return None
    numbers = {role: band_number(role, value, band_names) for role, value in config.roles.items()}
    for role, number in identify_roles(band_names).items():
        numbers.setdefault(role, number)
    kept = tuple(name for name in config.indices if set(INDICES[name]) <= numbers.keys())
    left_out = [name for name in config.indices if name not in kept]
    if left_out:
        missing = sorted({role for name in left_out for role in INDICES[name]} - numbers.keys())
        reporter.warning(
            f"{'no spectral index is' if not kept else ', '.join(left_out) + ' not'} added: no "
            f"band of the S2 layers is identified as {', '.join(missing)} (band descriptions: "
            f"{', '.join(band_names)}). Describe the bands by their common names or codes "
            "(Red, NIR, SWIR1, B04, SR_B4) or give [BAND_ROLES] such as "
            f"{missing[0]}=<band number>; switch [ADD_INDICES] off to add none")
    if not kept:
        return None
    used = sorted({role for name in kept for role in INDICES[name]})
    reporter.info(f"spectral indices {', '.join(kept)}, with " + ", ".join(
        f"{role} = band {numbers[role] + 1} ({band_names[numbers[role]]})" for role in used))
    return IndexConfig(kept, {role: str(numbers[role] + 1) for role in used})


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
    """The indices to add to S2 (comma-separated names) with the band roles given
    (``role=band`` pairs, comma-separated; the others are found in the band descriptions), or
    None when indices are off."""
    if not add:
        return None
    roles = {}
    for pair in filter(None, (p.strip() for p in band_roles.split(","))):
        role, _, band = pair.partition("=")
        if role.strip().lower() not in S2_ROLES or not band.strip():
            raise LcfusionError(
                f"{pair!r} is not a role=band pair with a role among "
                f"{', '.join(S2_ROLES)} (for example red=B04 or nir=8)", "BAND_ROLES")
        roles[role.strip().lower()] = band.strip()
    names = tuple(n.strip().upper() for n in indices.split(",") if n.strip())
    return IndexConfig(names, roles)

