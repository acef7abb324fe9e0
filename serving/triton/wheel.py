"""A real tritonserver on this machine, without Docker: the one the nvidia-pytriton wheel ships
(PyPI; Triton 2.51, CPU-capable, python backend). The tests and the benchmark run the Triton form
on it; production runs NVIDIA's image (docker/triton.Dockerfile).

The wheel lives in an environment of its own (`python -m serving.triton wheel-env`, by default
runs/triton-env): its python backend's stub is built with pybind11 2.10, which misreads numpy 2
arrays (BYTES inputs arrive as ones: triton-inference-server/python_backend#384), and the
wheel requires numpy<2, which this project's environment cannot take. That environment holds the
wheel and numpy 1.x only and sees this environment's packages behind them (a .pth file), so the
stub runs this project's code and libraries on numpy 1.x.

The wheel holds bin/tritonserver, backends/python (libtriton_python.so and its utils) and a
python-backend stub per Python version under python_backend_stubs/. What pytriton does before
it starts the server (pytriton.triton.Triton._prepare_triton_inference_server) is done here
without importing pytriton:
- a backend directory whose python/ holds the stub built for this interpreter;
- LD_LIBRARY_PATH with the wheel's bundled libraries (nvidia_pytriton.libs) and this
  interpreter's own libpython (the stub links libpython3.X.so; the system's may differ);
- PATH starting with the environment's bin folder: the stub's embedded Python takes its prefix,
  and so its site-packages, from the first `python3` on PATH (it ignores PYTHONPATH).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import sysconfig
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

WHEEL = "nvidia-pytriton==0.7.0"
STUB_NUMPY = "numpy==1.26.4"
MIN_GLIBC = (2, 35)  # the wheel is manylinux_2_35
CHECKOUT = Path(__file__).resolve().parents[2]
HOST_PTH = "smallserve-host.pth"


def env_dir() -> Path:
    return Path(os.environ.get("SMALLSERVE_TRITON_ENV") or CHECKOUT / "runs" / "triton-env")


def python_version() -> str:
    return f"{sys.version_info.major}.{sys.version_info.minor}"


@dataclass(frozen=True)
class Wheel:
    root: Path  # .../site-packages/pytriton/tritonserver
    bin: Path  # the environment's bin folder (its python3 is the stub's interpreter)

    @property
    def binary(self) -> Path:
        return self.root / "bin" / "tritonserver"

    @property
    def stub(self) -> Path:
        return self.root / "python_backend_stubs" / python_version() / \
            "triton_python_backend_stub"

    @property
    def libraries(self) -> Path:
        return self.root.parent.parent / "nvidia_pytriton.libs"


def find_wheel(env: Path | None = None) -> Wheel | None:
    """The wheel in the environment (found without importing pytriton)."""
    env = env or env_dir()
    root = env / "lib" / f"python{python_version()}" / "site-packages" / "pytriton" / \
        "tritonserver"
    return Wheel(root, env / "bin") if (root / "bin" / "tritonserver").exists() else None


def create_env(env: Path | None = None) -> Wheel:
    """The wheel's environment: a venv of this interpreter with the wheel and numpy 1.x, and
    this environment's packages (the serving package, onnxruntime, ...) behind them."""
    env = env or env_dir()
    _run([sys.executable, "-m", "venv", "--without-pip", "--clear", str(env)])
    # no dependencies: the wheel's Python side (pytriton) is not used, its binaries are
    _run([sys.executable, "-m", "pip", "--python", str(env / "bin" / "python"), "install",
          "--quiet", "--no-deps", WHEEL, STUB_NUMPY])
    site = env / "lib" / f"python{python_version()}" / "site-packages"
    host = dict.fromkeys(sysconfig.get_paths()[k] for k in ("purelib", "platlib"))
    # addsitedir, not a bare path: the host's own .pth files (an editable install) apply too
    (site / HOST_PTH).write_text("".join(f"import site; site.addsitedir({p!r})\n"
                                         for p in host))
    wheel = find_wheel(env)
    if wheel is None:
        raise RuntimeError(f"{WHEEL} installed no tritonserver into {env}")
    return wheel


def ensure_env() -> str | None:
    """Why the wheel's tritonserver cannot run here, after creating its environment where it
    is missing (a download; None: it runs)."""
    if platform_problem() is None and find_wheel() is None:
        try:
            create_env()
        except (OSError, RuntimeError) as e:
            return f"could not create the tritonserver environment at {env_dir()}: {e}"
    return why_not_runnable()


def _run(command: list[str]) -> None:
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(command[:4])} ... failed: {result.stderr[-800:]}")


