"""Run configs as files: presets, --config FILE, flags over keys, and one-line errors (exit 2)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from training.__main__ import build_parser, main
from training.run_config import PRESETS, ConfigError, resolve
from training.tasks import TASKS

ROOT = Path(__file__).resolve().parents[2]


def resolved(task: str, config_file: Path | None = None, **flags):
    t = TASKS[task]
    return resolve(t.schema, task, t.preset, config_file, flags)


def one_line_error(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err and "Traceback" not in err, err
    return err


@pytest.mark.parametrize("path", sorted(PRESETS.glob("*.yaml")), ids=lambda p: p.stem)
def test_every_shipped_config_validates(path: Path) -> None:
    task = {"mnist": "mnist", "tagger": "tagger", "caption": "caption",
            "translate": "translate"}[path.stem.split("-")[0]]
    config = resolved(task, path)
    assert config.name and config.epochs >= 1


def test_presets_follow_the_variant_and_flags_override_single_keys() -> None:
    cnn = resolved("mnist", arch="cnn", lr=0.01)
    assert (cnn.name, cnn.epochs, cnn.dropout, cnn.lr) == ("mnist-cnn", 6, 0.5, 0.01)
    toy, files = resolved("translate"), resolved("translate", data_dir=Path("d"))
    assert (toy.name, toy.data_kind, toy.vocab_size) == ("translate-toy", "toy", 1000)
    assert (files.name, files.data_kind, files.vocab_size) == ("translate", "files", 3000)


def test_a_config_file_sits_between_preset_and_flags(tmp_path: Path) -> None:
    path = tmp_path / "run.yaml"
    path.write_text("arch: softmax\nepochs: 3\nseed: 7\n")
    config = resolved("mnist", path, seed=9)
    # the softmax preset, then the file, then the flag
    assert (config.name, config.epochs, config.seed, config.lr) == ("mnist-softmax", 3, 9, 0.003)


def test_the_command_line_parses_into_keys() -> None:
    args = vars(build_parser().parse_args(
        ["translate", "--train", "a.es", "a.en", "--toy-sizes", "10,2,2", "--swap",
         "--no-quiet"]))
    assert args["train"] == [Path("a.es"), Path("a.en")] and args["toy_sizes"] == (10, 2, 2)
    assert args["swap"] is True and args["quiet"] is False and "epochs" not in args


@pytest.mark.parametrize("text, expected", [
    ("epochs: 3\nepoch: 4\n", "unknown key 'epoch' for a mnist run"),
    ("epochs: ten\n", "epochs: Input should be a valid integer"),
    ("lr: -1\n", "lr: must be a positive finite number"),
    ("hidden: 12\n", "hidden: Input should be a valid list"),
    ("- epochs\n", "expected a mapping"),
    ("epochs: [\n", "not valid YAML"),
])
def test_config_errors_are_one_line_naming_file_and_key(tmp_path: Path, capsys, text: str,
                                                       expected: str) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    assert main(["mnist", "--config", str(path), "--repository", str(tmp_path / "r")]) == 2
    err = one_line_error(capsys)
    assert f"{path}: " in err and expected in err, err
    assert not (tmp_path / "r").exists()


def test_a_missing_config_file_is_exit_2(tmp_path: Path, capsys) -> None:
    assert main(["mnist", "--config", str(tmp_path / "nope.yaml")]) == 2
    assert "nope.yaml: no such config file" in one_line_error(capsys)


def test_config_errors_exit_2_from_the_command_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("optimiser: adam\n")
    proc = subprocess.run([sys.executable, "-m", "training", "mnist", "--config", str(path)],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.strip() == (f"error: {path}: unknown key 'optimiser' for a mnist run")


def test_a_manifest_retrains_its_version(tmp_path: Path) -> None:
    manifest = tmp_path / "manifest.json"
    training = {**resolved("mnist", arch="cnn", epochs=2, seed=3).model_dump(mode="json"),
                "task": "mnist", "epochs_run": 2, "history": []}
    manifest.write_text(json.dumps({"task": "classify", "training": training}))
    config = resolved("mnist", manifest)
    assert (config.arch, config.epochs, config.seed, config.name) == ("cnn", 2, 3, "mnist-cnn")
    with pytest.raises(ConfigError, match="manifest is of a mnist run, not tagger"):
        resolved("tagger", manifest)


def test_the_resolved_config_reads_back_as_the_same_config(tmp_path: Path) -> None:
    from training.run_config import write_beside_checkpoints

    config = resolved("caption", dataset="folder", data_dir=Path("photos"), epochs=2)
    path = write_beside_checkpoints(config, tmp_path)
    assert yaml.safe_load(path.read_text())["dataset"] == "folder"
    assert resolved("caption", path) == config
