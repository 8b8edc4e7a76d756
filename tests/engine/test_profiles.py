"""Compute profiles: TOML in and out, and errors that say what to fix."""

from __future__ import annotations

import pytest

from lcfusion.engine.compute.profiles import (
    ComputeProfile,
    find_profile,
    load_profiles,
    profiles_toml,
    save_profiles,
)
from lcfusion.engine.errors import LcfusionError

PROFILES = """
[profiles.gpu]
kind = "ssh"
host = "gpu1.example.org"
user = "alice"
port = 2222
identity_file = "~/.ssh/id_ed25519"
work_dir = "/scratch/alice/lcfusion"
python = "/opt/lcfusion/bin/python"
mpirun_args = ["--bind-to", "none"]
ranks = 4
gpus_per_node = 4
path_map = [["/data", "/scratch/alice/data"], ["/data/s2", "/fast/s2"]]

[profiles.cluster]
kind = "slurm"
host = "login.example.org"
partition = "gpu"
nodes = 2
ranks = 4
gpus = 4
time_limit = "02:00:00"
sbatch_lines = ["#SBATCH --account=landcover"]
keep_work_dir = true
"""


def test_profiles_load_and_write_back_unchanged(tmp_path):
    path = tmp_path / "profiles.toml"
    path.write_text(PROFILES)
    profiles = load_profiles(path)
    assert list(profiles) == ["local", "gpu", "cluster"]
    gpu, cluster = profiles["gpu"], profiles["cluster"]
    assert (gpu.kind, gpu.port, gpu.ranks, gpu.mpirun_args) == ("ssh", 2222, 4,
                                                                ("--bind-to", "none"))
    assert gpu.path_map == (("/data", "/scratch/alice/data"), ("/data/s2", "/fast/s2"))
    assert gpu.remote and cluster.remote and not profiles["local"].distributed
    assert cluster.total_ranks == 8 and cluster.keep_work_dir
    copy = tmp_path / "copy.toml"
    save_profiles(copy, profiles)
    assert load_profiles(copy) == profiles
    assert "[profiles.local]" not in profiles_toml(profiles)


def test_a_missing_file_gives_local_only(tmp_path):
    assert list(load_profiles(tmp_path / "none.toml")) == ["local"]
    assert find_profile("", None).kind == "local"


@pytest.mark.parametrize(("text", "expected"), [
    ('[profiles.a]\nkind = "cloud"', "unknown kind 'cloud'"),
    ('[profiles.a]\nkind = "ssh"', "an ssh profile needs a host"),
    ('[profiles.a]\nkind = "mpi"\nranks = 0', "ranks must be at least 1"),
    ('[profiles.a]\nkind = "mpi"\nrank = 2', "unknown key rank"),
    ('[profiles.a]\nkind = "mpi"\nranks = "two"', "ranks = 'two' is not a valid int"),
    ('[profiles.a]\nkind = "slurm"\ntime_limit = "2 hours"', "is not a Slurm time"),
    ('[profiles.a]\nkind = "slurm"\nsbatch_lines = ["rm -rf /"]', "must each start with"),
    ('[profiles.local]\nkind = "mpi"', "'local' is reserved"),
    ('[profiles.a]\nkind = "ssh"\nhost = "h"\npath_map = ["/data", "/shared"]',
     "path_map = ['/data', '/shared'] is not a list of [local prefix, target prefix] pairs"),
    ('[profiles.a]\nkind = "ssh"\nhost = "h"\npath_map = [["data", "/shared"]]',
     "path_map entry 1 maps 'data', which is not an absolute path here"),
    ('[profiles.a]\nkind = "ssh"\nhost = "h"\npath_map = [["/data", "~/shared"]]',
     "path_map entry 1 maps '/data' to '~/shared', which is not an absolute path on the"),
    ('[profiles.a\nkind = "mpi"', "is not valid TOML"),
])
def test_bad_profiles_are_clear_errors(tmp_path, text, expected):
    path = tmp_path / "profiles.toml"
    path.write_text(text)
    with pytest.raises(LcfusionError) as error:
        load_profiles(path)
    assert expected in error.value.message and error.value.parameter == "COMPUTE"


def test_an_unknown_profile_lists_the_known_ones(tmp_path):
    path = tmp_path / "profiles.toml"
    path.write_text(PROFILES)
    with pytest.raises(LcfusionError) as error:
        find_profile("gpu2", path)
    assert "unknown compute profile 'gpu2'" in error.value.message
    assert "local, gpu, cluster" in error.value.message


def test_names_are_checked():
    with pytest.raises(LcfusionError, match="letters, digits"):
        ComputeProfile("my gpu", "mpi")


def test_an_unknown_profile_in_a_missing_file_says_so_and_how_to_define_it(tmp_path):
    path = tmp_path / "profiles.toml"
    with pytest.raises(LcfusionError) as error:
        find_profile("two-cores", path)
    assert f"unknown compute profile 'two-cores' in {path}, which does not exist" in (
        error.value.message)
    assert '[profiles.two-cores] kind = "mpi" ranks = 2' in error.value.message
    path.write_text(PROFILES)
    with pytest.raises(LcfusionError) as error:
        find_profile("two-cores", path)
    assert "which does not exist" not in error.value.message
