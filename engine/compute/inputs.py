"""Where a job's input files are on a compute target, and getting them there once.

An input is passed to the target in one of three ways:

* a path GDAL reads over the network (``/vsicurl/``, ``/vsis3/``, ``/vsigs/``, ``/vsiaz/``...,
  an http(s) URL) goes as it is;
* a file under a local prefix of the profile's `path_map` goes as the path on the target's
  shared storage (longest prefix wins); nothing is copied;
* otherwise, on a remote host, the input (with its sidecars such as ``.aux.xml``) is uploaded
  once into the target's input cache, ``<work_dir>/lcfusion-inputs/<digest>/``, named by the
  SHA-256 of its files, and later jobs on the same inputs reuse it. Digests are kept here by
  path, size and modification time, so an unchanged series is hashed once. On this machine
  (an mpi profile, Slurm without a host) the ranks read the input where it is.

This module is pure Python (no torch, no qgis).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import secrets
import tempfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from ..errors import LcfusionError
from ..progress import Reporter
from .launcher import Shell, default_work_dir, target_python
from .profiles import ComputeProfile

INPUT_CACHE = "lcfusion-inputs"
DIGESTS_FILE = "input-digests.json"
CHUNK_BYTES = 8 << 20
#: A GDAL path read over the network, possibly inside archive handlers (/vsizip//vsicurl/...).
GDAL_REMOTE = re.compile(r"^(/vsi[a-z0-9_]+/)*(/vsi(curl|s3|gs|az|adls|oss|swift|webhdfs|hdfs)"
                         r"(_streaming)?/|(https?|ftp)://)", re.IGNORECASE)
#: Prints the size of each path given (-1 for a folder, null when missing) as JSON.
SIZES_SCRIPT = ("import json, os, sys\n"
                "print(json.dumps([os.path.getsize(p) if os.path.isfile(p) else -1 "
                "if os.path.isdir(p) else None for p in sys.argv[1:]]))")
#: Moves the entries ($2...) of a temporary folder ($1) into the cache beside it, unless an
#: entry is there already, then removes the temporary folder.
RENAME_SCRIPT = ('partial=$1; shift; for entry; do if [ -e "$partial/../$entry" ]; then '
                 'rm -rf -- "$partial/$entry"; else mv -- "$partial/$entry" "$partial/../$entry";'
                 ' fi; done; rmdir -- "$partial"')


def is_remote_dataset(value: str) -> bool:
    """Whether GDAL reads `value` over the network: it goes to the target untouched."""
    return bool(GDAL_REMOTE.match(value))


def mapped_path(path_map: tuple[tuple[str, str], ...], path: Path) -> str | None:
    """`path` on the target's shared storage by the longest local prefix of `path_map` that
    holds it (whole folder names only), or None."""
    best: tuple[Path, str] | None = None
    for local, remote in path_map:
        prefix = Path(local).expanduser()
        if path.is_relative_to(prefix) and (best is None
                                            or len(prefix.parts) > len(best[0].parts)):
            best = (prefix, remote)
    if best is None:
        return None
    return str(PurePosixPath(best[1], *path.relative_to(best[0]).parts))


def input_cache(profile: ComputeProfile) -> str:
    """The folder of the target's input cache (beside the job folders)."""
    return f"{default_work_dir(profile).rstrip('/')}/{INPUT_CACHE}"


def digests_file() -> Path:
    """Where the digests of local files are kept: ``lcfusion`` in the user's cache folder."""
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base).expanduser() / "lcfusion" / DIGESTS_FILE


class DigestCache:
    """SHA-256 digests of local files, kept by path, size and modification time in a JSON
    file (a changed file gets a new digest; an unreadable cache file is started afresh)."""

    def __init__(self, path: Path):
        self.path = path
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            data = {}
        self.entries: dict[str, list] = data if isinstance(data, dict) else {}

    def digest(self, file: Path, reporter: Reporter) -> str:
        """The SHA-256 of `file`'s bytes, streamed (progress per file: cancel stops it)."""
        stat = file.stat()
        known = self.entries.get(str(file))
        if isinstance(known, list) and known[:2] == [stat.st_size, stat.st_mtime_ns]:
            return str(known[2])
        sha, done = hashlib.sha256(), 0
        with file.open("rb") as stream:
            while chunk := stream.read(CHUNK_BYTES):
                sha.update(chunk)
                done += len(chunk)
                reporter.progress(done / max(stat.st_size, 1), f"hashing {file.name}")
        self.entries[str(file)] = [stat.st_size, stat.st_mtime_ns, sha.hexdigest()]
        return sha.hexdigest()

    def save(self) -> None:
        """Write the digests of the files that still exist, atomically; a cache that cannot be
        written only costs hashing again."""
        entries = {name: entry for name, entry in self.entries.items() if Path(name).is_file()}
        temporary = self.path.with_name(f".{self.path.name}.{secrets.token_hex(4)}")
        with contextlib.suppress(OSError):
            self.path.parent.mkdir(parents=True, exist_ok=True)
            temporary.write_text(json.dumps(entries), encoding="utf-8")
            os.replace(temporary, self.path)
        with contextlib.suppress(OSError):
            temporary.unlink(missing_ok=True)


@dataclass(frozen=True)
class CachedInput:
    """An input uploaded into the target's cache: `source` (a file or folder here), its files
    by their name in the cache folder, and the digest that names that folder."""

    source: Path
    files: dict[str, Path]
    digest: str

    @property
    def uploads(self) -> list[Path]:
        """What to copy into the cache folder: the input and its sidecars, or the folder."""
        if self.source.is_dir():
            return [self.source]
        return [self.source, *(self.source.with_name(name) for name in self.files
                               if name != self.source.name)]

    @property
    def size(self) -> int:
        return sum(file.stat().st_size for file in self.files.values())


