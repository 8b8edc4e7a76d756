"""Starting a staged job (a training, or a classification cut into blocks) on a compute target
and following it to the end.

The same job folder runs everywhere; targets differ only in how its command starts:
``mpirun`` on this machine or over ssh, or ``sbatch`` on Slurm (here or over ssh). The job runs
detached, its rank 0 writes JSON-lines events to ``stdout.log`` in the remote folder, and the
launcher follows that file, relays the events, and fetches ``result/`` at the end. Cancel kills
the job's process group or calls ``scancel``. Every command is an argument list; what runs over
ssh is joined with `shlex.join`, so profile values and paths are always quoted.

This module is pure Python (no torch, no qgis).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import CancelledError, LcfusionError
from ..progress import Reporter
from .profiles import ComputeProfile

EVENTS_FILE = "stdout.log"
ERRORS_FILE = "stderr.log"
EXIT_FILE = "exit.code"
RESULT_FOLDER = "result"
SBATCH_FILE = "job.sbatch"
COMMAND_TIMEOUT = 120.0
CONNECTION_RETRIES = 3
#: Seconds between the tries of a lost ssh connection.
RECONNECT_SECONDS = 5.0
#: The first poll of a started job comes after this many seconds; each next one waits twice
#: as long, up to the job's poll interval, so a short job is seen to end at once and a long one
#: is not polled more often than before.
FIRST_POLL_SECONDS = 0.25
#: Starts the job detached in a session of its own and prints that session's id (its
#: process group). Values arrive as arguments ($1 the folder, then the command), never inside
#: the script text.
SUBMIT_SCRIPT = (
    'cd "$1" || exit 97; shift; '
    'PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"; export PYTHONPATH; '
    "setsid sh -c '\"$@\" > stdout.log 2> stderr.log < /dev/null; echo $? > exit.code' "
    'lcfusion-job "$@" > /dev/null 2>&1 < /dev/null & echo $!')
#: Whether a job started by SUBMIT_SCRIPT still runs: a process of its session (process group)
#: or its leader before that has made the session (setsid runs in the background after the
#: submit script printed the id, so a first poll can come first); $1 is the id. A process that
#: ended but waits to be reaped (a zombie: an orphaned mpirun waits for the init process, which
#: may take seconds) has ended. Where ps is not procps's (it must find the script's own shell
#: by session and pid), `kill -0` answers, zombies counting as running; `env kill` is procps's
#: kill: dash's own takes no "--".
ALIVE_SCRIPT = (
    'if ps -o stat= --sid "$$" -p "$$" > /dev/null 2>&1; then '
    'ps -o stat= --sid "$1" -p "$1" | grep -qv "^ *Z"; '
    'else env kill -0 -- "-$1" 2>/dev/null || env kill -0 -- "$1" 2>/dev/null; fi')
PROBE_SCRIPT = """
import importlib, json, platform, sys
info = {"python": sys.executable + " " + platform.python_version(), "missing": []}
for name in ("numpy", "torch", "safetensors", "rasterio", "mpi4py"):
    try:
        importlib.import_module(name)
    except ImportError:
        info["missing"].append(name)
try:
    import torch
    info.update(torch=torch.__version__, cuda=torch.cuda.is_available(),
                gpus=[torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())])
except ImportError:
    info.update(torch=None, cuda=False, gpus=[])
