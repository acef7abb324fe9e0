"""Mini-batches of in-memory tensors, reshuffled per epoch from the run's seed."""

from __future__ import annotations

from collections.abc import Iterator

import torch


class ShuffledBatches:
    """batches(epoch) -> that epoch's batches; the order depends only on (seed, epoch), so a
    rerun with the same seed sees the same batches whatever else used the global RNG."""

    def __init__(self, tensors: tuple[torch.Tensor, ...], batch_size: int, seed: int) -> None:
        if not tensors or any(len(t) != len(tensors[0]) for t in tensors):
            raise ValueError("tensors must be non-empty and equally long")
        if batch_size < 1:
            raise ValueError("batch_size must be >= 1")
        self.tensors, self.batch_size, self.seed = tensors, batch_size, seed

    def __call__(self, epoch: int) -> _Epoch:
        generator = torch.Generator().manual_seed(self.seed * 100_003 + epoch)
        order = torch.randperm(len(self.tensors[0]), generator=generator)
        return _Epoch(self.tensors, order.to(self.tensors[0].device), self.batch_size)


class _Epoch:
    def __init__(self, tensors: tuple[torch.Tensor, ...], order: torch.Tensor,
                 batch_size: int) -> None:
        self.tensors, self.order, self.batch_size = tensors, order, batch_size

    def __len__(self) -> int:
        return -(-len(self.order) // self.batch_size)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, ...]]:
        for start in range(0, len(self.order), self.batch_size):
            idx = self.order[start:start + self.batch_size]
            yield tuple(t[idx] for t in self.tensors)
