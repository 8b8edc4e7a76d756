"""Compute profiles: where training and classification run (this process, mpirun here, a host
over ssh, Slurm).

Profiles are named tables of a TOML file (``[profiles.<name>]``); ``local`` always exists. The
file path comes from ``LCFUSION_PROFILES`` or the plugin settings. This module is pure Python
so that the QGIS side can read, edit and write profiles without torch.
"""

from __future__ import annotations

import json
import os
import re
import tomllib
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from ..errors import LcfusionError
from ..wording import counted

PROFILES_ENV = "LCFUSION_PROFILES"
KINDS = ("local", "mpi", "ssh", "slurm")
LOCAL = "local"
_NAME = re.compile(r"^[A-Za-z0-9_-]+$")
_TIME_LIMIT = re.compile(r"^(\d+-)?\d+(:\d{1,2}){0,2}$")


@dataclass(frozen=True)
class ComputeProfile:
    """One compute target. Fields that do not apply to a kind are ignored.

    `ranks`: MPI ranks in all (mpi, ssh; slurm: per node). `gpus_per_node`: GPUs a node offers
    the ranks (0: CPU with Gloo). `host` empty for slurm: Slurm is reached on this machine.
    `path_map`: (local prefix, prefix on the target) pairs: inputs under a local prefix are on
    the target's shared storage, under the other prefix, and are not copied.
    """

    name: str
    kind: str = LOCAL
    host: str = ""
    user: str = ""
    port: int = 22
    identity_file: str = ""
    known_hosts_file: str = ""
    accept_new_host_key: bool = False
    work_dir: str = ""
    python: str = ""
    mpirun: str = "mpirun"
    mpirun_args: tuple[str, ...] = ()
    hostfile: str = ""
    ranks: int = 1
    gpus_per_node: int = 0
    partition: str = ""
    nodes: int = 1
    gpus: int = 0
    time_limit: str = ""
    sbatch_lines: tuple[str, ...] = ()
    keep_work_dir: bool = False
    env: dict[str, str] = field(default_factory=dict)
    path_map: tuple[tuple[str, str], ...] = ()

    def __post_init__(self) -> None:
        where = f"compute profile {self.name!r}"
        if not _NAME.match(self.name):
            raise LcfusionError(f"{where}: a name uses letters, digits, '_' and '-' only",
                                "COMPUTE")
        if self.kind not in KINDS:
            raise LcfusionError(f"{where}: unknown kind {self.kind!r}; use one of "
                                f"{', '.join(KINDS)}", "COMPUTE")
        if self.kind == "ssh" and not self.host:
            raise LcfusionError(f"{where}: an ssh profile needs a host", "COMPUTE")
        for name in ("ranks", "nodes"):
            if getattr(self, name) < 1:
                raise LcfusionError(f"{where}: {name} must be at least 1", "COMPUTE")
        for name in ("gpus_per_node", "gpus"):
            if getattr(self, name) < 0:
                raise LcfusionError(f"{where}: {name} cannot be negative", "COMPUTE")
        if not 0 < self.port < 65536:
            raise LcfusionError(f"{where}: port {self.port} is not a TCP port", "COMPUTE")
        if self.time_limit and not _TIME_LIMIT.match(self.time_limit):
            raise LcfusionError(f"{where}: time limit {self.time_limit!r} is not a Slurm time "
                                "(minutes, HH:MM:SS or D-HH:MM:SS)", "COMPUTE")
        for line in self.sbatch_lines:
            if "\n" in line or not line.startswith("#SBATCH"):
                raise LcfusionError(f"{where}: extra sbatch lines must each start with "
                                    f"'#SBATCH', got {line!r}", "COMPUTE")
        for number, pair in enumerate(self.path_map, 1):
            check_path_pair(where, number, pair)

    @property
    def remote(self) -> bool:
        """Reached over ssh (an ssh profile, or a Slurm profile with a host)."""
        return bool(self.host) and self.kind in ("ssh", "slurm")

    @property
    def distributed(self) -> bool:
        return self.kind != LOCAL

    @property
    def total_ranks(self) -> int:
        return self.ranks * self.nodes if self.kind == "slurm" else self.ranks

    def describe(self) -> str:
        if self.kind == LOCAL:
            return "local: a child process on this machine"
        where = f"{self.user + '@' if self.user else ''}{self.host}" if self.host else "here"
        if self.kind == "mpi":
            return f"mpi: mpirun with {counted(self.ranks, 'rank')} on this machine"
        if self.kind == "ssh":
            return f"ssh: mpirun with {counted(self.ranks, 'rank')} on {where}"
        return (f"slurm: {counted(self.nodes, 'node')} x {counted(self.ranks, 'rank')}"
                f"{' on partition ' + self.partition if self.partition else ''} via {where}")

    def to_json(self) -> dict[str, Any]:
        """Every field except the name, lists as lists (also the TOML table)."""
        data = asdict(self)
        data.pop("name")
        data["mpirun_args"] = list(self.mpirun_args)
        data["sbatch_lines"] = list(self.sbatch_lines)
        data["path_map"] = [list(pair) for pair in self.path_map]
        return data

    @classmethod
    def from_json(cls, name: str, data: dict[str, Any]) -> ComputeProfile:
        known = {f.name: f for f in fields(cls)}
        unknown = sorted(set(data) - set(known) - {"name"})
        if unknown:
            raise LcfusionError(f"compute profile {name!r}: unknown "
                                f"{'key' if len(unknown) == 1 else 'keys'} "
                                f"{', '.join(unknown)}; known: "
                                f"{', '.join(sorted(set(known) - {'name'}))}", "COMPUTE")
        values: dict[str, Any] = {}
        for key, value in data.items():
            if key == "name":
                continue
            kind = known[key].type
            try:
                if kind == "int":
                    if isinstance(value, bool):
                        raise TypeError
                    values[key] = int(value)
                elif kind == "bool":
                    if not isinstance(value, bool):
                        raise TypeError
                    values[key] = value
                elif key == "path_map":
                    values[key] = path_pairs(value)
                elif kind.startswith("tuple"):
                    if isinstance(value, str) or not all(isinstance(v, str) for v in value):
                        raise TypeError
                    values[key] = tuple(value)
                elif kind.startswith("dict"):
                    values[key] = {str(k): str(v) for k, v in dict(value).items()}
                else:
                    if not isinstance(value, str):
                        raise TypeError
                    values[key] = value
            except (TypeError, ValueError):
                if key == "path_map":
                    raise LcfusionError(f"compute profile {name!r}: path_map = {value!r} is not "
                                        "a list of [local prefix, target prefix] pairs; write "
                                        f"{PATH_MAP_FORM}", "COMPUTE") from None
                raise LcfusionError(f"compute profile {name!r}: {key} = {value!r} is not a "
                                    f"valid {kind}", "COMPUTE") from None
        return cls(name=name, **values)