def input_files(source: Path) -> dict[str, Path]:
    """The files of an input by their name in its cache folder: a file with its sidecars
    (``name.*`` beside it: ``.aux.xml``, ``.msk``, ``.ovr``), or a folder's files."""
    if source.is_dir():
        return {path.relative_to(source.parent).as_posix(): path
                for path in sorted(source.rglob("*")) if path.is_file()}
    sidecars = sorted(path for path in source.parent.iterdir()
                      if path.name.startswith(f"{source.name}.") and path.is_file())
    return {path.name: path for path in [source, *sidecars]}


class InputPlacer:
    """Places a job's inputs for `profile`'s target (see the module) and, before the job
    starts, checks the mapped paths and uploads what the target's cache lacks."""

    def __init__(self, profile: ComputeProfile, reporter: Reporter,
                 digests: DigestCache | None = None):
        self.profile, self.reporter = profile, reporter
        self.digests = digests or DigestCache(digests_file())
        self.cache = input_cache(profile)
        self.mapped: dict[str, Path] = {}
        self.cached: dict[str, CachedInput] = {}

    def place(self, path: Path) -> str:
        """The path the job on the target uses for the existing input `path` (a cached input
        relative to the job folder, which is beside the cache)."""
        remote = mapped_path(self.profile.path_map, path)
        if remote is not None:
            self.mapped[remote] = path
            return remote
        if not self.profile.remote:
            return str(path)
        files = input_files(path)
        listing = "".join(f"{name}\t{self.digests.digest(file, self.reporter)}\n"
                          for name, file in files.items())
        entry = CachedInput(path, files, hashlib.sha256(listing.encode()).hexdigest())
        self.cached[entry.digest] = entry
        return f"../{INPUT_CACHE}/{entry.digest}/{path.name}"

    def transfer(self, shell: Shell) -> None:
        """Check that each mapped input is on the target with its size here, and upload the
        cached inputs the target lacks, all in one copy to a temporary folder whose entries
        are then renamed (an entry of the cache is always complete)."""
        self.digests.save()
        checks = list(self.mapped) + [f"{self.cache}/{entry.digest}/{name}"
                                      for entry in self.cached.values() for name in entry.files]
        if not checks:
            return
        sizes = dict(zip(checks, self._sizes(shell, checks), strict=True))
        for remote, path in self.mapped.items():
            self._check_mapped(remote, path, sizes[remote])
        missing, broken = [], []
        for entry in self.cached.values():
            found = [sizes[f"{self.cache}/{entry.digest}/{name}"] for name in entry.files]
            if found == [file.stat().st_size for file in entry.files.values()]:
                self.reporter.info(f"reusing staged input {entry.source}")
                continue
            missing.append(entry)
            incomplete = any(size is not None for size in found)
            if incomplete:
                broken.append(f"{self.cache}/{entry.digest}")
            self.reporter.info(f"uploading {entry.source} ({entry.size / 1e6:.1f} MB) to "
                               f"{self.cache}/{entry.digest}"
                               f"{' (replacing an incomplete copy)' if incomplete else ''}")
        if broken:
            shell.run(["rm", "-rf", "--", *broken])
        if missing:
            self._upload(shell, missing)

    def _sizes(self, shell: Shell, paths: list[str]) -> list[int | None]:
        """The size of each path on the target (-1: a folder; None: missing)."""
        done = shell.run([target_python(self.profile), "-c", SIZES_SCRIPT, *paths])
        try:
            sizes = json.loads(done.stdout.strip().splitlines()[-1])
        except (IndexError, ValueError):
            sizes = None
        if not isinstance(sizes, list) or len(sizes) != len(paths):
            raise LcfusionError(f"cannot check the inputs on {shell.where}: "
                                f"{target_python(self.profile)} printed "
                                f"{done.stdout.strip()[-200:]!r}; check the profile's python",
                                "COMPUTE")
        return sizes

    def _check_mapped(self, remote: str, path: Path, size: int | None) -> None:
        expected = -1 if path.is_dir() else path.stat().st_size
        if size == expected:
            self.reporter.info(f"input {path} is on {self.profile.name}'s storage as {remote}")
            return
        here = "a folder" if expected < 0 else f"{expected} bytes"
        found = ("is missing" if size is None else "is a folder" if size < 0
                 else f"has {size} bytes")
        raise LcfusionError(f"the path_map of compute profile {self.profile.name!r} maps the "
                            f"input {path} ({here}) to {remote}, which {found} on the target; "
                            "correct the prefixes of path_map, or remove the entry to upload "
                            "the input", "COMPUTE")

    def _upload(self, shell: Shell, entries: list[CachedInput]) -> None:
        """Copy `entries` into a temporary folder of the cache (through a tree of links
        here), then move each into place unless another job did meanwhile."""
        partial = f"{self.cache}/.partial-{secrets.token_hex(8)}"
        with tempfile.TemporaryDirectory(prefix="lcf-inputs-") as links:
            for entry in entries:
                folder = Path(links) / entry.digest
                folder.mkdir()
                for path in entry.uploads:
                    (folder / path.name).symlink_to(path)
            try:
                shell.upload_linked(Path(links), partial)
                shell.run(["sh", "-c", RENAME_SCRIPT, "lcfusion-rename", partial,
                           *(entry.digest for entry in entries)])
            except BaseException:
                shell.run(["rm", "-rf", "--", partial], check=False)
                raise
