"""The one trainer loop every task uses (classifier, tagger, translation, captioning).

The loop knows nothing about the task: the task hands it a loss function(model, batch), a way to
produce an epoch's batches, and an evaluate function(model) -> metrics with a "loss" entry on the
validation split. The loop owns what is common: optimiser steps, LR schedule, weight penalty,
early stopping on validation loss, checkpoints, progress display, restoring the best weights,
and, under torchrun, DistributedDataParallel (see training.distributed): the step runs inside
DDP's forward so gradients are averaged across processes, rank 0 alone evaluates, logs and
writes checkpoints, and every rank follows its early-stopping and time-budget decisions.
"""

from __future__ import annotations

import math
import os
import sys
import tempfile
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from tqdm import tqdm

from training.distributed import World, broadcast_from_main, sum_over_ranks, world

Batch = Any


@dataclass
class StepOutput:
    loss: torch.Tensor  # mean data loss over the batch; this is back-propagated
    size: int = 1  # examples in the batch, to weight the epoch average
    # per-batch sums such as {"acc": number correct}; reported as sum / examples per epoch
    sums: dict[str, float] = field(default_factory=dict)


LossFn = Callable[[nn.Module, Batch], "torch.Tensor | StepOutput"]
EvaluateFn = Callable[[nn.Module], dict[str, float]]
PenaltyFn = Callable[[nn.Module], torch.Tensor]


@dataclass
class TrainConfig:
    epochs: int
    patience: int | None = None  # epochs without validation improvement before stopping
    min_delta: float = 0.0  # how much lower the validation loss must be to count as better
    checkpoint_dir: Path | None = None  # best.pt and last.pt go here
    grad_clip: float | None = None  # max global gradient norm
    progress: bool = True  # tqdm bar; shown only when stderr is a terminal
    log: Callable[[str], None] | None = print  # per-epoch lines; None for silence
    # wall-clock budget: no epoch starts that would, at the last epoch's pace, end past it
    max_seconds: float | None = None


@dataclass
class EpochRecord:
    epoch: int
    lr: float
    train: dict[str, float]
    val: dict[str, float]
    seconds: float


@dataclass
class TrainResult:
    history: list[EpochRecord]
    best_epoch: int
    best_val: dict[str, float]
    epochs_run: int
    stopped_early: bool
    seconds: float
    world: World  # the processes that trained it (one, or torchrun's)


class TrainingDiverged(FloatingPointError):
    """The loss became NaN or infinite."""


def fit(model: nn.Module, loss_fn: LossFn, train_batches: Callable[[int], Iterable[Batch]],
        evaluate: EvaluateFn, optimizer: torch.optim.Optimizer, config: TrainConfig,
        scheduler: Any | None = None, penalty: PenaltyFn | None = None) -> TrainResult:
    """Train for config.epochs (or until early stopping) and leave the best weights in model.

    train_batches(epoch) yields that epoch's batches; taking the epoch number lets the task
    shuffle reproducibly from its seed. The scheduler is stepped once per epoch (with the
    validation loss for ReduceLROnPlateau).
    """
    if config.epochs < 1:
        raise ValueError("epochs must be >= 1")
    current = world()
    checkpoints = config.checkpoint_dir if current.is_main else None
    if checkpoints is not None:
        checkpoints.mkdir(parents=True, exist_ok=True)
    log = (config.log if current.is_main else None) or (lambda _line: None)
    step = _step_module(model, loss_fn, penalty, current)
    history: list[EpochRecord] = []
    best_loss, best_epoch, best_val = math.inf, 0, {}
    best_state = _copy_state(model)
    stale = 0
    started = time.perf_counter()
    for epoch in range(1, config.epochs + 1):
        t0 = time.perf_counter()
        lr = optimizer.param_groups[0]["lr"]
        train = _train_epoch(model, step, train_batches(epoch), optimizer, penalty is not None,
                             config, epoch, current)
        model.eval()
        val: dict[str, float] = {}
        if current.is_main:
            with torch.no_grad():
                val = dict(evaluate(model))
        val = broadcast_from_main(val, current)
        if "loss" not in val:
            raise KeyError("evaluate(model) must return a dict with a 'loss' entry")
        if not math.isfinite(val["loss"]):
            raise TrainingDiverged(f"validation loss is {val['loss']} after epoch {epoch}")
        _step_scheduler(scheduler, val["loss"])
        record = EpochRecord(epoch, lr, train, val, time.perf_counter() - t0)
        history.append(record)
        improved = val["loss"] < best_loss - config.min_delta
        if improved:
            best_loss, best_epoch, best_val, stale = val["loss"], epoch, val, 0
            best_state = _copy_state(model)
            _save(checkpoints, "best.pt",
                  {"epoch": epoch, "model": best_state, "val": val})
        else:
            stale += 1
        _save(checkpoints, "last.pt", {
            "epoch": epoch, "model": model.state_dict(), "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict() if scheduler is not None else None,
            "best_epoch": best_epoch, "best_val_loss": best_loss,
        })
        log(_format_epoch(record, config.epochs, improved))
        if config.patience is not None and stale >= config.patience:
            log(f"early stop: validation loss has not improved for {stale} epochs "
                f"(best epoch {best_epoch})")
            break
        if config.max_seconds is not None and epoch < config.epochs:
            # rank 0's clock and pace decide, so all ranks stop after the same epoch
            elapsed, pace = broadcast_from_main((time.perf_counter() - started, record.seconds),
                                                current)
            if elapsed + pace > config.max_seconds:
                log(f"time budget: stopping after {elapsed:.0f}s, another epoch would pass "
                    f"{config.max_seconds:.0f}s (best epoch {best_epoch})")
                break
    model.load_state_dict(best_state)
    model.eval()
    return TrainResult(history=history, best_epoch=best_epoch, best_val=best_val,
                       epochs_run=len(history),
                       stopped_early=len(history) < config.epochs,
                       seconds=time.perf_counter() - started, world=current)


