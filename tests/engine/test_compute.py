"""Training on compute targets with real parts: mpirun with Gloo, sshd on 127.0.0.1, Slurm.

Each run packs the scene's training samples, stages the job folder, trains there and brings the
weights back; the tests check the weights, the log the user sees, the remote folders and
processes, cancel, and resume after a killed job.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import torch
from helpers import (
    MPIRUN_ARGS,
    NO_TEST_SPLIT,
    RecordingReporter,
    fgunet_train_job,
    fit_processes,
    mrfusion_train_job,
    rank_pids,
    twinns_train_job,
    with_compute,
)

from lcfusion.engine.compute import launcher
from lcfusion.engine.compute.launcher import launcher_fix, launcher_messages
from lcfusion.engine.errors import CancelledError, LcfusionError
from lcfusion.engine.families.fgunet.commands import train_fgunet
from lcfusion.engine.families.mrfusion.commands import train_mrfusion
from lcfusion.engine.families.twinns.commands import train_twinns
from lcfusion.engine.jobs import Job
from lcfusion.engine.modelfile.storage import load_model

pytestmark = pytest.mark.slow
pytest_plugins = ["services"]

#: Small runs: one thread per rank, so that runs are comparable bit for bit.
TINY = {"mrfusion": {"epochs": 2, "samples_per_epoch": 192, "validation_samples": 64,
                     "threads": 1},
        "twinns": {"epochs": 2, "samples_per_epoch": 256, "validation_samples": 64,
                   "threads": 1},
        "fgunet": {"epochs": 2, "patches_per_epoch": 32, "validation_patches": 8,
                   "threads": 1}}
#: Runs with a learning rate too high for a steady fall of the validation loss, so that their
#: last epoch is seldom their best: the last epoch's weights then come back from the ranks
#: too, for the choice on the validation polygons (on the development machine all three
#: choose; the last epoch of a training cannot be made other than its best on every build).
CHOOSING = {"mrfusion": {"keep": "best-or-last", "epochs": 4, "learning_rate": 0.03},
            "twinns": {"keep": "best-or-last", "epochs": 4, "learning_rate": 0.03},
            "fgunet": {"keep": "best-or-last", "epochs": 3, "learning_rate": 0.3,
                       "warmup_epochs": 1}}
TRAIN = {"mrfusion": train_mrfusion, "twinns": train_twinns, "fgunet": train_fgunet}


def train_job(family: str, folder: Path, scene, split: dict | None = None,
              **settings) -> tuple[Path, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    model = folder / "model.lcfusion"
    values = {**TINY[family], **settings}
    if family == "mrfusion":
        path = mrfusion_train_job(folder, scene.pan_path, scene.ms_path, scene.reference_path,
                                  model, split, **values)
    elif family == "twinns":
        path = twinns_train_job(folder, scene, model, split=split, **values)
    else:
        path = fgunet_train_job(folder, scene, model, split, **values)
    return path, model


def mpi_profile(work: Path, ranks: int) -> dict:
    return {"ranks": ranks, "mpirun_args": list(MPIRUN_ARGS), "python": sys.executable,
            "work_dir": str(work)}


def weights(model: Path) -> dict[str, torch.Tensor]:
    return load_model(model)[1]


class BackgroundTraining:
    """MRFusion training of `job` in a thread, for tests that break it while it runs."""

    def __init__(self, job: Path, work: Path):
        self.log, self.work = RecordingReporter(), work
        self.failure: list[LcfusionError] = []
        self.thread = threading.Thread(target=self._run, args=(job,))
        self.thread.start()

    def _run(self, job: Path) -> None:
        try:
            train_mrfusion(Job.load(job), self.log)
        except LcfusionError as exc:
            self.failure.append(exc)

    def checkpoints(self) -> list[Path]:
        return list(self.work.glob("lcfusion-*/checkpoint.pt"))

    def wait_for_checkpoint(self, seconds: float = 300) -> None:
        deadline = time.monotonic() + seconds
        while not self.checkpoints() and time.monotonic() < deadline:
            time.sleep(0.2)
        assert self.checkpoints(), "no checkpoint was written"

    def error(self, seconds: float = 120) -> LcfusionError:
        """The error the run ended with."""
        self.thread.join(seconds)
        assert self.failure, "the broken run is reported"
        return self.failure[0]


@pytest.mark.parametrize("family", ["mrfusion", "twinns", "fgunet"])
def test_one_rank_matches_the_local_run(tmp_path, scene, family):
    local_job, local_model = train_job(family, tmp_path / "local", scene, NO_TEST_SPLIT,
                                       **CHOOSING[family])
    TRAIN[family](Job.load(local_job), RecordingReporter())
    job, model = train_job(family, tmp_path / "mpi", scene, NO_TEST_SPLIT,
                           **CHOOSING[family])
    with_compute(job, "one", "mpi", **mpi_profile(tmp_path / "work", 1))
    log = RecordingReporter()
    TRAIN[family](Job.load(job), log)
    assert "rank 0 of 1 on cpu (gloo)" in log.text()
    assert "passed their checksum" in log.text()
    expected, got = weights(local_model), weights(model)
    assert expected.keys() == got.keys()
    for name in expected:
        torch.testing.assert_close(got[name], expected[name], rtol=0, atol=0)
    kept = load_model(model)[0]["training"]["kept"]
    assert kept == load_model(local_model)[0]["training"]["kept"], (
        "the last epoch's weights came back from the rank, and the same weights were chosen")
    assert not list((tmp_path / "work").iterdir()), "the job folder is removed after the run"


def test_two_ranks_train_together(tmp_path, scene):
    job, model = train_job("mrfusion", tmp_path / "job", scene, epochs=3,
                           samples_per_epoch=256)
    with_compute(job, "two", "mpi", **mpi_profile(tmp_path / "work", 2))
    log = RecordingReporter()
    outputs = train_mrfusion(Job.load(job), log)
    text = log.text()
    assert "2 ranks (gloo): learning rate 0.001 x 2 = 0.002 (linear scaling)" in text
    assert "the weights are identical on the 2 ranks" in text
    assert any(stage.startswith("epoch 3/3") for stage in log.stages), "progress streamed"
    history = load_model(model)[0]["training"]["history"]
    assert len(history) == 3 and history[-1]["train_loss"] < history[0]["train_loss"]
    assert outputs["OA"] > 1 / 8, "accuracy on the test polygons above chance"


def ssh_values(server, remote: Path, **extra) -> dict:
    return {"host": server.host, "port": server.port, "user": server.user,
            "identity_file": str(server.identity_file),
            "known_hosts_file": str(server.known_hosts), "work_dir": str(remote),
            "python": sys.executable, "mpirun_args": list(MPIRUN_ARGS), "ranks": 2, **extra}


def test_ssh_target_trains_and_brings_the_model_back(tmp_path, scene, ssh_server):
    remote = tmp_path / "remote"
    job, model = train_job("mrfusion", tmp_path / "job", scene)
    with_compute(job, "gpu", "ssh", **ssh_values(ssh_server, remote))
    log = RecordingReporter()
    train_mrfusion(Job.load(job), log)
    text = log.text()
    assert f"staging the job to {ssh_server.host}:{ssh_server.port}: {remote}/lcfusion-" in text
    assert "the weights are identical on the 2 ranks" in text
    assert load_model(model)[0]["family"] == "mrfusion"
    assert remote.is_dir() and not list(remote.iterdir()), "remote job folder cleaned"


def test_ssh_refuses_an_unknown_host_key(tmp_path, scene, ssh_server):
    empty = tmp_path / "known_hosts"
    empty.write_text("")
    job, model = train_job("mrfusion", tmp_path / "job", scene)
    with_compute(job, "gpu", "ssh", **ssh_values(ssh_server, tmp_path / "remote",
                                                 known_hosts_file=str(empty)))
    with pytest.raises(LcfusionError) as error:
        train_mrfusion(Job.load(job), RecordingReporter())
    assert error.value.parameter == "COMPUTE"
    assert "Host key verification failed" in error.value.message
    assert not model.exists()


def test_cancel_stops_the_remote_job_and_cleans_its_folder(tmp_path, scene, ssh_server):
    remote = tmp_path / "remote"
    job, model = train_job("mrfusion", tmp_path / "job", scene, epochs=20)
    with_compute(job, "gpu", "ssh", **ssh_values(ssh_server, remote))
    with pytest.raises(CancelledError):
        train_mrfusion(Job.load(job), RecordingReporter(stop_at="epoch 1/"))
    assert not fit_processes(tmp_path), "no rank left running"
    assert not list(remote.iterdir()), "remote job folder removed"
    assert not model.exists()


def slurm_values(cluster, work: Path, **extra) -> dict:
    return {"partition": cluster.partition, "ranks": 2, "nodes": 1, "time_limit": "10:00",
            "python": sys.executable, "mpirun_args": list(MPIRUN_ARGS), "work_dir": str(work),
            "env": {"SLURM_CONF": str(cluster.conf)}, **extra}


def slurm_state(cluster, job_id: str) -> str:
    done = subprocess.run(["scontrol", "-o", "show", "job", job_id], env=cluster.env,
                          capture_output=True, text=True, check=True)
    return dict(p.split("=", 1) for p in done.stdout.split() if "=" in p)["JobState"]


def submitted_job(log: RecordingReporter) -> str:
    line = next(line for line in log.lines if line.startswith("submitted Slurm job "))
    return line.split()[3]


def test_slurm_cancel_calls_scancel_and_cleans(tmp_path, scene, slurm_cluster):
    work = tmp_path / "work"
    job, model = train_job("mrfusion", tmp_path / "job", scene, epochs=20)
    with_compute(job, "cluster", "slurm", **slurm_values(slurm_cluster, work))
    log = RecordingReporter(stop_at="epoch 1/")
    with pytest.raises(CancelledError):
        train_mrfusion(Job.load(job), log)
    assert slurm_state(slurm_cluster, submitted_job(log)) == "CANCELLED"
    assert not list(work.iterdir()) and not model.exists()


def test_a_killed_slurm_job_resumes_from_its_checkpoint(tmp_path, scene, slurm_cluster):
    settings = {"epochs": 4, "samples_per_epoch": 192}
    reference_job, reference_model = train_job("mrfusion", tmp_path / "reference", scene,
                                               NO_TEST_SPLIT, **settings)
    with_compute(reference_job, "two", "mpi", **mpi_profile(tmp_path / "mpi-work", 2))
    train_mrfusion(Job.load(reference_job), RecordingReporter())

    work = tmp_path / "work"
    job, model = train_job("mrfusion", tmp_path / "job", scene, NO_TEST_SPLIT, **settings)
    with_compute(job, "cluster", "slurm", **slurm_values(slurm_cluster, work))
    first = BackgroundTraining(job, work)
    first.wait_for_checkpoint()
    subprocess.run(["scancel", submitted_job(first.log)], env=slurm_cluster.env, check=True)
    message = first.error().message
    assert "failed (Slurm state CANCELLED)" in message and "last checkpoint is kept" in message
    assert first.checkpoints() and not model.exists()

    resumed = RecordingReporter()
    train_mrfusion(Job.load(job), resumed)
    assert "resuming from the checkpoint of epoch" in resumed.text()
    expected, got = weights(reference_model), weights(model)
    for name in expected:
        torch.testing.assert_close(got[name], expected[name], rtol=0, atol=0)
    assert not list(work.iterdir())


def test_a_failing_rank_is_reported_with_the_remote_error_text(tmp_path, scene):
    work = tmp_path / "work"
    job, model = train_job("mrfusion", tmp_path / "job", scene, epochs=30)
    with_compute(job, "two", "mpi", **mpi_profile(work, 2))
    run = BackgroundTraining(job, work)
    try:
        run.wait_for_checkpoint()
        ranks = rank_pids(tmp_path)
        assert len(ranks) == 2, fit_processes(tmp_path)
        os.kill(max(ranks), signal.SIGKILL)
        error = run.error()
    except BaseException:  # leaves no 30-epoch training running beside the later tests
        for line in fit_processes(tmp_path):
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(line.split()[0]), signal.SIGKILL)
        raise
    assert error.parameter == "COMPUTE"
    message = error.message
    assert "the training on this machine failed (exit status" in message
    assert "exited on signal 9" in message, message
    assert "last checkpoint is kept" in message
    assert run.checkpoints() and not model.exists()
    assert not fit_processes(tmp_path)


RULE = "-" * 74
OPENMPI_4 = f"""Traceback (most recent call last):
{RULE}
Primary job  terminated normally, but 1 process returned
a non-zero exit code. Per user-direction, the job has been aborted.
{RULE}
{RULE}
mpirun noticed that process rank 1 with PID 0 on node a exited on signal 9 (Killed).
{RULE}
"""
OPENMPI_5 = f"""{RULE}
prterun noticed that process rank 1 with PID 2048 on node a exited on
signal 9 (Killed).
{RULE}
"""
OPENMPI_6 = f"""{RULE}

