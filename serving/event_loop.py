"""The event loop the server runs on: uvloop where it is installed (as MLServer and uvicorn
run), else asyncio's own. Per call, the loop's own work (waking up, scheduling the handler,
its futures) is a visible share of a call that takes a tenth of a millisecond: bench
per_call_cost measures it, with a bare grpc.aio server on each loop beside this one.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any


def run_loop(main: Coroutine[Any, Any, None], choice: str) -> None:
    """main() to completion on the chosen event loop ('auto': uvloop where installed)."""
    if choice != "asyncio":
        try:
            import uvloop
        except ImportError:
            if choice == "uvloop":
                main.close()  # never started: no "never awaited" warning
                raise OSError("--event-loop uvloop: uvloop is not installed") from None
        else:
            uvloop.run(main)
            return
    asyncio.run(main)
