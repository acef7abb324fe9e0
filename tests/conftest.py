import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
# Real MNIST beside the checkout (CI and developers have it); tests needing it skip without it.
SHARED_MNIST = Path(os.environ.get("SMALLSERVE_MNIST_DIR",
                                   ROOT.parent / "shared" / "data" / "mnist"))

# tests/oip imports tritonclient's gRPC protos and tests/kserve the kserve SDK's, each of which
# define the same `inference.*` symbols as the server's own: protobuf refuses two in one
# process, so tests/serving/test_oip_clients.py runs each folder in a process of its own.
OIP_ENV = "SMALLSERVE_OIP_PROCESS"
CLIENT_FOLDERS = ("oip", "kserve")
collect_ignore = [f for f in CLIENT_FOLDERS if os.environ.get(OIP_ENV) != f]


def train_tiny_mnist(repository: Path, name: str = "mnist", *extra: str) -> Path:
    """Train a small softmax regression on the bundled digits through the real CLI."""
    cmd = [sys.executable, "-m", "training", "mnist", "--arch", "softmax", "--epochs", "2",
           "--limit-train", "2000", "--repository", str(repository), "--name", name,
           "--seed", "0", "--quiet", *extra]
    result = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr
    return repository / name


@pytest.fixture(scope="session")
def trained_repository(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A model repository holding one tiny MNIST classifier trained and exported for real."""
    repository = tmp_path_factory.mktemp("repository")
    train_tiny_mnist(repository)
    return repository


@pytest.fixture(scope="session")
def test_digits():
    """Real MNIST digits the model never trained on (the bundled set's held-out test split)."""
    from training.data.mnist import load_mnist

    test = load_mnist(None).test
    return test.take(np.random.default_rng(0).permutation(len(test)))
