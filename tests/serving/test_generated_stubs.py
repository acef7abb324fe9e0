import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_committed_stubs_match_proto():
    result = subprocess.run([sys.executable, str(ROOT / "proto" / "generate.py"), "--check"],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_serving_runs_without_torch():
    # serving/ must run where PyTorch is absent: importing all of it must not pull torch in
    # serving.triton.model is the template of a Triton python-backend model: it runs inside
    # Triton only, where triton_python_backend_utils exists
    code = ("import sys, pkgutil, importlib, serving\n"
            "for m in pkgutil.walk_packages(serving.__path__, 'serving.'):\n"
            "    if m.name != 'serving.triton.model':\n"
            "        importlib.import_module(m.name)\n"
            "bad = [m for m in sys.modules if m.split('.')[0] in ('torch', 'training')]\n"
            "assert not bad, bad\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            cwd=ROOT)
    assert result.returncode == 0, result.stderr
