"""--event-loop: the server's loop is uvloop where installed, asyncio's own on request."""

import asyncio
import sys

import pytest

from serving.event_loop import run_loop


async def loop_module() -> str:
    return type(asyncio.get_running_loop()).__module__


def ran_on(choice: str) -> str:
    seen: list[str] = []

    async def main() -> None:
        seen.append(await loop_module())

    run_loop(main(), choice)
    return seen[0]


def test_auto_and_uvloop_run_on_uvloop_asyncio_on_asyncio() -> None:
    assert ran_on("auto").startswith("uvloop")
    assert ran_on("uvloop").startswith("uvloop")
    assert ran_on("asyncio").startswith("asyncio")


def test_without_uvloop_auto_falls_back_and_uvloop_is_an_error(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "uvloop", None)  # import uvloop raises ImportError
    assert ran_on("auto").startswith("asyncio")
    with pytest.raises(OSError, match="uvloop is not installed"):
        run_loop(loop_module(), "uvloop")
