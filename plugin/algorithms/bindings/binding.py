"""What every binding shares: `JobDraft`, the job being assembled, and `Binding`, the base
of the bindings (check the values, write the job entries, finish on the engine's outputs)."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from qgis.core import QgsCoordinateReferenceSystem, QgsProcessingContext, QgsProcessingFeedback

if TYPE_CHECKING:
    from ..base import EngineAlgorithm


@dataclass
class JobDraft:
    """The job being assembled; `crs` is the rasters' CRS, set by the series binding."""

    folder: Path
    sections: dict[str, dict] = field(
        default_factory=lambda: {"inputs": {}, "settings": {}, "outputs": {}})
    crs: QgsCoordinateReferenceSystem | None = None


class Binding(ABC):
    """How one or a few parameters go into a job."""

    def check(self, alg: EngineAlgorithm, parameters: dict,
              context: QgsProcessingContext) -> tuple[str, str] | None:
        """(parameter at fault, message for the user) when the values cannot work, else None."""
        return None

    @abstractmethod
    def to_job(self, alg: EngineAlgorithm, parameters: dict, context: QgsProcessingContext,
               feedback: QgsProcessingFeedback, job: JobDraft) -> None: ...

    def finish(self, alg: EngineAlgorithm, parameters: dict, context: QgsProcessingContext,
               feedback: QgsProcessingFeedback, engine_outputs: dict) -> None:
        """Work on the engine's outputs (styling) after a successful run."""
        return None

    def check_model(self, alg: EngineAlgorithm, parameters: dict, context: QgsProcessingContext,
                    metadata: dict) -> tuple[str, str] | None:
        """(parameter, message) when the inputs do not fit the model described by `metadata`."""
        return None