def platform_problem() -> str | None:
    """Why this machine cannot run the wheel's tritonserver at all (None: it can)."""
    if sys.platform != "linux":
        return f"tritonserver runs on Linux only, this is {sys.platform}"
    libc = os.confstr("CS_GNU_LIBC_VERSION") or ""
    name, _, number = libc.partition(" ")
    if name != "glibc" or tuple(int(p) for p in number.split(".")[:2]) < MIN_GLIBC:
        return f"the wheel's tritonserver needs glibc {'.'.join(map(str, MIN_GLIBC))}, " \
               f"this machine has {libc or 'none'}"
    return None


def why_not_runnable(env: Path | None = None) -> str | None:
    """Why the wheel's tritonserver cannot serve python-backend models here (None: it can)."""
    problem = platform_problem()
    if problem is not None:
        return problem
    wheel = find_wheel(env)
    if wheel is None:
        return f"no tritonserver environment at {env or env_dir()} " \
               "(python -m serving.triton wheel-env)"
    if not wheel.stub.exists():
        return f"the wheel has no python-backend stub for Python {python_version()}"
    return None


def backend_directory(wheel: Wheel, folder: Path) -> Path:
    """--backend-directory for the wheel's python backend with this interpreter's stub."""
    python = folder / "python"
    python.mkdir(parents=True, exist_ok=True)
    for item in (wheel.root / "backends" / "python").iterdir():
        if item.is_file():
            shutil.copy2(item, python / item.name)
    shutil.copy2(wheel.stub, python / "triton_python_backend_stub")
    return folder


def server_environment(wheel: Wheel) -> dict[str, str]:
    libpython = sysconfig.get_config_var("LIBDIR") or ""
    paths = [p for p in (libpython, str(wheel.libraries), os.environ.get("LD_LIBRARY_PATH", ""))
             if p]
    return {**os.environ, "LD_LIBRARY_PATH": ":".join(paths),
            "PATH": f"{wheel.bin}:{os.environ.get('PATH', '')}", "PYTHONUNBUFFERED": "1"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LocalTriton:
    """tritonserver on a Triton model repository, on free loopback ports, until closed.

    with LocalTriton(repo, workdir) as triton: triton.http_url, triton.grpc_target
    """

    def __init__(self, repository: Path | None, workdir: Path, *args: str,
                 launcher: list[str] | None = None, env: dict[str, str] | None = None) -> None:
        """launcher: a command that finds its model repository itself and execs
        $TRITONSERVER with the arguments it is given (docker/triton-serve.sh); repository is
        then None."""
        wheel = find_wheel()
        if wheel is None:
            raise RuntimeError(why_not_runnable())
        self.workdir = workdir
        self.http_port, self.grpc_port = free_port(), free_port()
        self.log_path = workdir / f"tritonserver-{self.http_port}.log"
        binary = str(wheel.binary)
        start = [*launcher] if launcher else [binary, "--model-repository", str(repository)]
        self.args = [*start,
                     "--backend-directory", str(backend_directory(wheel, workdir / "backends")),
                     "--http-address", "127.0.0.1", "--http-port", str(self.http_port),
                     "--grpc-address", "127.0.0.1", "--grpc-port", str(self.grpc_port),
                     "--allow-metrics", "false", "--log-info", "false",
                     "--exit-timeout-secs", "5", *args]
        self.env = {**server_environment(wheel), "TRITONSERVER": binary, **(env or {})}
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def http_url(self) -> str:
        return f"127.0.0.1:{self.http_port}"

    @property
    def grpc_target(self) -> str:
        return f"127.0.0.1:{self.grpc_port}"

    @property
    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def start(self, timeout: float = 180) -> LocalTriton:
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(self.args, stdout=log, stderr=subprocess.STDOUT,
                                            env=self.env,
                                            start_new_session=True)
        self.wait_ready(timeout)
        return self

    def ready(self) -> bool:
        try:
            with urllib.request.urlopen(f"http://{self.http_url}/v2/health/ready",
                                        timeout=2) as response:
                return response.status == 200
        except (urllib.error.URLError, OSError):
            return False

    def wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                raise RuntimeError(f"tritonserver exited with {self.process.returncode}:\n"
                                   f"{self.log[-6000:]}")
            if self.ready():
                return
            time.sleep(0.2)
        raise TimeoutError(f"tritonserver not ready after {timeout}s:\n{self.log[-6000:]}")

    def stop(self, timeout: float = 30) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            # its python-backend stubs are in its process group
            os.killpg(self.process.pid, 9)
            self.process.wait()

    def __enter__(self) -> LocalTriton:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()
