import shutil
import subprocess

from tests.conftest import ROOT


def test_ruff_is_clean():
    ruff = shutil.which("ruff") or "ruff"
    result = subprocess.run([ruff, "check", "."], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
