"""Mini-batches of in-memory tensors, reshuffled per epoch from the run's seed; under torchrun
each process gets its shard of every global batch (training.distributed)."""

from __future__ import annotations

from collections.abc import Iterator

import torch

from training.distributed import World, shard, world


class ShuffledBatches:
    """batches(epoch) -> that epoch's batches; the order depends only on (seed, epoch), so a
    rerun with the same seed sees the same batches whatever else used the global RNG.

    batch_size is the global batch: with several processes each yields its shard of it, and
    the shards of one step together are exactly the single-process batch."""

    def __init__(self, tensors: tuple[torch.Tensor, ...], batch_size: int, seed: int,
                 current: World | None = None) -> None:
        if not tensors or any(len(t) != len(tensors[0]) for t in tensors):
            raise ValueError("tensors must be non-empty and equally long")
        if batch_size < 1:
            raise ValueError("batch_size must be >= 1")
        self.tensors, self.batch_size, self.seed = tensors, batch_size, seed
        self.world = current if current is not None else world()

    def __call__(self, epoch: int) -> _Epoch:
        generator = torch.Generator().manual_seed(self.seed * 100_003 + epoch)
        order = torch.randperm(len(self.tensors[0]), generator=generator)
        return _Epoch(self.tensors, order.to(self.tensors[0].device), self.batch_size,
                      self.world)


class _Epoch:
    def __init__(self, tensors: tuple[torch.Tensor, ...], order: torch.Tensor,
                 batch_size: int, current: World) -> None:
        self.tensors, self.order, self.batch_size = tensors, order, batch_size
        self.world = current

    def __len__(self) -> int:
        return -(-len(self.order) // self.batch_size)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, ...]]:
        for start in range(0, len(self.order), self.batch_size):
            idx = shard(self.order[start:start + self.batch_size], self.world)
            yield tuple(t[idx] for t in self.tensors)
