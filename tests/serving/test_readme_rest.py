"""The README's curl examples of the REST port, run as they are written against a real server
(only the port changed), each answering JSON without an error."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import pytest

from tests.conftest import ROOT
from tests.serving.server_process import ServerProcess
from tests.serving.synthetic import publish_classifier
from tests.serving.synthetic_seq2seq import publish_translator

MARKER = "<!-- the commands below run in tests/serving/test_readme_rest.py -->"


def readme_commands() -> list[str]:
    text = (ROOT / "README.md").read_text()
    block = text.split(MARKER, 1)[1].split("```bash\n", 1)[1].split("```", 1)[0]
    commands: list[str] = []
    for line in block.splitlines():
        if line.startswith(" ") and commands:
            commands[-1] += "\n" + line  # an argument continued on the next line
        elif line.strip():
            commands.append(line)
    return commands


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    repo = tmp_path_factory.mktemp("readme") / "repo"
    publish_classifier(repo, "mnist-softmax")
    publish_translator(repo, "translate-toy")
    with ServerProcess(repo) as server:
        yield server


def test_the_readme_has_rest_examples():
    commands = readme_commands()
    assert len(commands) >= 4 and all("localhost:8000" in c for c in commands)


@pytest.mark.parametrize("command", readme_commands())
def test_readme_curl_example_runs(server, command):
    command = command.replace("localhost:8000", f"127.0.0.1:{server.http_port}")
    command = re.sub(r"^python ", "$PYTHON ", command)
    result = subprocess.run(["bash", "-c", f"set -o pipefail; {command}"], capture_output=True,
                            text=True, timeout=60,
                            env={"PATH": "/usr/bin:/bin", "PYTHON": sys.executable})
    assert result.returncode == 0, result.stderr
    answer = json.loads(result.stdout)
    assert "error" not in answer, answer
