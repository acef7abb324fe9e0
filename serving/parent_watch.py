"""A worker of --processes ends when its supervisor does.

Otherwise SIGKILL of the supervisor leaves its workers serving on the shared port
(SO_REUSEPORT) with nobody to stop or restart them, and a new supervisor's workers join them
there. Linux's parent-death signal tells the worker the moment its parent dies; a thread
watching the parent's pid covers other systems and a supervisor that died before the worker
could ask for the signal.

The signal is SUPERVISOR_GONE, not SIGTERM: Linux sends the parent-death signal once for each
thread of the supervisor that exits while it is the worker's parent (the worker is handed to a
sibling thread first), and a second SIGTERM means "exit at once, stop draining". The server
drains on the first SUPERVISOR_GONE and ignores the rest.
"""

from __future__ import annotations

import ctypes
import logging
import os
import signal
import sys
import threading
import time

log = logging.getLogger("serving")

SUPERVISOR_PID_ENV = "SMALLSERVE_SUPERVISOR_PID"
PR_SET_PDEATHSIG = 1  # <linux/prctl.h>
POLL_SECONDS = 0.5
SUPERVISOR_GONE = signal.SIGUSR2


def exit_with_supervisor(supervisor_pid: int) -> None:
    """SUPERVISOR_GONE to this process as soon as its parent is no longer supervisor_pid."""
    # until the server's handler is in place a death is noticed (and re-sent) by the watcher,
    # never by the default action of the signal, which would kill without draining
    signal.signal(SUPERVISOR_GONE, signal.SIG_IGN)
    _ask_for_parent_death_signal(SUPERVISOR_GONE)
    threading.Thread(target=_watch, args=(supervisor_pid,), name="parent-watch",
                     daemon=True).start()


def _ask_for_parent_death_signal(sig: signal.Signals) -> None:
    if not sys.platform.startswith("linux"):
        return
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(PR_SET_PDEATHSIG, int(sig), 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), os.strerror(ctypes.get_errno()))
    except (OSError, AttributeError) as e:
        log.warning("no parent-death signal (%s); watching the supervisor's pid instead", e)


def _watch(supervisor_pid: int) -> None:
    # the first check also catches a supervisor that died before the signal was asked for
    while os.getppid() == supervisor_pid:
        time.sleep(POLL_SECONDS)
    log.warning("supervisor %d is gone; shutting down", supervisor_pid)
    while True:  # again each poll: the server may not have installed its handler yet
        os.kill(os.getpid(), SUPERVISOR_GONE)
        time.sleep(POLL_SECONDS)
