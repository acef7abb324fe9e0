"""Versions coming and going on a real server: a replacement is loaded and verified before it is
swapped in, a refused version is not read again until its files change, and versions asked for
by number stay within --max-loaded-versions."""

import os
import shutil
import threading
import time
from pathlib import Path

import grpc
import numpy as np
import onnx
import pytest

from serving.client import Client, ClientError
from serving.repository import VersionWriter
from tests.serving.hand_versions import copy_version, file_entry, publish_by_hand, wait_for
from tests.serving.server_process import ServerProcess
from tests.serving.synthetic import classifier_graph, classifier_manifest, publish_classifier

PIXELS = np.zeros((1, 28, 28), np.uint8)
MAX_LOADED = 4


def publish_heavy(repo: Path, name: str) -> None:
    """A classifier of ~25 MB: hashing and loading it take long enough to be seen."""
    with VersionWriter(repo, name) as w:
        onnx.save(classifier_graph(depth=2, hidden=2048), w.path / "model.onnx")
        w.commit(classifier_manifest())


class Hammer:
    """Threads calling one model until stopped; every outcome (code, version) recorded."""

    def __init__(self, target: str, name: str, threads: int = 3) -> None:
        self.outcomes: list[tuple[str, int]] = []
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, args=(target, name))
                         for _ in range(threads)]

    def _run(self, target: str, name: str) -> None:
        with Client(target, timeout=20) as client:
            while not self._stop.is_set():
                try:
                    self.outcomes.append(("OK", client.classify(name, pixels=PIXELS)["version"]))
                except ClientError as e:
                    self.outcomes.append((e.code.name, 0))

    def __enter__(self) -> "Hammer":
        for t in self._threads:
            t.start()
        time.sleep(0.3)
        return self

    def __exit__(self, *exc: object) -> None:
        time.sleep(0.3)
        self._stop.set()
        for t in self._threads:
            t.join()

    def serves(self, version: int) -> bool:
        return bool(self.outcomes) and self.outcomes[-1] == ("OK", version)


@pytest.fixture(scope="module")
def polling_server(tmp_path_factory):
    repo = tmp_path_factory.mktemp("swaps") / "repo"
    publish_heavy(repo, "rollback")
    publish_classifier(repo, "rollback", seed=2)
    publish_heavy(repo, "corrupt")
    publish_classifier(repo, "corrupt", seed=2)
    with ServerProcess(repo, "--poll-interval", "0.1") as server:
        server.repository = repo
        yield server


def test_deleting_the_served_version_under_load_gives_no_not_found(polling_server):
    with Hammer(polling_server.target, "rollback") as hammer:
        assert hammer.serves(2)
        shutil.rmtree(polling_server.repository / "rollback" / "2")
        wait_for(lambda: hammer.serves(1), what="version 1 served")
    codes = {code for code, _ in hammer.outcomes}
    assert codes == {"OK"}, {c: sum(o[0] == c for o in hammer.outcomes) for c in codes}
    assert {v for _, v in hammer.outcomes} == {1, 2}


def test_a_served_version_corrupted_on_disk_is_replaced_only_once_verified(polling_server):
    graph = polling_server.repository / "corrupt" / "2" / "model.onnx"
    good = graph.read_bytes()
    bad = bytearray(good)
    bad[-1] ^= 1
    with Hammer(polling_server.target, "corrupt") as hammer:
        assert hammer.serves(2)
        graph.write_bytes(bad)
        wait_for(lambda: hammer.serves(1), what="the verified version 1 served")
        with Client(polling_server.target) as client:
            errors = client.metadata("corrupt")["version_errors"]
        assert [e["version"] for e in errors] == [2] and "sha256" in errors[0]["reason"]
        graph.write_bytes(good)  # repaired: verified again and served again
        wait_for(lambda: hammer.serves(2), what="the repaired version 2 served")
    assert {code for code, _ in hammer.outcomes} == {"OK"}
    assert "version 2 changed on disk" in polling_server.log


@pytest.fixture(scope="module")
def quiet_server(tmp_path_factory):
    """No scans after the first: the CPU a request costs is all there is."""
    repo = tmp_path_factory.mktemp("remembered") / "repo"
    v1 = publish_classifier(repo, "refused")
    # version 2: a good graph beside 256 MiB whose sha256 is wrong; hashing it takes a while
    files, manifest = copy_version(v1, 2)
    size = 256 << 20
    v2 = publish_by_hand(repo / "refused", 2, files, {
        **manifest, "files": {**manifest["files"],
                              "weights.bin": {**file_entry(b"x"), "bytes": size}}})
    with (v2 / "weights.bin").open("wb") as f:
        f.truncate(size)  # sparse: no disk space, all zeros
    for seed in range(40):
        publish_classifier(repo, "many", seed=seed)
    with ServerProcess(repo, "--poll-interval", "0", "--max-loaded-versions",
                       str(MAX_LOADED)) as server:
        yield server


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def test_requests_naming_a_refused_version_do_not_read_it_again(quiet_server):
    assert "refused version 2 not loaded" in quiet_server.log  # refused by the first scan
    pid = quiet_server.process.pid
    with Client(quiet_server.target) as client:
        client.classify("refused", pixels=PIXELS)  # connected, warm
        before = cpu_seconds(pid)
        for _ in range(6):
            with pytest.raises(ClientError) as caught:
                client.classify("refused", pixels=PIXELS, version=2)
            assert caught.value.code == grpc.StatusCode.NOT_FOUND
            assert "sha256 of weights.bin" in caught.value.details
        spent = cpu_seconds(pid) - before
        assert client.classify("refused", pixels=PIXELS)["version"] == 1
    assert spent < 0.1, f"six refused requests cost {spent:.2f}s of CPU"


def test_a_client_naming_40_versions_leaves_at_most_max_loaded(quiet_server):
    def loaded(client):
        return next(m["versions"] for m in client.list_models() if m["name"] == "many")

    with Client(quiet_server.target) as client:
        for version in range(1, 41):
            assert client.classify("many", pixels=PIXELS, version=version)["version"] == version
            assert len(loaded(client)) <= MAX_LOADED
        assert loaded(client) == [37, 38, 39, 40]  # the latest, then the most recently used
        client.classify("many", pixels=PIXELS, version=38)
        client.classify("many", pixels=PIXELS, version=2)
        assert loaded(client) == [2, 38, 39, 40]
        assert client.classify("many", pixels=PIXELS)["version"] == 40
