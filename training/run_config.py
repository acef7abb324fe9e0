"""Run configs as files: YAML in, one validated config out; the command line overrides keys.

A run's config is resolved in three layers, each naming only what it changes:
  1. the task's preset for the variant asked for (training/configs/<preset>.yaml, e.g.
     mnist-cnn.yaml): every value a variant needs, so `python -m training mnist --arch cnn`
     needs no file;
  2. the file given with --config: a YAML config, or a published manifest.json, whose
     `training` block holds the config that version was trained with;
  3. the flags given on the command line, one key each (--batch-size is batch_size).
The result is validated once against the task's schema (training.config_schema). A key the
schema does not know, a value of the wrong type, or a file that cannot be read is a ConfigError:
one line naming the file and the key, exit 2.
"""

from __future__ import annotations

import argparse
import json
import types
import typing
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, TypeAdapter, ValidationError

from training.errors import InputError

PRESETS = Path(__file__).parent / "configs"
CONFIG_FILE = "config.yaml"  # beside the checkpoints: the resolved config of that run


class ConfigError(InputError):
    """A config file or key that cannot be used (exit 2, like a bad option)."""


def read_file(path: Path) -> dict[str, Any]:
    """A YAML config's keys, or those of the config a manifest.json's version was trained with."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such config file") from None
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"{path}: cannot read ({e})") from None
    try:
        data = json.loads(text) if Path(path).suffix == ".json" else yaml.safe_load(text)
    except (yaml.YAMLError, json.JSONDecodeError) as e:
        raise ConfigError(f"{path}: not valid {'JSON' if path.suffix == '.json' else 'YAML'}: "
                          f"{' '.join(str(e).split())}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of keys to values, got "
                          f"{type(data).__name__}")
    if Path(path).suffix == ".json" and "training" in data:
        return dict(data["training"])
    return data


def from_manifest(training: Mapping[str, Any], schema: type[BaseModel],
                  task: str) -> dict[str, Any]:
    """The config keys of a manifest's training block (which also holds what the run measured)."""
    if training.get("task") not in (None, task):
        raise ConfigError(f"the manifest is of a {training['task']} run, not {task}")
    keys = set(schema.model_fields)
    return {k: v for k, v in training.items() if k in keys}


def resolve(schema: type[BaseModel], task: str, preset: Callable[[Mapping[str, Any]], str],
            config_file: Path | None, flags: Mapping[str, Any]) -> BaseModel:
    """The validated config of a run from its three layers (see the module docstring)."""
    layers: list[tuple[str, dict[str, Any]]] = []
    given: dict[str, Any] = {}
    if config_file is not None:
        from_file = read_file(config_file)
        if Path(config_file).suffix == ".json":
            from_file = from_manifest(from_file, schema, task)
        layers.append((str(config_file), from_file))
        given.update(from_file)
    given.update(flags)
    preset_path = PRESETS / f"{preset(given)}.yaml"
    layers.insert(0, (str(preset_path), read_file(preset_path)))
    layers.append(("the command line", dict(flags)))
    merged: dict[str, Any] = {}
    origin: dict[str, str] = {}
    for where, values in layers:
        merged.update(values)
        origin.update(dict.fromkeys(values, where))
    try:
        return schema.model_validate(merged)
    except ValidationError as e:
        error = e.errors()[0]
        key = str(error["loc"][0]) if error["loc"] else "?"
        where = origin.get(key, "the config")
        if error["type"] == "extra_forbidden":
            raise ConfigError(f"{where}: unknown key {key!r} for a {task} run") from None
        if error["type"] == "missing":
            raise ConfigError(f"{where}: {key} is required for a {task} run") from None
        raise ConfigError(f"{where}: {key}: {_message(error)}") from None


def _message(error: Mapping[str, Any]) -> str:
    return str(error["msg"]).removeprefix("Value error, ") + (
        f" (got {error['input']!r})" if "got" not in str(error["msg"]) else "")


def dump(config: BaseModel) -> dict[str, Any]:
    """The config as plain JSON/YAML values (paths as strings, tuples as lists)."""
    return config.model_dump(mode="json")


