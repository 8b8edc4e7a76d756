"""Real, throw-away sshd and single-node Slurm services for tests (Debian 12, run as root).

All state lives in a temporary folder; daemons run in the foreground as child processes and are
stopped by PID. Fixtures: `ssh_server` and `slurm_cluster` (session-scoped).
"""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

SSHD = "/usr/sbin/sshd"
SSH_TOOLS = ("ssh", "ssh-keygen", "ssh-keyscan", "rsync")
SLURM_TOOLS = ("munged", "slurmctld", "slurmd", "sbatch", "sinfo", "scontrol", "scancel", "squeue")


def free_ports(count: int) -> list[int]:
    """`count` distinct TCP ports on 127.0.0.1 that are free right now."""
    sockets = [socket.socket(socket.AF_INET, socket.SOCK_STREAM) for _ in range(count)]
    try:
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free right now."""
    return free_ports(1)[0]


def services_available() -> str | None:
    """Why the services cannot run here (missing binaries, not root), or None if they can."""
    missing = [tool for tool in SSH_TOOLS + SLURM_TOOLS if shutil.which(tool) is None]
    if not os.path.exists(SSHD):
        missing.append(SSHD)
    if missing:
        return "missing " + ", ".join(missing) + " (make apt installs them)"
    if os.geteuid() != 0:
        return "sshd and Slurm test services need root"
    return None


def current_user() -> str:
    """The name of the user running the tests."""
    return pwd.getpwuid(os.getuid()).pw_name


def _start(args: list[str], log: Path, env: dict[str, str] | None = None) -> subprocess.Popen:
    """Start a foreground daemon in its own session, stdout and stderr appended to `log`."""
    with open(log, "ab") as out:
        return subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=out, stderr=out, env=env,
                                start_new_session=True)


def _stop(process: subprocess.Popen | None, timeout: float = 10.0) -> None:
    """Terminate one child process by PID and wait for it (kill it if it lingers)."""
    if process is None or process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout)


def _tail(path: Path, lines: int = 30) -> str:
    """The last lines of a log file, for error messages."""
    if not path.exists():
        return f"--- {path}: missing"
    text = path.read_text(errors="replace").splitlines()[-lines:]
    return f"--- {path}:\n" + "\n".join(text)


def _keygen(path: Path, comment: str) -> None:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f",
                    str(path)], check=True, stdin=subprocess.DEVNULL)


class SshServer:
    """An sshd on 127.0.0.1 that accepts a throw-away key for the current user."""

    host = "127.0.0.1"

    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)
        self.port = free_port()
        self.user = current_user()
        self.identity_file = self.folder / "client_key"
        self.known_hosts = self.folder / "known_hosts"
        self.log = self.folder / "sshd.log"
        self.config = self.folder / "sshd_config"
        self.process: subprocess.Popen | None = None

    def ssh_args(self) -> list[str]:
        """The ssh command line (without the remote command) that logs in to this server."""
        return ["ssh", *self.ssh_options(), f"{self.user}@{self.host}"]

    def ssh_options(self) -> list[str]:
        """The ssh options alone, e.g. for `rsync -e`."""
        return ["-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=yes", "-o",
                f"UserKnownHostsFile={self.known_hosts}", "-i", str(self.identity_file),
                "-p", str(self.port)]

    def rsync_shell(self) -> str:
        """The value of `rsync -e` that connects to this server."""
        return " ".join(["ssh", *self.ssh_options()])

    def _write_config(self) -> None:
        host_key = self.folder / "host_key"
        _keygen(host_key, "lcfusion-test-host")
        _keygen(self.identity_file, "lcfusion-test-client")
        authorized = self.folder / "authorized_keys"
        shutil.copyfile(self.identity_file.with_suffix(".pub"), authorized)
        authorized.chmod(0o600)
        self.config.write_text("\n".join([
            f"ListenAddress {self.host}",
            f"Port {self.port}",
            f"HostKey {host_key}",
            f"AuthorizedKeysFile {authorized}",
            f"PidFile {self.folder / 'sshd.pid'}",
            "PermitRootLogin prohibit-password",
            "PubkeyAuthentication yes",
            "PasswordAuthentication no",
            "KbdInteractiveAuthentication no",
            "UsePAM no",
            "StrictModes no",
            "PrintMotd no",
            "MaxStartups 100",
            "MaxSessions 100",
            "Subsystem sftp internal-sftp",
            "",
        ]))

    def start(self, timeout: float = 20.0) -> SshServer:
        """Create the keys and config, start sshd and wait until it answers."""
        self.folder.mkdir(parents=True, exist_ok=True)
        self._write_config()
        Path("/run/sshd").mkdir(mode=0o755, parents=True, exist_ok=True)
        self.process = _start([SSHD, "-D", "-e", "-f", str(self.config)], self.log)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                break
            scan = subprocess.run(
                ["ssh-keyscan", "-T", "2", "-t", "ed25519", "-p", str(self.port), self.host],
                capture_output=True, text=True, stdin=subprocess.DEVNULL)
            if scan.returncode == 0 and scan.stdout.strip():
                self.known_hosts.write_text(scan.stdout)
                return self
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"sshd did not start on port {self.port}\n{_tail(self.log)}")

    def stop(self) -> None:
        """Terminate sshd by PID and wait for it."""
        _stop(self.process)
        self.process = None

    def __enter__(self) -> SshServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def usable_cpus() -> int:
    """The cores this process may use, at least 2 (so `srun -n 2` and `mpirun -np 2` run)."""
    return max(2, len(os.sched_getaffinity(0)))


def real_memory_mib() -> int:
    """Half the machine's memory in MiB (Slurm drains a node that claims more than it has)."""
    pages = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    return max(1, pages // (2 * 1024 * 1024))


def slurm_version() -> tuple[int, int]:
    """The installed Slurm's (major, minor) release, from `slurmd -V` ("slurm-wlm 24.11.5")."""
    words = subprocess.run(["slurmd", "-V"], capture_output=True, text=True,
                           check=True).stdout.split()
    major, minor = words[-1].split(".")[:2]
    return int(major), int(minor)


def cgroup_config(version: tuple[int, int]) -> str | None:
    """cgroup.conf for a cluster without cgroups: Slurm 24.05 and later load a cgroup plugin even
    with proctrack/linuxproc and need `CgroupPlugin=disabled`, a value that earlier releases
    reject (None: write no cgroup.conf)."""
    return "CgroupPlugin=disabled\n" if version >= (24, 5) else None


class SlurmCluster:
    """A single-node Slurm cluster (slurmctld + slurmd + munged) with all state in a folder."""

    partition = "debug"
    node = "localhost"

    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)
        self.conf = self.folder / "slurm.conf"
        self.munge_socket = self.folder / "munge" / "munge.socket"
        self.env = {**os.environ, "SLURM_CONF": str(self.conf)}
        self.cpus = usable_cpus()
        self.munged: subprocess.Popen | None = None
        self.slurmctld: subprocess.Popen | None = None
        self.slurmd: subprocess.Popen | None = None

    @property
    def logs(self) -> list[Path]:
        """The daemons' log files."""
        return [self.folder / "munge" / "munged.out", self.folder / "slurmctld.out",
                self.folder / "slurmd.out"]

    def _start_munge(self, timeout: float) -> None:
        munge = self.folder / "munge"
        munge.mkdir(mode=0o755, parents=True, exist_ok=True)
        key = munge / "munge.key"
        key.write_bytes(os.urandom(1024))
        key.chmod(0o400)
        self.munged = _start(
            ["munged", "--foreground", "--force", f"--socket={self.munge_socket}",
             f"--key-file={key}", f"--pid-file={munge / 'munged.pid'}",
             f"--log-file={munge / 'munged.log'}", f"--seed-file={munge / 'munged.seed'}"],
            munge / "munged.out")
        deadline = time.monotonic() + timeout
        while not self.munge_socket.exists():
            if self.munged.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("munged did not start\n" + self._log_tails())
            time.sleep(0.05)

    def _write_config(self) -> None:
        folder = self.folder
        for sub in ("state", "spool"):
            (folder / sub).mkdir(mode=0o755, exist_ok=True)
        ctld_port, slurmd_port = free_ports(2)
        self.conf.write_text("\n".join([
            "ClusterName=lcfusiontest",
            # Slurm looks its addresses up with getaddrinfo(AI_ADDRCONFIG), which finds nothing
            # where only loopback is up (a network namespace) if the family is limited to IPv4,
            # the default; with IPv6 enabled too it looks up either family and still finds
            # 127.0.0.1 (Slurm 26.05: "getaddrinfo((null):port) failed", then no listen port).
            "CommunicationParameters=EnableIPv6",
            "SlurmctldHost=localhost(127.0.0.1)",
            f"SlurmctldPort={ctld_port}",
            f"SlurmdPort={slurmd_port}",
            "SlurmUser=root",
            "SlurmdUser=root",
            f"AuthInfo=socket={self.munge_socket}",
            "AuthType=auth/munge",
            "CredType=cred/munge",
            f"StateSaveLocation={folder / 'state'}",
            f"SlurmdSpoolDir={folder / 'spool'}",
            f"SlurmctldPidFile={folder / 'slurmctld.pid'}",
            f"SlurmdPidFile={folder / 'slurmd.pid'}",
            f"SlurmctldLogFile={folder / 'slurmctld.log'}",
            f"SlurmdLogFile={folder / 'slurmd.log'}",
            "SlurmctldDebug=info",
            "SlurmdDebug=info",
            "ProctrackType=proctrack/linuxproc",
            "TaskPlugin=task/none",
            "SelectType=select/cons_tres",
            "SelectTypeParameters=CR_Core",
            "AccountingStorageType=accounting_storage/none",
            "JobAcctGatherType=jobacct_gather/none",
            "JobCompType=jobcomp/none",
            "MpiDefault=none",
            "MailProg=/bin/true",
            "MinJobAge=3600",
            "ReturnToService=2",
            "SlurmdParameters=config_overrides",
            "SlurmdTimeout=300",
            f"NodeName={self.node} NodeAddr=127.0.0.1 CPUs={self.cpus} Sockets=1 "
            f"CoresPerSocket={self.cpus} ThreadsPerCore=1 RealMemory={real_memory_mib()} "
            "State=UNKNOWN",
            f"PartitionName={self.partition} Nodes={self.node} Default=YES MaxTime=INFINITE "
            "State=UP",
            "",
        ]))
        cgroups = cgroup_config(slurm_version())
        if cgroups is not None:
            (folder / "cgroup.conf").write_text(cgroups)

    def _log_tails(self) -> str:
        return "\n".join(_tail(log) for log in self.logs)

    def _node_state(self) -> str:
        result = subprocess.run(["sinfo", "-h", "-o", "%T"], env=self.env, capture_output=True,
                                text=True, stdin=subprocess.DEVNULL, timeout=20)
        return result.stdout.strip() if result.returncode == 0 else ""

    def start(self, timeout: float = 30.0) -> SlurmCluster:
        """Start munged, slurmctld and slurmd, and wait until the node is idle."""
        self.folder.mkdir(parents=True, exist_ok=True)
        deadline = time.monotonic() + timeout
        try:
            self._start_munge(timeout)
            self._write_config()
            self.slurmctld = _start(["slurmctld", "-D", "-f", str(self.conf)],
                                    self.folder / "slurmctld.out", self.env)
            self.slurmd = _start(["slurmd", "-D", "-f", str(self.conf), "-N", self.node],
                                 self.folder / "slurmd.out", self.env)
            state = ""
            while time.monotonic() < deadline:
                for name, process in (("slurmctld", self.slurmctld), ("slurmd", self.slurmd)):
                    if process.poll() is not None:
                        raise RuntimeError(f"{name} exited with {process.returncode}")
                state = self._node_state()
                if state == "idle":
                    return self
                time.sleep(0.2)
            raise RuntimeError(f"the Slurm node is {state or 'unknown'!r}, not idle")
        except Exception as error:
            message = f"Slurm did not start: {error}\n{self._log_tails()}"
            self.stop()
            raise RuntimeError(message) from error

    def _cancel_jobs(self, timeout: float = 10.0) -> None:
        """Cancel every job so no slurmstepd outlives the cluster."""
        if self.slurmctld is None or self.slurmctld.poll() is not None:
            return
        run = {"env": self.env, "capture_output": True, "text": True,
               "stdin": subprocess.DEVNULL, "timeout": 20}
        subprocess.run(["scancel", "--partition", self.partition], **run)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            queue = subprocess.run(["squeue", "-h", "-o", "%i"], **run)
            if queue.returncode != 0 or not queue.stdout.strip():
                return
            time.sleep(0.2)

    def stop(self) -> None:
        """Cancel the jobs, then stop slurmd, slurmctld and munged by PID."""
        try:
            self._cancel_jobs()
        except (OSError, subprocess.SubprocessError):
            pass
        for name in ("slurmd", "slurmctld", "munged"):
            _stop(getattr(self, name))
            setattr(self, name, None)

    def __enter__(self) -> SlurmCluster:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


@pytest.fixture(scope="session")
def ssh_server(tmp_path_factory) -> Iterator[SshServer]:
    """A started sshd on 127.0.0.1 for the whole test session."""
    reason = services_available()
    if reason:
        pytest.skip(reason)
    with SshServer(tmp_path_factory.mktemp("sshd")) as server:
        yield server


@pytest.fixture(scope="session")
def slurm_cluster(tmp_path_factory) -> Iterator[SlurmCluster]:
    """A started single-node Slurm cluster (partition `debug`) for the whole test session."""
    reason = services_available()
    if reason:
        pytest.skip(reason)
    with SlurmCluster(tmp_path_factory.mktemp("slurm")) as cluster:
        yield cluster
