"""The one interface a training task implements; training.pipeline runs every task through it.

The pipeline owns what every run does the same way: seed, device, the trainer loop with its
optimiser, schedule, penalty, checkpoints and resume, the rank-0 gate under torchrun, the staged
version in the repository, the manifest's `training`, `parity` and `libraries` blocks, and the
final report. A task supplies only what differs:

  prepare(config, device) -> Training   data, model, loss step, batches, validation
  publish(folder, result) -> Publication   export into the staged version, parity, held-out
                                          scores through the exported graphs, and the manifest
                                          sections only this task knows (graphs, inputs,
                                          outputs, preprocessing, metrics, ...)

A new task is one module in training/tasks with a class following Task, a schema in
training.config_schema and a preset in training/configs.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Protocol

import torch
from torch import nn

from training.config_schema import RunConfig
from training.loop import Batch, EvaluateFn, LossFn, TrainResult


@dataclass
class Training:
    """What the trainer loop needs from a task."""

    model: nn.Module  # the module trained; the task exports it (or the graphs around it)
    loss: LossFn  # (model, batch) -> StepOutput
    batches: Callable[[int], Iterable[Batch]]  # epoch -> that epoch's batches, from the seed
    evaluate: EvaluateFn  # model -> validation metrics with a "loss" entry (early stopping)


class Parity(Protocol):
    max_abs_diff: float

    def manifest_entry(self) -> dict[str, Any]: ...


@dataclass
class Publication:
    """What a task's publish step hands back to the pipeline."""

    sections: dict[str, Any]  # the manifest's task-specific sections, metrics included
    parity: Parity
    summary: str  # the report printed after "published <version>"
    training: dict[str, Any] = field(default_factory=dict)  # task entries of `training`
    libraries: dict[str, str] = field(default_factory=dict)  # versions beyond the common ones


class Task(Protocol):
    name: ClassVar[str]  # the subcommand and the manifest's training.task
    help: ClassVar[str]
    schema: ClassVar[type[RunConfig]]

    @staticmethod
    def preset(given: Mapping[str, Any]) -> str:
        """The preset (training/configs/<name>.yaml) for the keys given by file and flags."""
        ...

    def prepare(self, config: Any, device: torch.device) -> Training: ...

    def publish(self, folder: Path, result: TrainResult) -> Publication: ...


class TaskBase:
    """The preset rule most tasks share: <name>-<value of one key>, e.g. mnist-cnn."""

    name: ClassVar[str]
    variant: ClassVar[tuple[str, str]]  # (key, its default) choosing the preset

    @classmethod
    def preset(cls, given: Mapping[str, Any]) -> str:
        key, default = cls.variant
        return f"{cls.name}-{given.get(key, default)}"

