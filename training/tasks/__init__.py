"""One module per training task, each with HELP, add_arguments(parser) and run(args) -> int.

Adding a task (tagger, translate, caption) is one module here and one line in TASKS.
"""

from __future__ import annotations

from types import ModuleType

from training.tasks import caption, mnist, tagger, translate

TASKS: dict[str, ModuleType] = {
    "mnist": mnist,
    "tagger": tagger,
    "translate": translate,
    "caption": caption,
}