class _Step(nn.Module):
    """One training step's forward: the task's loss plus the weight penalty, as a module so
    that DistributedDataParallel's forward encloses everything the gradients come from."""

    def __init__(self, model: nn.Module, loss_fn: LossFn, penalty: PenaltyFn | None) -> None:
        super().__init__()
        self.model, self.loss_fn, self.penalty = model, loss_fn, penalty

    def forward(self, batch: Batch) -> tuple[StepOutput, torch.Tensor | None]:
        out = self.loss_fn(self.model, batch)
        if not isinstance(out, StepOutput):
            out = StepOutput(out)
        return out, (self.penalty(self.model) if self.penalty is not None else None)


def _step_module(model: nn.Module, loss_fn: LossFn, penalty: PenaltyFn | None,
                 current: World) -> nn.Module:
    step = _Step(model, loss_fn, penalty)
    if not current.distributed:
        return step
    device = next(model.parameters()).device
    # DDP copies rank 0's weights to every rank here, whatever each rank initialised
    return DistributedDataParallel(step, device_ids=[device] if device.type == "cuda" else None)


def _train_epoch(model: nn.Module, step: nn.Module, batches: Iterable[Batch],
                 optimizer: torch.optim.Optimizer, has_penalty: bool, config: TrainConfig,
                 epoch: int, current: World) -> dict[str, float]:
    model.train()
    total_loss, total_penalty, count, steps = 0.0, 0.0, 0, 0
    sums: dict[str, float] = {}
    total = len(batches) if hasattr(batches, "__len__") else None
    bar = tqdm(batches, total=total, desc=f"epoch {epoch}", leave=False, unit="batch",
               disable=not (config.progress and current.is_main and sys.stderr.isatty()))
    for batch in bar:
        out, reg = step(batch)
        loss = out.loss
        if not torch.isfinite(loss):
            raise TrainingDiverged(f"training loss is {loss.item()} in epoch {epoch}; "
                                   "try a lower learning rate")
        objective = loss
        if reg is not None:
            objective = loss + reg
            total_penalty += reg.item()
        optimizer.zero_grad(set_to_none=True)
        objective.backward()
        if config.grad_clip:
            nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
        optimizer.step()
        total_loss += loss.item() * out.size
        count += out.size
        steps += 1
        for k, v in out.sums.items():
            sums[k] = sums.get(k, 0.0) + float(v)
        bar.set_postfix(loss=f"{total_loss / count:.4f}")
    if count == 0:
        raise ValueError(f"epoch {epoch} produced no training batches")
    # the epoch's figures over all ranks' examples, not just this rank's shard
    totals = sum_over_ranks({"loss": total_loss, "examples": count, "penalty": total_penalty,
                             "steps": steps}, current)
    examples = totals["examples"]
    metrics = {"loss": totals["loss"] / examples,
               **{k: v / examples for k, v in sum_over_ranks(sums, current).items()}}
    if has_penalty:
        metrics["penalty"] = totals["penalty"] / totals["steps"]
    return metrics


def _step_scheduler(scheduler: Any | None, val_loss: float) -> None:
    if scheduler is None:
        return
    if isinstance(scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
        scheduler.step(val_loss)
    else:
        scheduler.step()


def _copy_state(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _save(folder: Path | None, name: str, obj: dict[str, Any]) -> None:
    if folder is None:
        return
    # write then rename, so an interrupted run never leaves a half-written checkpoint; the
    # temporary name is unique, so two writers never rename each other's file away
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(obj, f)
        os.chmod(tmp, 0o644)  # mkstemp makes 0600 files; a checkpoint stays readable as before
        os.replace(tmp, folder / name)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _format_epoch(r: EpochRecord, epochs: int, improved: bool) -> str:
    def fmt(d: dict[str, float]) -> str:
        return " ".join(f"{k} {v:.4f}" for k, v in d.items())

    width = len(str(epochs))
    return (f"epoch {r.epoch:>{width}}/{epochs}  train {fmt(r.train)} | val {fmt(r.val)} | "
            f"lr {r.lr:.2e} | {r.seconds:.1f}s{'  *' if improved else ''}")
