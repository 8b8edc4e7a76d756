"""The model file given to a classification: `ModelInputBinding` checks that it is readable,
of the algorithm's family and fits the other inputs (each binding's `check_model`)."""

from __future__ import annotations

import os
from dataclasses import dataclass

from ....engine.errors import LcfusionError
from ....engine.modelfile.header import check_family, read_header
from .binding import Binding


@dataclass
class ModelInputBinding(Binding):
    """The model file: readable, of the algorithm's family, and fitting the other inputs
    (each binding's `check_model`). Without a family (the export), any family's .lcfusion
    file."""

    name: str = "MODEL"
    family: str = ""

    def check(self, alg, parameters, context):
        path = alg.parameterAsFile(parameters, self.name, context)
        try:
            header = read_header(path, self.name)
            if self.family:
                check_family(header, self.family, path, self.name)
        except LcfusionError as exc:
            return exc.parameter or self.name, exc.message
        for binding in alg.bindings:
            problem = binding.check_model(alg, parameters, context, header.metadata)
            if problem:
                return problem
        return None

    def to_job(self, alg, parameters, context, feedback, job):
        path = alg.parameterAsFile(parameters, self.name, context)
        job.sections["inputs"]["model"] = os.path.abspath(path) if path else path
