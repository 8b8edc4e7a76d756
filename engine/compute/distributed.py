"""Ranks of a distributed run: mpi4py gives rank, size and the rendezvous address,
torch.distributed (NCCL on GPUs, Gloo on CPUs) does the collective work of a training; a
classification cut into blocks needs MPI alone."""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import torch
import torch.distributed as dist

from ..errors import LcfusionError
from .devices import resolve_device

#: Environment variables that show the process was started by an MPI launcher.
MPI_MARKERS = ("OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_RANK", "SLURM_STEP_ID")
RENDEZVOUS_TIMEOUT = timedelta(minutes=5)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("", 0))
        return probe.getsockname()[1]


@dataclass
class Ranks:
    """This process's place among the ranks, and where it computes."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")
    backend: str | None = None
    comm: Any = None

    @property
    def leader(self) -> bool:
        """Rank 0: the only one that writes checkpoints, progress and the model."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.backend is not None

    def all_sum(self, values: list[float]) -> list[float]:
        """The element-wise sum of `values` over the ranks (float64)."""
        if not self.distributed:
            return list(values)
        tensor = torch.tensor(values, dtype=torch.float64,
                              device=self.device if self.backend == "nccl" else "cpu")
        dist.all_reduce(tensor)
        return tensor.tolist()

    def gather(self, value: Any) -> list[Any] | None:
        """Every rank's `value` on rank 0 (None elsewhere); small picklable values only,
        through MPI."""
        if self.comm is None:
            return [value]
        return self.comm.gather(value, root=0)

    def scatter(self, values: list[Any] | None) -> Any:
        """Rank 0's `values[i]` to rank i."""
        if self.comm is None:
            return values[0]
        return self.comm.scatter(values, root=0)

    def broadcast(self, value: Any) -> Any:
        if self.comm is None:
            return value
        return self.comm.bcast(value, root=0)

    def barrier(self) -> None:
        if self.comm is not None:
            self.comm.Barrier()

    def close(self) -> None:
        if self.distributed and dist.is_initialized():
            dist.destroy_process_group()


def started_by_mpi() -> bool:
    return any(name in os.environ for name in MPI_MARKERS)


def mpi_ranks(device_name: str = "auto") -> tuple[Ranks, bool]:
    """This process's rank, size and local rank from MPI, on the GPU of its local rank when
    it computes on CUDA (made the current device, so that ``cuda`` means that GPU), without
    torch.distributed: enough for ranks that share out independent work. Also whether every
    rank runs on this node. Outside mpirun or srun this is a single rank on `device_name`."""
    if not started_by_mpi():
        return Ranks(device=resolve_device(device_name)), True
    try:
        from mpi4py import MPI
    except ImportError as exc:
        raise LcfusionError("this job was started by an MPI launcher but mpi4py is not "
                            "installed in the engine's Python; install python3-mpi4py or "
                            "'pip install mpi4py'", "COMPUTE") from exc
    comm = MPI.COMM_WORLD
    rank, size = comm.Get_rank(), comm.Get_size()
    node = comm.Split_type(MPI.COMM_TYPE_SHARED)
    local_rank, one_node = node.Get_rank(), node.Get_size() == size
    device = resolve_device(device_name)
    if device.type == "cuda":
        device = torch.device("cuda", local_rank % torch.cuda.device_count())
        torch.cuda.set_device(device)
    return Ranks(rank, size, local_rank, device, None, comm), one_node


def join_ranks(device_name: str = "auto") -> Ranks:
    """Join the other ranks: rank and size from MPI, rank 0's host and a free port broadcast
    through MPI as the rendezvous, then torch.distributed with NCCL (GPUs) or Gloo (CPUs).
    Outside mpirun or srun this is a single rank on `device_name` without torch.distributed."""
    ranks, one_node = mpi_ranks(device_name)
    if ranks.comm is None:
        return ranks
    backend = "nccl" if ranks.device.type == "cuda" else "gloo"
    host = "127.0.0.1" if one_node else socket.getfqdn()
    address = ranks.comm.bcast((host, _free_port()) if ranks.leader else None, root=0)
    dist.init_process_group(backend, init_method=f"tcp://{address[0]}:{address[1]}",
                            rank=ranks.rank, world_size=ranks.size,
                            timeout=RENDEZVOUS_TIMEOUT)
    ranks.backend = backend
    return ranks
