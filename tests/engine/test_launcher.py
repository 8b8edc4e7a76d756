"""The message of a job that failed on a compute target, and the relay of a job's events,
without starting one."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

from helpers import RecordingReporter

from lcfusion.engine.compute.launcher import ERRORS_FILE, EventRelay, JobOutcome, RemoteJob
from lcfusion.engine.compute.profiles import ComputeProfile
from lcfusion.engine.progress import NullReporter

KEPT = "Its last checkpoint is kept; run it again to resume"


def remote_job(work: Path, kind: str, stderr: str) -> RemoteJob:
    remote = RemoteJob(ComputeProfile("target", kind=kind, work_dir=str(work)), work,
                       "0123", NullReporter())
    Path(remote.folder).mkdir(parents=True)
    (Path(remote.folder) / ERRORS_FILE).write_text(stderr, encoding="utf-8")
    return remote


def test_a_failed_job_names_its_state_its_messages_and_what_is_kept(tmp_path):
    remote = remote_job(tmp_path, "slurm", "srun: error: node7: task 1: Killed\n")
    outcome = JobOutcome(error="out of memory.", exit_code=137, state="OUT_OF_MEMORY",
                         parameter="INPUT")
    assert outcome.failed
    error = remote.failure(outcome, "the training", KEPT)
    assert error.message == ("the training on this machine failed (Slurm state OUT_OF_MEMORY): "
                             "out of memory; srun: error: node7: task 1: Killed. " + KEPT)
    assert error.parameter == "INPUT"


def test_a_job_without_a_message_gives_its_exit_status_and_names_compute(tmp_path):
    remote = remote_job(tmp_path, "mpi", "")
    outcome = JobOutcome(outputs={"BLOCKS": 4}, exit_code=1)
    assert outcome.failed and not JobOutcome(outputs={"BLOCKS": 4}, exit_code=0).failed
    error = remote.failure(outcome, "the classification", KEPT)
    assert error.message == ("the classification on this machine failed (exit status 1): "
                             "no message. " + KEPT)
    assert error.parameter == "COMPUTE"


def test_a_warning_every_rank_gives_is_relayed_once():
    """Each rank reads the same inputs and warns about them; the user reads it once. Another
    warning, or the same from a later job, still comes through."""
    log = RecordingReporter()
    relay = EventRelay(log)
    events = [{"event": "log", "level": "warning", "message": message} for message in (
        "rank 1: band names differ from training", "band names differ from training",
        "rank 1: CUDA is not available", "rank 2: band names differ from training")]
    events.append({"event": "log", "level": "info", "message": "2 ranks, each on cpu"})
    relay.feed("".join(json.dumps(event) + "\n" for event in events))
    assert log.lines == ["rank 1: band names differ from training",
                         "rank 1: CUDA is not available", "2 ranks, each on cpu"]
    EventRelay(log).feed(json.dumps(events[1]) + "\n")
    assert log.lines[-1] == "band names differ from training"


def test_a_job_polled_before_it_made_its_session_has_not_ended(tmp_path):
    """The submit script prints the job's id before its setsid has run: a first poll then finds
    no process group of that id, yet the job runs (under load this was reported VANISHED)."""
    remote = remote_job(tmp_path, "mpi", "")
    starting = subprocess.Popen(["sleep", "30"])  # in this process's group, as before setsid
    try:
        remote.handle = str(starting.pid)
        outcome = JobOutcome()
        assert not remote._ended(outcome) and outcome.state is None
    finally:
        starting.kill()
        starting.wait()
    assert remote._ended(outcome) and outcome.state == "VANISHED"
    assert remote.failure(outcome, "the training", KEPT).message.startswith(
        "the training on this machine failed (its processes ended without an exit status): ")


def test_a_job_whose_processes_ended_but_wait_to_be_reaped_has_ended(tmp_path):
    """A cancelled job's orphaned mpirun and ranks end, then wait for the init process to reap
    them (zombies, for seconds where init is slow): the job has ended, and the cancel neither
    waits for them nor kills them."""
    remote = remote_job(tmp_path, "mpi", "")
    running = subprocess.Popen(["sleep", "30"], start_new_session=True)
    ended = subprocess.Popen(["true"], start_new_session=True)  # not waited for: a zombie
    try:
        remote.handle = str(running.pid)
        assert not remote._ended(JobOutcome())
        while Path(f"/proc/{ended.pid}/stat").read_text().split()[2] != "Z":
            time.sleep(0.01)
        assert subprocess.run(["kill", "-0", "--", f"-{ended.pid}"]).returncode == 0
        remote.handle = str(ended.pid)
        outcome = JobOutcome()
        assert remote._ended(outcome) and outcome.state == "VANISHED"
        started = time.monotonic()
        remote._wait_gone(seconds=5.0)  # returns at once, not after 5 s and a SIGKILL
        assert time.monotonic() - started < 3.0
    finally:
        running.kill()
        running.wait()
        ended.wait()