prterun noticed that process rank 1 with PID 68 on node vm exited on
signal 9 (Killed).
{RULE}

Traceback (most recent call last):
"""
SLURM = """srun: error: a: task 1: Killed
ValueError: a rank's own error, not the launcher's
slurmstepd: error: *** STEP 7.0 ON a CANCELLED AT 2026-12-05T08:00:00 ***
"""


@pytest.mark.parametrize(("stderr", "last"), [
    (OPENMPI_4, "mpirun noticed that process rank 1 with PID 0 on node a exited on signal 9 "
                "(Killed)."),
    (OPENMPI_5, "prterun noticed that process rank 1 with PID 2048 on node a exited on "
                "signal 9 (Killed)."),
    (OPENMPI_6, "prterun noticed that process rank 1 with PID 68 on node vm exited on "
                "signal 9 (Killed)."),
    (SLURM, "slurmstepd: error: *** STEP 7.0 ON a CANCELLED AT 2026-12-05T08:00:00 ***"),
], ids=["openmpi4", "openmpi5", "openmpi6", "slurm"])
def test_launcher_messages_keep_their_wrapped_lines_and_nothing_else(stderr, last):
    messages = launcher_messages(stderr)
    assert messages[-1] == last
    assert not any("ValueError" in message or "Traceback" in message for message in messages)


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
def test_a_profile_promising_gpus_fails_clearly_where_torch_sees_none(tmp_path, scene):
    job, model = train_job("mrfusion", tmp_path / "job", scene)
    with_compute(job, "gpu", "mpi", **mpi_profile(tmp_path / "work", 1), gpus_per_node=1)
    with pytest.raises(LcfusionError) as error:
        train_mrfusion(Job.load(job), RecordingReporter())
    assert error.value.parameter == "COMPUTE"
    assert "the profile gives 1 GPU per node but torch" in error.value.message
    assert "sees none" in error.value.message and not model.exists()


def test_a_lost_connection_is_reported_and_the_job_keeps_its_checkpoint(tmp_path, scene,
                                                                         monkeypatch):
    from services import SshServer

    monkeypatch.setattr(launcher, "RECONNECT_SECONDS", 0.2)  # the tries, not their pauses
    server = SshServer(tmp_path / "sshd").start()
    remote = tmp_path / "remote"
    job, _ = train_job("mrfusion", tmp_path / "job", scene, epochs=40)
    with_compute(job, "gpu", "ssh", **ssh_values(server, remote))
    run = BackgroundTraining(job, remote)
    try:
        run.wait_for_checkpoint(120)
        sessions = subprocess.run(["pgrep", "-P", str(server.process.pid)],
                                  capture_output=True, text=True, check=False).stdout.split()
        server.stop()
        for pid in sessions:
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(pid), signal.SIGKILL)
        error = run.error()
        assert error.parameter == "COMPUTE"
        message = error.message
        assert f"lost the connection to {server.host}:{server.port}" in message
        assert "keeps its last checkpoint" in message and run.checkpoints()
        assert run.log.text().count("; retrying") == launcher.CONNECTION_RETRIES
    finally:
        for line in fit_processes(tmp_path):
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(line.split()[0]), signal.SIGKILL)


ROOT_REFUSAL = f"""{RULE}
mpirun has detected an attempt to run as root.

You can override this protection by adding the --allow-run-as-root option
to the cmd line or by setting two environment variables in the following way:
{RULE}
"""


def test_mpirun_refusing_root_names_the_profile_setting_that_allows_it():
    assert launcher_messages(ROOT_REFUSAL)[-1] == "mpirun has detected an attempt to run as root."
    assert '"--allow-run-as-root" to the profile\'s mpirun_args' in launcher_fix(ROOT_REFUSAL)
    assert launcher_fix(OPENMPI_4) == ""
