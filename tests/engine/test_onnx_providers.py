"""Which onnxruntime execution provider runs a model: CUDA first when onnxruntime has it and the
DEVICE setting allows it, the CPU as fallback, and a log line naming the one that ran."""

from __future__ import annotations

import onnxruntime
import pytest
from helpers import RecordingReporter, fgunet_classify_job

from lcfusion.engine.cli import job_command
from lcfusion.engine.errors import LcfusionError
from lcfusion.engine.inference.onnxsession import CPU, CUDA, providers, runs_on
from lcfusion.engine.jobs import Job

GPU_BUILD = ["TensorrtExecutionProvider", CUDA, CPU]  # what onnxruntime-gpu reports
CPU_BUILD = [CPU]  # onnxruntime


@pytest.mark.parametrize(("device", "available", "expected"), [
    ("auto", GPU_BUILD, [CUDA, CPU]),
    ("", GPU_BUILD, [CUDA, CPU]),
    ("auto", CPU_BUILD, [CPU]),
    ("cpu", GPU_BUILD, [CPU]),
    ("CUDA", GPU_BUILD, [CUDA, CPU]),
    ("cuda:1", GPU_BUILD, [(CUDA, {"device_id": "1"}), CPU]),
])
def test_cuda_comes_first_when_present_and_allowed(device, available, expected):
    assert providers(device, available) == expected


@pytest.mark.parametrize(("device", "message"), [
    ("cuda", "DEVICE is cuda but onnxruntime has no CUDA provider here (it has "
             "CPUExecutionProvider); install onnxruntime-gpu in place of onnxruntime, or use "
             "auto or cpu"),
    ("gpu", "unknown device 'gpu'; use auto, cpu or cuda"),
    ("cuda:x", "unknown device 'cuda:x'; use auto, cpu or cuda"),
])
def test_an_impossible_device_is_refused_naming_device(device, message):
    with pytest.raises(LcfusionError) as caught:
        providers(device, CPU_BUILD)
    assert (caught.value.message, caught.value.parameter) == (message, "DEVICE")


def test_the_provider_that_ran_is_named_and_a_fallback_warned():
    assert runs_on([CUDA, CPU], [CUDA, CPU]) == ("onnxruntime's CUDA provider (GPU)", None)
    assert runs_on([CPU], [CPU]) == ("onnxruntime's CPU provider", None)
    words, warning = runs_on([(CUDA, {"device_id": "1"}), CPU], [CPU])
    assert words == "onnxruntime's CPU provider"
    assert warning.startswith(f"onnxruntime's {CUDA} could not start (onnxruntime-gpu needs "
                              "the CUDA and cuDNN libraries it was built for")
    assert warning.endswith(f"classifying with {CPU} instead")


def test_a_cuda_provider_that_cannot_start_falls_back_to_the_cpu_with_a_warning(
        tmp_path, scene, fgunet_onnx, monkeypatch):
    """onnxruntime reports a CUDA provider (as onnxruntime-gpu does) that cannot start here:
    the classification runs on the CPU and its log says so."""
    monkeypatch.setattr(onnxruntime, "get_available_providers", lambda: [CUDA, CPU])
    reporter = RecordingReporter()
    job = Job.load(fgunet_classify_job(tmp_path, scene, fgunet_onnx))
    job_command("classify-fgunet", onnx=True)(job, reporter)
    assert (tmp_path / "map.tif").is_file()
    assert any(line.startswith(f"onnxruntime's {CUDA} could not start")
               for line in reporter.lines), reporter.text()
    assert "with onnxruntime's CPU provider, " in reporter.text()
