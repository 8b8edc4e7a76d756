"""The choice among input sources: `SourceBinding` checks and sends only the chosen
source's input bindings (the user's choice, or the source a model file was trained on)."""

from __future__ import annotations

from dataclasses import dataclass, field

from qgis.core import QgsProcessingException, QgsProcessingParameterMultipleLayers

from ....engine.errors import LcfusionError
from ....engine.modelfile.header import read_header
from .binding import Binding
from .panms import PanMsBinding
from .series import SeriesBinding


@dataclass
class SourceBinding(Binding):
    """A choice among input sources (see `EngineAlgorithm.add_source`): only the chosen
    source's input bindings are checked and go into the job, and an empty input of that
    source is named."""

    name: str | None
    key: str
    choices: tuple[str, ...]
    labels: tuple[str, ...]
    model: str | None = None
    inputs: dict[str, list[Binding]] = field(default_factory=dict)

    def chosen(self, alg, parameters, context) -> str | None:
        """The chosen source; None when the model file cannot tell (its binding says why)."""
        if self.model is None:
            return self.choices[alg.parameterAsEnum(parameters, self.name, context)]
        try:
            header = read_header(alg.parameterAsFile(parameters, self.model, context),
                                 self.model)
        except LcfusionError:
            return None
        return (header.metadata.get("inputs") or {}).get(self.key)

    def label(self, source: str) -> str:
        return dict(zip(self.choices, self.labels, strict=True)).get(source, source)

    def empty_input(self, alg, parameters, context, source: str) -> str | None:
        """The first layer parameter of `source` left empty."""
        for binding in self.inputs.get(source, []):
            names = ([binding.layers] if isinstance(binding, SeriesBinding)
                     else [binding.pan, binding.ms] if isinstance(binding, PanMsBinding) else [])
            for name in names:
                if isinstance(alg.parameterDefinition(name), QgsProcessingParameterMultipleLayers):
                    if not alg.parameterAsLayerList(parameters, name, context):
                        return name
                elif alg.parameterAsRasterLayer(parameters, name, context) is None:
                    return name
        return None

    def check(self, alg, parameters, context):
        source = self.chosen(alg, parameters, context)
        if source is None:
            return None
        if source not in self.choices:
            return self.model, (f"The model was trained on an unknown source '{source}'; "
                                "update the plugin or train the model again.")
        empty = self.empty_input(alg, parameters, context, source)
        if empty:
            what = alg.parameterDefinition(empty).description()
            reason = ("The model was trained on" if self.model else "The source is")
            return empty, f"{reason} {self.label(source)}: give the {what}."
        for binding in self.inputs[source]:
            problem = binding.check(alg, parameters, context)
            if problem:
                return problem
        return None

    def check_model(self, alg, parameters, context, metadata):
        source = (metadata.get("inputs") or {}).get(self.key)
        for binding in self.inputs.get(source, []):
            problem = binding.check_model(alg, parameters, context, metadata)
            if problem:
                return problem
        return None

    def to_job(self, alg, parameters, context, feedback, job):
        source = self.chosen(alg, parameters, context)
        if source not in self.choices:
            raise QgsProcessingException(alg.where(self.model or self.name)
                                         + "the source of the inputs cannot be determined.")
        if self.name:
            job.sections["settings"][self.key] = source
        feedback.pushInfo(f"Source: {self.label(source)}.")
        for binding in self.inputs[source]:
            binding.to_job(alg, parameters, context, feedback, job)
