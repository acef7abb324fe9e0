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
import random
import sys
import tempfile
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from tqdm import tqdm

from training.distributed import (
    World,
    broadcast_from_main,
    gather_from_ranks,
    sum_over_ranks,
    world,
)
from training.errors import OptionError

Batch = Any
CHECKPOINT_FORMAT = 2  # last.pt with the whole state of the run (resume)
LAST_CHECKPOINT = "last.pt"


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
    resume: bool = False  # continue after the epoch of checkpoint_dir/last.pt


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
    resumed_from_epoch: int | None = None  # the epoch of the checkpoint a resume started from


class TrainingDiverged(FloatingPointError):
    """The loss became NaN or infinite."""


def fit(model: nn.Module, loss_fn: LossFn, train_batches: Callable[[int], Iterable[Batch]],
        evaluate: EvaluateFn, optimizer: torch.optim.Optimizer, config: TrainConfig,
        scheduler: Any | None = None, penalty: PenaltyFn | None = None) -> TrainResult:
    """Train for config.epochs (or until early stopping) and leave the best weights in model.

    train_batches(epoch) yields that epoch's batches; taking the epoch number lets the task
    shuffle reproducibly from its seed (so a resumed run needs no data-order state beyond the
    epoch). The scheduler is stepped once per epoch (with the validation loss for
    ReduceLROnPlateau). With config.resume, training continues after the epoch of
    checkpoint_dir/last.pt, with every state an uninterrupted run would have there.
    """
    if config.epochs < 1:
        raise ValueError("epochs must be >= 1")
    current = world()
    checkpoints = config.checkpoint_dir if current.is_main else None
    if checkpoints is not None:
        checkpoints.mkdir(parents=True, exist_ok=True)
    log = (config.log if current.is_main else None) or (lambda _line: None)
    state = _State(best_state=_copy_state(model))
    if config.resume:
        # said even with --quiet: where a run continues from belongs in its report
        announce = print if current.is_main else (lambda _line: None)
        state = _resume(config.checkpoint_dir, model, optimizer, scheduler, current, announce,
                        state)
    # DDP copies rank 0's weights to every rank here (after a resume, the checkpoint's)
    step = _step_module(model, loss_fn, penalty, current)
    started = time.perf_counter() - state.seconds
    for epoch in range(state.epoch + 1, config.epochs + 1):
        if state.stopped:
            log(f"resume: the run had stopped early after epoch {state.epoch}")
            break
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
        state.history.append(record)
        state.epoch = epoch
        improved = val["loss"] < state.best_loss - config.min_delta
        if improved:
            state.best_loss, state.best_epoch, state.best_val, state.stale = \
                val["loss"], epoch, val, 0
            state.best_state = _copy_state(model)
            _save(checkpoints, "best.pt", {"epoch": epoch, "model": state.best_state, "val": val})
        else:
            state.stale += 1
        stop = None
        early = config.patience is not None and state.stale >= config.patience
        if early:
            stop = (f"early stop: validation loss has not improved for {state.stale} epochs "
                    f"(best epoch {state.best_epoch})")
        elif config.max_seconds is not None and epoch < config.epochs:
            # rank 0's clock and pace decide, so all ranks stop after the same epoch
            elapsed, pace = broadcast_from_main((time.perf_counter() - started, record.seconds),
                                                current)
            if elapsed + pace > config.max_seconds:
                stop = (f"time budget: stopping after {elapsed:.0f}s, another epoch would pass "
                        f"{config.max_seconds:.0f}s (best epoch {state.best_epoch})")
        # an early stop is final, also for a resume; a time budget is the next run's to set
        state.stopped = early
        state.seconds = time.perf_counter() - started
        # every rank's generators, so each continues as it would have (dropout, augmentation)
        rng = gather_from_ranks(_rng_state(), current)
        _save(checkpoints, LAST_CHECKPOINT, state.checkpoint(model, optimizer, scheduler, rng))
        log(_format_epoch(record, config.epochs, improved))
        if stop is not None:
            log(stop)
            break
    model.load_state_dict(state.best_state)
    model.eval()
    return TrainResult(history=state.history, best_epoch=state.best_epoch,
                       best_val=state.best_val, epochs_run=len(state.history),
                       stopped_early=len(state.history) < config.epochs,
                       seconds=time.perf_counter() - started, world=current,
                       resumed_from_epoch=state.resumed_from)


@dataclass
class _State:
    """Everything of a run that the next epoch depends on, as last.pt holds it."""

    best_state: dict[str, torch.Tensor]
    epoch: int = 0
    best_loss: float = math.inf
    best_epoch: int = 0
    best_val: dict[str, float] = field(default_factory=dict)
    stale: int = 0
    stopped: bool = False
    seconds: float = 0.0
    history: list[EpochRecord] = field(default_factory=list)
    resumed_from: int | None = None

    def checkpoint(self, model: nn.Module, optimizer: torch.optim.Optimizer,
                   scheduler: Any | None, rng: list[dict[str, Any]]) -> dict[str, Any]:
        return {
            "format": CHECKPOINT_FORMAT, "epoch": self.epoch, "model": model.state_dict(),
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict() if scheduler is not None else None,
            "best_epoch": self.best_epoch, "best_val_loss": self.best_loss,
            "best_val": self.best_val, "best_model": self.best_state, "stale": self.stale,
            "stopped": self.stopped, "seconds": self.seconds,
            "history": [asdict(r) for r in self.history], "rng": rng,
        }


def _resume(folder: Path | None, model: nn.Module, optimizer: torch.optim.Optimizer,
            scheduler: Any | None, current: World, log: Callable[[str], None],
            fresh: _State) -> _State:
    path = Path(folder) / LAST_CHECKPOINT if folder is not None else None
    if path is None or not path.exists():
        log(f"resume: no checkpoint in {folder}; starting at epoch 1")
        return fresh
    saved = torch.load(path, map_location="cpu", weights_only=True)
    if saved.get("format") != CHECKPOINT_FORMAT:
        raise ResumeError(f"{path}: written by an older trainer without the state to resume; "
                          "train from the start")
    model.load_state_dict(saved["model"])
    optimizer.load_state_dict(saved["optimizer"])
    if scheduler is not None and saved["scheduler"] is not None:
        scheduler.load_state_dict(saved["scheduler"])
    rng = saved["rng"]
    if len(rng) != current.size:
        raise ResumeError(f"{path}: written by {len(rng)} process(es), resumed with "
                          f"{current.size}; resume with the same number")
    _set_rng_state(rng[current.rank])
    device = next(model.parameters()).device
    log(f"resume: continuing after epoch {saved['epoch']} of {path}")
    return _State(
        best_state={k: v.to(device) for k, v in saved["best_model"].items()},
        epoch=saved["epoch"], best_loss=saved["best_val_loss"], best_epoch=saved["best_epoch"],
        best_val=saved["best_val"], stale=saved["stale"], stopped=saved["stopped"],
        seconds=saved["seconds"], history=[EpochRecord(**r) for r in saved["history"]],
        resumed_from=saved["epoch"])


class ResumeError(OptionError):
    """last.pt cannot continue this run (found before any epoch: exit 2)."""


def _rng_state() -> dict[str, Any]:
    # tensors and plain values only, so that torch.load(weights_only=True) reads last.pt
    name, keys, pos, has_gauss, cached = np.random.get_state()
    return {"torch": torch.get_rng_state(),
            "numpy": [name, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, cached],
            "python": random.getstate(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_initialized() else None}


def _set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    random.setstate(state["python"])
    if state["cuda"] is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


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
