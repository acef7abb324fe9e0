"""The one training pipeline: every task runs through run(task, config).

seed -> device -> the task's data and model -> the trainer loop (DDP under torchrun, checkpoints
every epoch, resume) -> rank-0 gate -> staged version: the task exports, checks parity and
scores its exported graphs -> the manifest, assembled here from the task's sections -> commit ->
summary. See training.task for what a task supplies.
"""

from __future__ import annotations

import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

from training.config_schema import RunConfig
from training.distributed import finish_training, world
from training.loop import LAST_CHECKPOINT, TrainConfig, TrainResult, fit
from training.outputs import claimed_outputs, staged_version
from training.run_config import check_resume_matches, dump, write_beside_checkpoints
from training.seeding import seed_everything
from training.task import Publication, Task
from training.tasks.common import (
    build_optimizer,
    build_penalty,
    build_scheduler,
    library_versions,
    penalty_strengths,
    resolve_device,
)


def with_checkpoint_dir(config: RunConfig) -> RunConfig:
    """The config with its checkpoint folder filled in (runs/<name>), as the manifest records."""
    if config.checkpoint_dir is not None:
        return config
    return config.model_copy(update={"checkpoint_dir": Path("runs") / config.name})


def run(task: type[Task], config: RunConfig) -> int:
    config = with_checkpoint_dir(config)
    with claimed_outputs(config.repository, config.checkpoint_dir):
        return train_and_publish(task(), config)


def train_and_publish(task: Task, config: RunConfig) -> int:
    started = time.perf_counter()
    if config.resume and (config.checkpoint_dir / LAST_CHECKPOINT).exists():
        # before config.yaml is overwritten with this run's, and before any data is loaded
        check_resume_matches(config, config.checkpoint_dir)
    seed_everything(config.seed)
    device = resolve_device(config.device)
    training = task.prepare(config, device)
    if world().is_main:
        write_beside_checkpoints(config, config.checkpoint_dir)
    optimizer = build_optimizer(config.optimizer, training.model.parameters(), config.lr,
                                config.momentum)
    result = fit(training.model, training.loss, training.batches, training.evaluate, optimizer,
                 loop_config(config),
                 scheduler=build_scheduler(config.lr_schedule, optimizer, config.epochs),
                 penalty=build_penalty(config))
    if not finish_training().is_main:
        return 0  # under torchrun rank 0 alone evaluates, exports and publishes
    training.model.cpu().eval()
    with staged_version(config.repository, config.name) as writer:
        publication = task.publish(writer.path, result)
        manifest = assemble_manifest(task, config, str(device), publication, result,
                                     time.perf_counter() - started)
        version, _ = writer.commit(manifest)
    print(f"published {Path(config.repository) / config.name / str(version)}")
    print(publication.summary)
    return 0


def loop_config(config: RunConfig) -> TrainConfig:
    """The trainer loop's settings from the keys every task shares."""
    return TrainConfig(epochs=config.epochs, patience=config.patience or None,
                       checkpoint_dir=config.checkpoint_dir, grad_clip=config.grad_clip,
                       progress=not config.quiet, log=None if config.quiet else print,
                       max_seconds=config.max_minutes * 60 if config.max_minutes else None,
                       resume=config.resume)


def assemble_manifest(task: Task, config: RunConfig, device: str, publication: Publication,
                      result: TrainResult, wall_seconds: float) -> dict[str, Any]:
    """The one place a manifest is put together: the task's sections, then what every run
    records. `training` starts with the resolved config, so `--config manifest.json` can train
    the version again."""
    l1, l2 = penalty_strengths(config)
    training = {
        **dump(config),
        "task": task.name,
        "device_used": device,
        "l1_effective": l1,
        "l2_effective": l2,
        **publication.training,
        "epochs_run": result.epochs_run,
        "best_epoch": result.best_epoch,
        "stopped_early": result.stopped_early,
        "resumed_from_epoch": result.resumed_from_epoch,
        "train_seconds": round(result.seconds, 2),
        "wall_seconds": round(wall_seconds, 2),
        "distributed": result.world.manifest_entry(),
        "history": [asdict(r) for r in result.history],
    }
    return {
        **publication.sections,
        "parity": publication.parity.manifest_entry(),
        "training": training,
        "libraries": {**library_versions(), **publication.libraries},
    }