PATH_MAP_FORM = 'path_map = [["/local/prefix", "/prefix/on/the/target"], ...]'


def path_pairs(value: Any) -> tuple[tuple[str, str], ...]:
    """`path_map` as read from TOML or JSON: a list of two-string lists (TypeError if not)."""
    if not isinstance(value, list | tuple):
        raise TypeError
    pairs = []
    for pair in value:
        if not (isinstance(pair, list | tuple) and len(pair) == 2
                and all(isinstance(part, str) for part in pair)):
            raise TypeError
        pairs.append((pair[0], pair[1]))
    return tuple(pairs)


def check_path_pair(where: str, number: int, pair: tuple[str, str]) -> None:
    """A `path_map` pair maps an absolute local prefix to an absolute prefix on the target."""
    local, remote = pair
    if not Path(local).expanduser().is_absolute():
        raise LcfusionError(f"{where}: path_map entry {number} maps {local!r}, which is not an "
                            f"absolute path here; write {PATH_MAP_FORM}", "COMPUTE")
    if not remote.startswith("/"):
        raise LcfusionError(f"{where}: path_map entry {number} maps {local!r} to {remote!r}, "
                            f"which is not an absolute path on the target (it starts with '/');"
                            f" write {PATH_MAP_FORM}", "COMPUTE")


