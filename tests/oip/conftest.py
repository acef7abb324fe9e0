import shutil

import pytest

from tests.conftest import SHARED_MNIST, train_tiny_mnist
from tests.serving.server_process import ServerProcess


@pytest.fixture(scope="session")
def oip_repository(tmp_path_factory):
    """The tiny softmax model, plus an MLP trained on real MNIST when the data is here."""
    repository = tmp_path_factory.mktemp("oip") / "repo"
    train_tiny_mnist(repository, "mnist")
    if SHARED_MNIST.is_dir():
        train_tiny_mnist(repository, "mnist-mlp", "--arch", "mlp", "--data-dir",
                         str(SHARED_MNIST), "--limit-train", "60000", "--epochs", "3")
    return repository


@pytest.fixture(scope="session")
def oip_server(oip_repository):
    with ServerProcess(oip_repository, "--max-batch-size", "256") as server:
        yield server
    shutil.rmtree(oip_repository, ignore_errors=True)
