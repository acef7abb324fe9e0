"""Data-parallel training under torchrun, on PyTorch's own engine (torch.distributed + DDP).

`torchrun --nproc_per_node=N -m training TASK ...` starts N copies of the task. Each copy joins
one process group (gloo on CPU, NCCL on CUDA), holds the full data, and trains on its shard of
every global batch: --batch-size stays the GLOBAL batch, split evenly across the processes, and
DistributedDataParallel averages the gradients, so one optimiser step sees the same examples as
a single-process step with the same settings. Rank 0 alone evaluates on the validation split
(broadcasting the figures so every rank takes the same early-stopping decision), writes
checkpoints, exports and publishes. When training is over every rank leaves the group together
(finish_training) and the other ranks exit while rank 0 publishes.

Without torchrun (no WORLD_SIZE in the environment, or WORLD_SIZE=1) every function here is a
no-op for a world of one, so the tasks have a single code path.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

import torch
import torch.distributed as dist

T = TypeVar("T")


@dataclass(frozen=True)
class World:
    """Where this process stands among the training processes."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0
    backend: str | None = None

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.size > 1

    def manifest_entry(self) -> dict[str, Any]:
        return {"world_size": self.size, "backend": self.backend,
                "global_batch": "--batch-size, split evenly across the processes"}


def world() -> World:
    """The current process group as a World; a world of one when none was started."""
    if not (dist.is_available() and dist.is_initialized()):
        return World()
    return World(rank=dist.get_rank(), size=dist.get_world_size(),
                 local_rank=int(os.environ.get("LOCAL_RANK", 0)), backend=dist.get_backend())


def backend_for(device: str) -> str:
    """NCCL when the processes train on CUDA devices, gloo otherwise."""
    wants_cuda = device.startswith("cuda") or (device == "auto" and torch.cuda.is_available())
    return "nccl" if wants_cuda else "gloo"


@contextmanager
def process_group(device: str, environ: Mapping[str, str] = os.environ) -> Iterator[World]:
    """Join the group torchrun describes in the environment for the duration of a run."""
    size = int(environ.get("WORLD_SIZE", "1"))
    if size <= 1:
        yield World()
        return
    backend = backend_for(device)
    if backend == "nccl":
        # one device per process, before the group exists, as NCCL requires
        torch.cuda.set_device(int(environ.get("LOCAL_RANK", "0")))
    dist.init_process_group(backend=backend)
    try:
        yield world()
    finally:
        # the task normally closed it already (finish_training); this is the error path, where
        # a rank leaves alone and torchrun stops the others
        if dist.is_initialized():
            dist.destroy_process_group()


def finish_training() -> World:
    """Close the process group now that training is over, on every rank at the same point,
    and return the World it was: rank 0 goes on alone to evaluate, export and publish.

    Together, and before rank 0's long solo part: NCCL wants its communicators torn down
    collectively, and a rank that left a live gloo group alone and exited while rank 0 still
    held it died once in CI in its interpreter's shutdown ("terminate called without an active
    exception", SIGABRT; not reproduced here in ~140 runs). Leaving at a barrier is the path
    every DDP script takes.
    """
    current = world()
    if current.distributed:
        dist.barrier(device_ids=[current.local_rank] if current.backend == "nccl" else None)
        dist.destroy_process_group()
    return current


def device_for(name: str, current: World) -> torch.device:
    """The device of this process: a bare "cuda" (or "auto" on a CUDA machine) becomes
    cuda:LOCAL_RANK when several processes share a machine."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and current.distributed:
        return torch.device("cuda", current.local_rank)
    return torch.device(name)


def shard(indices: Sequence[int] | torch.Tensor, current: World) -> Any:
    """This rank's share of one global batch: every size-th index from position rank, after
    repeating the batch's head so all ranks get equally many (DistributedSampler's padding
    by wrapping around; DDP needs every rank to take the same number of steps of the same size)."""
    if not current.distributed:
        return indices
    n = len(indices)
    total = -(-n // current.size) * current.size
    if isinstance(indices, torch.Tensor):
        return indices[torch.arange(current.rank, total, current.size) % n]
    return [indices[i % n] for i in range(current.rank, total, current.size)]


def broadcast_from_main(value: T, current: World) -> T:
    """Rank 0's value on every rank (a picklable object)."""
    if not current.distributed:
        return value
    box = [value if current.is_main else None]
    dist.broadcast_object_list(box, src=0)
    return box[0]  # type: ignore[return-value]


def sum_over_ranks(values: dict[str, float], current: World) -> dict[str, float]:
    """Per-key sums over all ranks (e.g. loss totals and example counts of an epoch)."""
    if not current.distributed or not values:
        return values
    keys = sorted(values)
    # NCCL reduces CUDA tensors only
    device = torch.device("cuda", current.local_rank) if current.backend == "nccl" else None
    t = torch.tensor([float(values[k]) for k in keys], dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return dict(zip(keys, t.tolist(), strict=True))


def gather_from_ranks(value: T, current: World) -> list[T]:
    """Every rank's value, in rank order, on every rank (a picklable object)."""
    if not current.distributed:
        return [value]
    out: list[Any] = [None] * current.size
    dist.all_gather_object(out, value)
    return out
