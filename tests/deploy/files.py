"""Readers for the deployment files, so the tests can check them without a Docker engine.

Small on purpose: they understand the subset of Dockerfile, Compose and requirements syntax that
this repository uses, and fail loudly on anything else rather than guess.
"""

from __future__ import annotations

import fnmatch
import json
import re
import shlex
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

import yaml

from tests.conftest import ROOT

DOCKERFILES = {
    "server": ROOT / "docker" / "server.Dockerfile",
    "server-gpu": ROOT / "docker" / "server-gpu.Dockerfile",
    "trainer": ROOT / "docker" / "trainer.Dockerfile",
    "triton": ROOT / "docker" / "triton.Dockerfile",
}
COMPOSE_FILE = ROOT / "docker-compose.yml"
ENVOY_FILE = ROOT / "deploy" / "envoy" / "envoy.yaml"
KSERVE_FILE = ROOT / "deploy" / "kserve" / "inferenceservice.yaml"
KSERVE_TRITON_FILE = ROOT / "deploy" / "kserve" / "triton-inferenceservice.yaml"



def tool(name: str) -> str | None:
    """An executable from the venv running the tests (not on PATH unless activated), or PATH."""
    beside = Path(sys.executable).parent / name
    return str(beside) if beside.exists() else shutil.which(name)


# ---------------------------------------------------------------- Dockerfiles

@dataclass
class Instruction:
    keyword: str              # upper case: FROM, RUN, COPY ...
    flags: dict[str, str]     # --from=build, --interval=10s ...
    args: str                 # the rest, as written

    def exec_form(self) -> list[str]:
        """["a", "b"] (JSON) or shell words."""
        return json.loads(self.args) if self.args.startswith("[") else shlex.split(self.args)


@dataclass
class Stage:
    base: str                 # the image, ARG defaults substituted
    name: str | None
    instructions: list[Instruction] = field(default_factory=list)

    def all(self, keyword: str) -> list[Instruction]:
        return [i for i in self.instructions if i.keyword == keyword]

    def last(self, keyword: str) -> Instruction | None:
        found = self.all(keyword)
        return found[-1] if found else None

    def env(self) -> dict[str, str]:
        env: dict[str, str] = {}
        for instruction in self.all("ENV"):
            for word in shlex.split(instruction.args):
                key, sep, value = word.partition("=")
                assert sep, f"ENV {instruction.args!r}: use the KEY=VALUE form"
                env[key] = value
        return env


@dataclass
class Dockerfile:
    path: Path
    args: dict[str, str]      # global ARGs (before the first FROM) and their defaults
    stages: list[Stage]

    @property
    def final(self) -> Stage:
        return self.stages[-1]

    def stage(self, name: str) -> Stage:
        return next(s for s in self.stages if s.name == name)

    def source_of(self, image_path: str, stage: Stage | None = None) -> Path | None:
        """The repository file that ends up at `image_path` in a stage, following COPY --from."""
        stage = stage or self.final
        wanted = PurePosixPath(image_path)
        for copy in reversed(stage.all("COPY")):
            *sources, dest = shlex.split(copy.args)
            for source in sources:
                target = PurePosixPath(dest)
                if dest.endswith("/") or len(sources) > 1:
                    target = target / PurePosixPath(source).name
                if wanted != target and target not in wanted.parents:
                    continue
                rest = wanted.relative_to(target)
                if "from" in copy.flags:
                    origin = str(PurePosixPath(source) / rest)
                    return self.source_of(origin, self.stage(copy.flags["from"]))
                return ROOT / source / rest
        return None


_FLAG = re.compile(r"--([a-z-]+)=(\S+)\s*")


def parse_dockerfile(path: Path) -> Dockerfile:
    args: dict[str, str] = {}
    stages: list[Stage] = []
    for line in _logical_lines(path.read_text()):
        keyword, _, rest = line.partition(" ")
        keyword, rest = keyword.upper(), rest.strip()
        flags = {}
        while (m := _FLAG.match(rest)) is not None:
            flags[m.group(1)] = m.group(2)
            rest = rest[m.end():]
        if keyword == "ARG" and not stages:
            name, _, default = rest.partition("=")
            args[name] = default
        elif keyword == "FROM":
            words = rest.split()
            base = re.sub(r"\$\{(\w+)\}|\$(\w+)", lambda m: args[m.group(1) or m.group(2)],
                          words[0])
            name = words[2] if len(words) == 3 and words[1].upper() == "AS" else None
            stages.append(Stage(base, name))
        else:
            assert stages, f"{path.name}: {keyword} before the first FROM"
            stages[-1].instructions.append(Instruction(keyword, flags, rest))
    return Dockerfile(path, args, stages)


def _logical_lines(text: str) -> list[str]:
    """Instructions with their continuation lines joined; comments and directives dropped."""
    lines, current = [], ""
    for raw in text.splitlines():
        stripped = raw.strip()
        if stripped.startswith("#") or (not stripped and not current):
            continue
        if stripped.endswith("\\"):
            current += stripped[:-1] + " "
            continue
        lines.append((current + stripped).strip())
        current = ""
    assert not current, "a Dockerfile ends inside a continued line"
    return [line for line in lines if line]


def dockerignore_excludes(relative: str) -> bool:
    """Whether .dockerignore keeps `relative` (a path inside the repository) out of the context."""
    excluded = False
    for raw in (ROOT / ".dockerignore").read_text().splitlines():
        pattern = raw.strip()
        if not pattern or pattern.startswith("#"):
            continue
        negate = pattern.startswith("!")
        pattern = pattern.lstrip("!").strip("/")
        parts = PurePosixPath(relative).parts
        candidates = ["/".join(parts[:i]) for i in range(1, len(parts) + 1)]
        if pattern.startswith("**/"):
            tail = pattern[3:]
            hit = any(fnmatch.fnmatchcase(part, tail) for part in parts)
        else:
            hit = any(fnmatch.fnmatchcase(c, pattern) for c in candidates)
        if hit:
            excluded = not negate
    return excluded


# ---------------------------------------------------------------- Compose

_INTERPOLATION = re.compile(r"\$\{(\w+)(?::?-([^}]*))?\}")


def interpolate(value: object) -> object:
    """Compose's ${VAR:-default} with an empty environment: every variable takes its default."""
    if isinstance(value, str):
        return _INTERPOLATION.sub(lambda m: m.group(2) or "", value)
    if isinstance(value, dict):
        return {k: interpolate(v) for k, v in value.items()}
    if isinstance(value, list):
        return [interpolate(v) for v in value]
    return value


def load_compose() -> dict:
    return interpolate(yaml.safe_load(COMPOSE_FILE.read_text()))


def load_yaml(path: Path) -> dict:
    return yaml.safe_load(path.read_text())


# ---------------------------------------------------------------- requirements

@dataclass(frozen=True)
class Pin:
    name: str                 # normalised (PEP 503)
    version: str
    line: str


def normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def read_requirements(path: Path) -> list[Pin]:
    """Pins of a requirements file, following `-r other.txt`; anything but NAME==VERSION fails."""
    pins = []
    for raw in path.read_text().splitlines():
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        if line.startswith("-r "):
            pins += read_requirements(path.parent / line[3:].strip())
            continue
        m = re.fullmatch(r"([A-Za-z0-9][A-Za-z0-9._-]*)==([0-9][A-Za-z0-9.+!]*)", line)
        assert m, f"{path.name}: {line!r} is not an exact NAME==VERSION pin"
        pins.append(Pin(normalise(m.group(1)), m.group(2), line))
    return pins