print(json.dumps(info))
"""
#: How mpirun and Slurm start their own messages in a job's stderr.
LAUNCHER_WORDS = ("mpirun", "prterun", "slurmstepd", "srun:", "Primary job", "ORTE")
#: Slurm job states after which a job no longer runs.
SLURM_DONE = ("COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY",
              "PREEMPTED", "BOOT_FAIL", "DEADLINE")


def is_rule(line: str) -> bool:
    """Whether a line of launcher output is a ruler of dashes, equals signs or carets."""
    return not line.strip("-=^ \n")


def launcher_messages(stderr: str) -> list[str]:
    """mpirun's and Slurm's own messages in a job's stderr, one string each. A message framed by
    rulers keeps the lines it wraps onto (OpenMPI 5's prterun breaks "exited on / signal 9"
    over two lines, and OpenMPI 6's puts a blank line after the ruler); an unframed launcher
    line stands alone, and a blank line ends a message."""
    messages: list[str] = []
    after_rule = framed = False
    for raw in stderr.splitlines():
        line = raw.strip()
        if not line:
            framed = False
            continue
        if is_rule(line):
            after_rule, framed = True, False
            continue
        if line.startswith(LAUNCHER_WORDS):
            messages.append(line)
            framed = after_rule
        elif framed:
            messages[-1] += f" {line}"
        after_rule = False
    return messages


#: What to do about a launcher refusal a profile setting answers: (words in stderr, the fix).
LAUNCHER_FIXES = (
    ("--allow-run-as-root",
     'mpirun refuses to run as root: add "--allow-run-as-root" to the profile\'s mpirun_args, '
     "or run QGIS as another user"),
)


def launcher_fix(stderr: str) -> str:
    """The profile change that answers a refusal by mpirun in `stderr`, or ""."""
    return next((fix for words, fix in LAUNCHER_FIXES if words in stderr), "")


class Shell(ABC):
    """Where a profile's commands run: this machine, or a host over ssh."""

    def __init__(self, profile: ComputeProfile):
        self.profile = profile

    @abstractmethod
    def command(self, argv: list[str]) -> list[str]:
        """The local argument list that runs `argv` on the target."""

    @abstractmethod
    def upload(self, local: Path, remote: str) -> None:
        """Copy the contents of folder `local` into folder `remote` (created if missing)."""

    @abstractmethod
    def upload_linked(self, local: Path, remote: str) -> None:
        """Like `upload`, with symbolic links copied as the files and folders they name."""

    @abstractmethod
    def download(self, remote: str, local: Path) -> None:
        """Copy the contents of folder `remote` into folder `local`."""

    @property
    @abstractmethod
    def where(self) -> str: ...

    def run(self, argv: list[str], timeout: float = COMMAND_TIMEOUT,
            check: bool = True) -> subprocess.CompletedProcess:
        """Run `argv` on the target; a failure is an error with its stderr."""
        try:
            done = subprocess.run(self.command(argv), capture_output=True, text=True,
                                  timeout=timeout, env=self.environment(), check=False)
        except FileNotFoundError as exc:
            raise LcfusionError(f"cannot run {exc.filename!r} for {self.where}: it is not "
                                "installed or not on the PATH", "COMPUTE") from exc
        except subprocess.TimeoutExpired as exc:
            raise LcfusionError(f"{shlex.join(argv[:2])} on {self.where} did not answer "
                                f"within {timeout:.0f} s", "COMPUTE") from exc
        if check and done.returncode != 0:
            raise self.failure(argv, done)
        return done

    def failure(self, argv: list[str], done: subprocess.CompletedProcess) -> LcfusionError:
        text = (done.stderr or done.stdout or "").strip().splitlines()[-5:]
        return LcfusionError(f"{shlex.join(argv[:2])} failed on {self.where} (exit "
                             f"{done.returncode}): {' / '.join(text) or 'no message'}",
                             "COMPUTE")

    def environment(self) -> dict[str, str]:
        return dict(os.environ)

    def close(self) -> None:  # noqa: B027 - most shells hold nothing
        """Release what the shell holds (an ssh master connection)."""


class LocalShell(Shell):
    """Commands on this machine, with the profile's environment variables."""

    @property
    def where(self) -> str:
        return "this machine"

    def command(self, argv: list[str]) -> list[str]:
        return list(argv)

    def environment(self) -> dict[str, str]:
        return {**os.environ, **self.profile.env}

    def upload(self, local: Path, remote: str) -> None:
        shutil.copytree(local, Path(remote).expanduser(), dirs_exist_ok=True)

    def upload_linked(self, local: Path, remote: str) -> None:
        self.upload(local, remote)  # copytree copies what links name

    def download(self, remote: str, local: Path) -> None:
        shutil.copytree(Path(remote).expanduser(), local, dirs_exist_ok=True)


class SshShell(Shell):
    """Commands on a host over ssh: batch mode (no password prompt), host keys checked, one
    shared master connection for the polls."""

    def __init__(self, profile: ComputeProfile):
        super().__init__(profile)
        self._control = Path(tempfile.mkdtemp(prefix="lcf-ssh-"))

    @property
    def where(self) -> str:
        return f"{self.profile.host}:{self.profile.port}"

    @property
    def destination(self) -> str:
        profile = self.profile
        return f"{profile.user}@{profile.host}" if profile.user else profile.host

    def transport(self) -> list[str]:
        """ssh and its options, without the destination (also rsync's remote shell)."""
        profile = self.profile
        args = ["ssh", "-o", "BatchMode=yes", "-o",
                f"StrictHostKeyChecking={'accept-new' if profile.accept_new_host_key else 'yes'}",
                "-o", "ConnectTimeout=20", "-o", "ServerAliveInterval=15",
                "-o", "ControlMaster=auto", "-o", f"ControlPath={self._control}/%C",
                "-o", "ControlPersist=60", "-p", str(profile.port)]
        if profile.known_hosts_file:
            args += ["-o", f"UserKnownHostsFile={Path(profile.known_hosts_file).expanduser()}"]
        if profile.identity_file:
            args += ["-o", "IdentitiesOnly=yes", "-i",
                     str(Path(profile.identity_file).expanduser())]
        return args

    def command(self, argv: list[str]) -> list[str]:
        remote = list(argv)
        if self.profile.env:
            remote = ["env", *(f"{k}={v}" for k, v in self.profile.env.items()), *remote]
        return [*self.transport(), "--", self.destination, shlex.join(remote)]

    def _rsync(self, source: str, target: str, *options: str,
               timeout: float | None = 3600) -> None:
        argv = ["rsync", "-a", *options, "--protect-args", "-e", shlex.join(self.transport()),
                source, target]
        try:
            done = subprocess.run(argv, capture_output=True, text=True, check=False,
                                  timeout=timeout)
        except FileNotFoundError as exc:
            raise LcfusionError("rsync is not installed on this machine; install it to "
                                "stage jobs over ssh", "COMPUTE") from exc
        if done.returncode != 0:
            raise self.failure(argv, done)

    def upload(self, local: Path, remote: str) -> None:
        self.run(["mkdir", "-p", remote])
        self._rsync(f"{local}/", f"{self.destination}:{remote}/")

    def upload_linked(self, local: Path, remote: str) -> None:
        self.run(["mkdir", "-p", remote])
        # no time limit: a large input takes as long as the link needs (ssh's keep-alives
        # end a dead connection)
        self._rsync(f"{local}/", f"{self.destination}:{remote}/", "--copy-links", timeout=None)

    def download(self, remote: str, local: Path) -> None:
        local.mkdir(parents=True, exist_ok=True)
        self._rsync(f"{self.destination}:{remote}/", f"{local}/")

    def close(self) -> None:
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            subprocess.run([*self.transport(), "-O", "exit", self.destination],
                           capture_output=True, timeout=10, check=False)
        shutil.rmtree(self._control, ignore_errors=True)


def shell_for(profile: ComputeProfile) -> Shell:
    return SshShell(profile) if profile.remote else LocalShell(profile)


def default_work_dir(profile: ComputeProfile) -> str:
    """Where job folders go on the target: the profile's work dir, else ``lcfusion-jobs`` in
    the remote home, else ``~/.cache/lcfusion/jobs`` here."""
    if profile.work_dir:
        return profile.work_dir
    if profile.remote:
        return "lcfusion-jobs"
    return str(Path.home() / ".cache" / "lcfusion" / "jobs")


def target_python(profile: ComputeProfile) -> str:
    """The profile's Python; by default this engine's own interpreter on this machine and
    ``python3`` on a remote host."""
    return profile.python or ("python3" if profile.remote else sys.executable)


def rank_command(profile: ComputeProfile, ranks: int, command: str = "fit") -> list[str]:
    """mpirun with the profile's arguments, starting the engine's job `command` (the job
    folder's ``job.json``) on each rank."""
    argv = [profile.mpirun, *profile.mpirun_args]
    if profile.hostfile:
        argv += ["--hostfile", profile.hostfile]
    argv += ["-np", str(ranks), "-x", "PYTHONPATH", target_python(profile), "-u", "-m",
             "lcfusion.engine", "--events", "json", command, "job.json"]
    return argv


def sbatch_script(profile: ComputeProfile, name: str, command: str = "fit") -> str:
    """The batch script of a Slurm job: resources from the profile, then mpirun over the
    job's tasks (one batch job; no job array)."""
    lines = ["#!/bin/sh", f"#SBATCH --job-name={name}", f"#SBATCH --output={EVENTS_FILE}",
             f"#SBATCH --error={ERRORS_FILE}", f"#SBATCH --nodes={profile.nodes}",
             f"#SBATCH --ntasks-per-node={profile.ranks}"]
    if profile.partition:
        lines.append(f"#SBATCH --partition={shlex.quote(profile.partition)}")
    if profile.gpus:
        lines.append(f"#SBATCH --gpus-per-node={profile.gpus}")
    if profile.time_limit:
        lines.append(f"#SBATCH --time={profile.time_limit}")
    lines += list(profile.sbatch_lines)
    lines += ['PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"; export PYTHONPATH',
              shlex.join(rank_command(profile, profile.total_ranks, command)),
              "echo $? > exit.code"]
    return "\n".join(lines) + "\n"


@dataclass
class JobOutcome:
    """What the remote run reported."""

    outputs: dict = field(default_factory=dict)
    error: str | None = None
    parameter: str | None = None
    exit_code: int | None = None
    state: str | None = None

    @property
    def failed(self) -> bool:
        """The job reported an error, exited non-zero or gave no result."""
        return bool(self.error) or self.exit_code != 0 or not self.outputs


#: How a rank other than 0 marks its warnings (`FollowerReporter`).
RANK_PREFIX = re.compile(r"^rank [0-9]+: ")


class EventRelay:
    """Relays the engine's JSON-lines events to a reporter; keeps the result and the error.
    A warning that every rank gives about the same inputs is relayed once."""

    def __init__(self, reporter: Reporter):
        self.reporter = reporter
        self.outcome = JobOutcome()
        self._partial = ""
        self._warned: set[str] = set()

    def feed(self, text: str) -> None:
        lines = (self._partial + text).split("\n")
        self._partial = lines.pop()
        for line in lines:
            self._line(line)

    def _line(self, line: str) -> None:
        try:
            event = json.loads(line)
        except json.JSONDecodeError:
            if line.strip():
                self.reporter.debug(line)
            return
        if not isinstance(event, dict):
            return
        kind = event.get("event")
        if kind == "progress" and isinstance(event.get("percent"), int | float):
            self.reporter.progress(float(event["percent"]) / 100, str(event.get("stage") or ""))
        elif kind == "log":
            message, level = str(event.get("message", "")), str(event.get("level", "info"))
            if level == "warning":
                said = RANK_PREFIX.sub("", message)
                if said in self._warned:
                    return
                self._warned.add(said)
            self.reporter.log(message, level)
        elif kind == "result":
            self.outcome.outputs = dict(event.get("outputs") or {})
        elif kind == "error":
            self.outcome.error = str(event.get("message", ""))
            self.outcome.parameter = event.get("parameter")


class RemoteJob:
    """A staged job folder on a compute target: upload, start, follow, cancel, fetch, clean
    (a context manager: leaving it closes the connection)."""

    def __init__(self, profile: ComputeProfile, stage: Path, job_id: str,
                 reporter: Reporter, poll_seconds: float = 1.0, command: str = "fit"):
        self.profile, self.stage, self.reporter = profile, stage, reporter
        self.command = command
        self.shell = shell_for(profile)
        self.folder = f"{default_work_dir(profile).rstrip('/')}/lcfusion-{job_id}"
        self.name = f"lcfusion-{job_id}"
        self.poll_seconds = poll_seconds if not profile.remote else max(poll_seconds, 2.0)
        self.handle: str | None = None
        self._offset = 0

    def run(self, cancelled: Callable[[], bool] = lambda: False) -> JobOutcome:
        """Upload, start and follow the job; cancel it when `cancelled()` turns true or on
        CancelledError. Returns the outcome of a job that ended (successfully or not)."""
        try:
            self.reporter.info(f"staging the job to {self.shell.where}: {self.folder}")
            if self.profile.kind == "slurm":
                (self.stage / SBATCH_FILE).write_text(
                    sbatch_script(self.profile, self.name, self.command), encoding="utf-8")
            self.shell.upload(self.stage, self.folder)
            self.handle = self._start()
            return self._follow(cancelled)
        except CancelledError:
            self.cancel()
            raise

    def __enter__(self) -> RemoteJob:
        return self

    def __exit__(self, *exc_info) -> None:
        self.shell.close()

    def _start(self) -> str:
        self.shell.run(["rm", "-f", "--", *(f"{self.folder}/{name}" for name in (
            EVENTS_FILE, ERRORS_FILE, EXIT_FILE))])
        if self.profile.kind == "slurm":
            done = self.shell.run(["sbatch", "--parsable", f"--chdir={self.folder}",
                                   f"{self.folder}/{SBATCH_FILE}"])
            job = done.stdout.strip().split(";")[0]
            self.reporter.info(f"submitted Slurm job {job}")
            return job
        done = self.shell.run(["sh", "-c", SUBMIT_SCRIPT, "lcfusion-submit", self.folder,
                               *rank_command(self.profile, self.profile.total_ranks,
                                             self.command)])
        group = done.stdout.strip().splitlines()[-1]
        if not re.fullmatch(r"[0-9]+", group):
            raise LcfusionError(f"the job did not start on {self.shell.where}: "
                                f"{done.stdout.strip()} {done.stderr.strip()}", "COMPUTE")
        self.reporter.info(f"job started (process group {group})")
        return group

    def _read_new(self, relay: EventRelay) -> None:
        done = self._retrying(["tail", "-c", f"+{self._offset + 1}",
                               f"{self.folder}/{EVENTS_FILE}"], check=False)
        if done.returncode == 0 and done.stdout:
            self._offset += len(done.stdout.encode("utf-8"))
            relay.feed(done.stdout)

    def _retrying(self, argv: list[str], check: bool = True) -> subprocess.CompletedProcess:
        """Run a poll; a lost ssh connection (exit 255) is retried a few times, then reported
        with ssh's own message; the job itself goes on running and keeps its checkpoint."""
        for attempt in range(CONNECTION_RETRIES + 1):
            done = self.shell.run(argv, check=False)
            if done.returncode != 255 or not self.profile.remote:
                break
            if attempt < CONNECTION_RETRIES:
                self.reporter.warning(f"lost the connection to {self.shell.where}; retrying")
                time.sleep(RECONNECT_SECONDS)
        else:
            raise LcfusionError(
                f"lost the connection to {self.shell.where}: {done.stderr.strip()}; the job may "
                f"still run there and keeps its last checkpoint in {self.folder}; run the "
                "algorithm again with the same inputs to resume", "COMPUTE")
        if check and done.returncode != 0:
            raise self.shell.failure(argv, done)
        return done

    def _ended(self, outcome: JobOutcome) -> bool:
        if self.profile.kind == "slurm":
            done = self._retrying(["scontrol", "-o", "show", "job", str(self.handle)],
                                  check=False)
            fields = dict(part.split("=", 1) for part in done.stdout.split() if "=" in part)
            outcome.state = fields.get("JobState", outcome.state)
            if outcome.state and outcome.state not in SLURM_DONE:
                return False
            if done.returncode != 0 and outcome.state is None:
                outcome.state = "UNKNOWN"
            reason = fields.get("Reason", "None")
            if reason != "None":
                outcome.state = f"{outcome.state}, reason {reason}"
        if self._exit_code(outcome):
            return True
        if self.profile.kind == "slurm":
            return True
        if self._retrying(self._alive_command(), check=False).returncode:
            if not self._exit_code(outcome):
                outcome.state = "VANISHED"
            return True
        return False

    def _alive_command(self) -> list[str]:
        """A command that succeeds while a process of the job runs."""
        return ["sh", "-c", ALIVE_SCRIPT, "lcfusion-alive", str(self.handle)]

    def _exit_code(self, outcome: JobOutcome) -> bool:
        code = self._retrying(["cat", f"{self.folder}/{EXIT_FILE}"], check=False)
        if code.returncode == 0 and re.fullmatch(r"-?[0-9]+", code.stdout.strip()):
            outcome.exit_code = int(code.stdout.strip())
            return True
        return False

    def _follow(self, cancelled: Callable[[], bool]) -> JobOutcome:
        relay = EventRelay(self.reporter)
        wait = min(FIRST_POLL_SECONDS, self.poll_seconds)
        while True:
            if cancelled():
                raise CancelledError()
            self._read_new(relay)
            if self._ended(relay.outcome):
                self._read_new(relay)
                relay.feed("\n")
                return relay.outcome
            time.sleep(wait)
            wait = min(2 * wait, self.poll_seconds)

    def error_text(self, lines: int = 2) -> str:
        """The remote error text: the last words of mpirun or Slurm on a failed rank or node
        from the job's stderr, else its last lines; then the profile change that answers a
        refusal by mpirun, if any."""
        done = self.shell.run(["tail", "-n", "60", f"{self.folder}/{ERRORS_FILE}"],
                              check=False)
        text = [line.strip() for line in done.stdout.splitlines()
                if line.strip() and not is_rule(line)]
        found = (launcher_messages(done.stdout) or text)[-lines:]
        fix = launcher_fix(done.stdout)
        return " / ".join([*found, fix] if fix else found)

    def run_or_fail(self, task: str, kept: str) -> JobOutcome:
        """`run` the job; one that failed raises `failure` (`task` and `kept` say what failed
        and what its folder keeps)."""
        outcome = self.run()
        if outcome.failed:
            raise self.failure(outcome, task, kept)
        return outcome

    def failure(self, outcome: JobOutcome, task: str, kept: str) -> LcfusionError:
        """The error for a failed `outcome`: `task` ("the training") failed on the target with
        its Slurm state or exit status and the job's own message, then `kept`, what the job
        folder keeps and how to go on from it."""
        if outcome.state == "VANISHED":
            state = "its processes ended without an exit status"
        elif outcome.state:
            state = f"Slurm state {outcome.state}"
        else:
            state = f"exit status {outcome.exit_code}"
        detail = "; ".join(part.rstrip(". ") for part in (outcome.error, self.error_text())
                           if part) or "no message"
        return LcfusionError(f"{task} on {self.shell.where} failed ({state}): {detail}. {kept}",
                             outcome.parameter or "COMPUTE")

    def cancel(self) -> None:
        """Stop the job (its whole process group, or scancel) and remove its folder unless the
        profile keeps it."""
        if self.handle is not None:
            self.reporter.info(f"cancelling the job on {self.shell.where}")
            if self.profile.kind == "slurm":
                self.shell.run(["scancel", str(self.handle)], check=False)
                self._wait_slurm_done()
            else:
                self.shell.run(["kill", "-TERM", "--", f"-{self.handle}"], check=False)
                self._wait_gone()
        self.clean()

    def _slurm_state(self) -> str | None:
        done = self.shell.run(["scontrol", "-o", "show", "job", str(self.handle)], check=False)
        fields = dict(part.split("=", 1) for part in done.stdout.split() if "=" in part)
        return fields.get("JobState")

    def _wait_slurm_done(self, seconds: float = 30.0) -> None:
        """Wait until the cancelled job has ended (COMPLETING still has processes)."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline and self._slurm_state() not in (*SLURM_DONE, None):
            time.sleep(0.5)

    def _wait_gone(self, seconds: float = 5.0) -> None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if self.shell.run(self._alive_command(), check=False).returncode != 0:
                return
            time.sleep(0.2)
        self.shell.run(["kill", "-KILL", "--", f"-{self.handle}"], check=False)

    def fetch(self, local: Path) -> Path:
        """Copy the job's result folder here."""
        self.shell.download(f"{self.folder}/{RESULT_FOLDER}", local)
        return local

    def clean(self) -> None:
        if self.profile.keep_work_dir:
            self.reporter.info(f"the job folder is kept on {self.shell.where}: {self.folder}")
            return
        self.shell.run(["rm", "-rf", "--", self.folder], check=False)


def probe(profile: ComputeProfile) -> dict:
    """Check a profile: connect, find the Python, its torch and GPUs, and mpirun (or Slurm)."""
    started = time.monotonic()
    shell = shell_for(profile)
    try:
        done = shell.run([target_python(profile), "-c", PROBE_SCRIPT])
        info = json.loads(done.stdout.strip().splitlines()[-1])
        if profile.kind in ("mpi", "ssh"):
            version = shell.run([profile.mpirun, "--version"], check=False)
            info["mpirun"] = (version.stdout.strip().splitlines() or [None])[0]
        elif profile.kind == "slurm":
            partitions = shell.run(["sinfo", "-h", "-o", "%P %a %D %T"], check=False)
            info["slurm"] = partitions.stdout.strip() or partitions.stderr.strip()
            info["mpirun"] = None
        else:
            info["mpirun"] = None
    finally:
        shell.close()
    info["profile"], info["where"] = profile.name, profile.describe()
    info["seconds"] = round(time.monotonic() - started, 2)
    return info