def load_profiles(path: str | Path | None) -> dict[str, ComputeProfile]:
    """The profiles of a TOML file, ``local`` first (a missing file gives ``local`` only)."""
    profiles = {LOCAL: ComputeProfile(LOCAL)}
    if not path:
        return profiles
    path = Path(path).expanduser()
    if not path.is_file():
        return profiles
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise LcfusionError(f"the compute profiles file {path} is not valid TOML: {exc}",
                            "COMPUTE") from None
    tables = data.get("profiles", {})
    if not isinstance(tables, dict):
        raise LcfusionError(f"{path}: 'profiles' must be a table of profiles", "COMPUTE")
    for name, table in tables.items():
        if name == LOCAL:
            raise LcfusionError(f"{path}: the profile name 'local' is reserved for training in "
                                "a child process here; rename profiles.local", "COMPUTE")
        if not isinstance(table, dict):
            raise LcfusionError(f"{path}: profiles.{name} must be a table", "COMPUTE")
        profiles[name] = ComputeProfile.from_json(name, table)
    return profiles


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{json.dumps(k)} = {json.dumps(v)}"
                                for k, v in value.items()) + " }"
    return "[" + ", ".join(json.dumps(v) for v in value) + "]"


def profiles_toml(profiles: dict[str, ComputeProfile]) -> str:
    """TOML text of the profiles (``local`` is implicit and not written); values that keep their
    default are left out."""
    defaults = ComputeProfile(LOCAL).to_json()
    lines = ["# lcfusion compute profiles (see the plugin help, 'Compute profiles')"]
    for name, profile in profiles.items():
        if name == LOCAL:
            continue
        lines += ["", f"[profiles.{name}]"]
        data = profile.to_json()
        lines.append(f"kind = {_toml_value(data.pop('kind'))}")
        lines += [f"{key} = {_toml_value(value)}" for key, value in data.items()
                  if value != defaults[key]]
    return "\n".join(lines) + "\n"


def save_profiles(path: str | Path, profiles: dict[str, ComputeProfile]) -> None:
    """Write the profiles file atomically (the old file stays if writing fails)."""
    path = Path(path).expanduser()
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.partial")
    temporary.write_text(profiles_toml(profiles), encoding="utf-8")
    os.replace(temporary, path)


def find_profile(name: str, path: str | Path | None) -> ComputeProfile:
    """The profile called `name` (an empty name is ``local``); an unknown name is an error that
    lists the known ones."""
    profiles = load_profiles(path)
    name = (name or LOCAL).strip()
    if name not in profiles:
        raise LcfusionError(f"unknown compute profile {name!r}{_profiles_file_state(path)}; "
                            f"known: {', '.join(profiles)}. {_profile_hint(name)}", "COMPUTE")
    return profiles[name]


def _profiles_file_state(path: str | Path | None) -> str:
    """Where profiles were looked for, for an error: the file, and whether it exists."""
    if not path:
        return f" (no profiles file: set {PROFILES_ENV})"
    missing = "" if Path(path).expanduser().is_file() else ", which does not exist"
    return f" in {path}{missing}"


def _profile_hint(name: str) -> str:
    """How to define profile `name`: a TOML table, the settings dialog or the variable."""
    table = f"[profiles.{name}]" if _NAME.match(name) else "[profiles.<name>]"
    return (f"Define it in that file as a table such as {table} kind = \"mpi\" ranks = 2 (see "
            "the README's compute profiles section), in Plugins > Land Cover Fusion > "
            f"Settings, or point {PROFILES_ENV} at another file")
