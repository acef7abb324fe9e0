"""One module per training task, each with a class following training.task.Task.

Adding a task is one module here, its schema in training.config_schema, its preset in
training/configs and one line in TASKS.
"""

from __future__ import annotations

from training.task import Task
from training.tasks.caption import CaptionTask
from training.tasks.mnist import MnistTask
from training.tasks.tagger import TaggerTask
from training.tasks.translate import TranslateTask

TASKS: dict[str, type[Task]] = {
    task.name: task for task in (MnistTask, TaggerTask, TranslateTask, CaptionTask)
}
