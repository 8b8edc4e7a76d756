"""The test services are real: sshd runs commands and rsync, Slurm runs and cancels jobs."""

from __future__ import annotations

import re
import subprocess
import time
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from services import SlurmCluster, SshServer

#: The `ssh_server` and `slurm_cluster` fixtures (registered as a plugin before `services` is
#: imported, so pytest can rewrite its asserts).
pytest_plugins = ["services"]


def job_state(cluster: SlurmCluster, job_id: str) -> str:
    """The JobState that `scontrol show job` reports."""
    result = subprocess.run(["scontrol", "show", "job", job_id], env=cluster.env,
                            capture_output=True, text=True, check=True)
    match = re.search(r"JobState=(\S+)", result.stdout)
    assert match, result.stdout
    return match.group(1)


def wait_for_state(cluster: SlurmCluster, job_id: str, states: set[str],
                   timeout: float = 30.0) -> str:
    """Poll a job until it reaches one of `states`."""
    deadline = time.monotonic() + timeout
    state = ""
    while time.monotonic() < deadline:
        state = job_state(cluster, job_id)
        if state in states:
            return state
        time.sleep(0.2)
    raise AssertionError(f"job {job_id} is {state}, not one of {sorted(states)}")


def sbatch(cluster: SlurmCluster, folder: Path, command: str) -> str:
    """Submit a one-line batch job running in `folder`; returns its id."""
    result = subprocess.run(["sbatch", "--parsable", f"--chdir={folder}",
                             f"--output={folder / 'job-%j.out'}", "--wrap", command],
                            env=cluster.env, capture_output=True, text=True, check=True)
    return result.stdout.strip().split(";")[0]


def test_ssh_runs_a_command_as_the_user(ssh_server: SshServer):
    result = subprocess.run([*ssh_server.ssh_args(), "sh -c 'echo ok; id -un; which rsync'"],
                            capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["ok", ssh_server.user, "/usr/bin/rsync"]


def test_ssh_refuses_an_unknown_host_key(ssh_server: SshServer, tmp_path: Path):
    empty = tmp_path / "known_hosts"
    empty.write_text("")
    args = [arg.replace(str(ssh_server.known_hosts), str(empty))
            for arg in ssh_server.ssh_args()]
    result = subprocess.run([*args, "true"], capture_output=True, text=True, timeout=30)
    assert result.returncode == 255
    assert "Host key verification failed" in result.stderr


def test_rsync_over_ssh_copies_a_folder(ssh_server: SshServer, tmp_path: Path):
    source = tmp_path / "source"
    (source / "sub").mkdir(parents=True)
    (source / "a.txt").write_text("alpha")
    (source / "sub" / "b.bin").write_bytes(bytes(range(256)))
    target = tmp_path / "remote" / "copy"
    target.parent.mkdir()
    result = subprocess.run(["rsync", "-a", "-e", ssh_server.rsync_shell(), f"{source}/",
                             f"{ssh_server.user}@{ssh_server.host}:{target}/"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert (target / "a.txt").read_text() == "alpha"
    assert (target / "sub" / "b.bin").read_bytes() == bytes(range(256))


def test_slurm_runs_a_batch_job(slurm_cluster: SlurmCluster, tmp_path: Path):
    job_id = sbatch(slurm_cluster, tmp_path, "echo hi")
    state = wait_for_state(slurm_cluster, job_id, {"COMPLETED", "FAILED", "CANCELLED"})
    assert state == "COMPLETED"
    assert (tmp_path / f"job-{job_id}.out").read_text().strip() == "hi"


def test_slurm_cancels_a_job(slurm_cluster: SlurmCluster, tmp_path: Path):
    job_id = sbatch(slurm_cluster, tmp_path, "sleep 60")
    wait_for_state(slurm_cluster, job_id, {"RUNNING"})
    subprocess.run(["scancel", job_id], env=slurm_cluster.env, check=True)
    assert wait_for_state(slurm_cluster, job_id, {"CANCELLED", "COMPLETED", "FAILED"}) \
        == "CANCELLED"


def test_a_second_cluster_and_server_start_on_new_ports(tmp_path: Path,
                                                        slurm_cluster: SlurmCluster,
                                                        ssh_server: SshServer):
    from services import SlurmCluster, SshServer

    with SshServer(tmp_path / "sshd") as server, SlurmCluster(tmp_path / "slurm") as cluster:
        assert server.port != ssh_server.port
        assert cluster.conf != slurm_cluster.conf
        result = subprocess.run([*server.ssh_args(), "true"], capture_output=True, timeout=30)
        assert result.returncode == 0
        job_id = sbatch(cluster, tmp_path, "true")
        assert wait_for_state(cluster, job_id, {"COMPLETED", "FAILED"}) == "COMPLETED"


def test_the_cluster_disables_cgroups_only_where_slurm_knows_the_setting():
    from services import cgroup_config

    assert cgroup_config((22, 5)) is None
    assert cgroup_config((23, 11)) is None
    assert cgroup_config((24, 11)) == "CgroupPlugin=disabled\n"