# what a resumed run may change: how long it goes on, where it runs and publishes, what it
# prints. Anything else (data, model, optimiser, schedule, seed, batch size) would continue a
# different run from this one's weights and optimiser state, and publish it as a run that
# could be trained again from its manifest, which it cannot.
RESUME_MAY_CHANGE = frozenset({"resume", "epochs", "max_minutes", "patience", "quiet", "device",
                               "repository", "name", "checkpoint_dir"})


def check_resume_matches(config: BaseModel, folder: Path) -> None:
    """ConfigError unless config continues the run whose config.yaml is in folder."""
    path = folder / CONFIG_FILE
    if not path.exists():
        return  # a checkpoint folder from before configs were written: nothing to compare
    try:
        saved = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as e:
        raise ConfigError(f"{path}: cannot read the checkpointed run's config: {e}") from None
    current = dump(config)
    saved = saved if isinstance(saved, dict) else {}
    changed = [k for k in dict.fromkeys([*saved, *current])
               if k not in RESUME_MAY_CHANGE and saved.get(k) != current.get(k)]
    if changed:
        shown = ", ".join(f"{k} {saved.get(k)!r} -> {current.get(k)!r}" for k in changed[:4])
        more = f" and {len(changed) - 4} more" if len(changed) > 4 else ""
        raise ConfigError(f"{path}: --resume would continue a different run ({shown}{more}); "
                          f"resume with --config {path}, or start afresh in another "
                          f"--checkpoint-dir")


def write_beside_checkpoints(config: BaseModel, folder: Path) -> Path:
    """<checkpoint_dir>/config.yaml: rerun with `--config` it trains the same run again."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / CONFIG_FILE
    tmp = path.with_name(f".{CONFIG_FILE}.tmp")
    tmp.write_text(yaml.safe_dump(dump(config), sort_keys=False), encoding="utf-8")
    tmp.replace(path)
    return path


# ---- flags made from the schema ----

def add_flags(parser: argparse.ArgumentParser, schema: type[BaseModel]) -> None:
    """One flag per key (batch_size -> --batch-size); unset flags leave the key to the files."""
    parser.add_argument("--config", type=Path, default=None, metavar="FILE",
                        help="a YAML run config, or a published version's manifest.json to "
                             "train that version again; flags override its keys")
    for name, field in schema.model_fields.items():
        flag = "--" + name.replace("_", "-")
        annotation = _without_none(field.annotation)
        default = "" if field.is_required() else f" (default: {_shown(field.default)})"
        help_text = (field.description or "") + default
        options: dict[str, Any] = {"dest": name, "default": argparse.SUPPRESS,
                                   "help": help_text.replace("%", "%%")}
        base = typing.get_origin(annotation)
        if annotation is bool:
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, **options)
        elif base is typing.Literal:
            parser.add_argument(flag, choices=typing.get_args(annotation), **options)
        elif base is list and typing.get_args(annotation) == (Path,):
            parser.add_argument(flag, nargs="+", type=Path, metavar="FILE", **options)
        elif base in (list, tuple):
            parser.add_argument(flag, type=_checked(field, split=True), metavar="N,N,...",
                                **options)
        else:
            parser.add_argument(flag, type=_checked(field), **options)


def _without_none(annotation: Any) -> Any:
    args = typing.get_args(annotation)
    if typing.get_origin(annotation) in (typing.Union, types.UnionType) and type(None) in args:
        annotation = next(a for a in args if a is not type(None))
    while typing.get_origin(annotation) is typing.Annotated:
        annotation = typing.get_args(annotation)[0]
    return annotation


def _shown(value: Any) -> str:
    if isinstance(value, list | tuple):
        return ",".join(map(str, value))
    return str(value)


def _checked(field: Any, split: bool = False) -> Callable[[str], Any]:
    """An argparse type that validates a flag's text as the schema validates the key."""
    adapter: TypeAdapter[Any] = TypeAdapter(field.annotation if not field.metadata else
                                            typing.Annotated[(field.annotation,
                                                              *field.metadata)])

    def parse(text: str) -> Any:
        value: Any = text
        if split:
            value = [s for s in text.split(",") if s.strip()]
        try:
            return adapter.validate_python(value)
        except ValidationError as e:
            raise argparse.ArgumentTypeError(_message(e.errors()[0])) from None
    parse.__name__ = field.annotation.__name__ if hasattr(field.annotation, "__name__") \
        else "value"
    return parse
