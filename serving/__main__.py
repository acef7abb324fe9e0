"""python -m serving --repository DIR --port P [--host H]"""

from __future__ import annotations

import logging
import os
import signal
import sys

from serving.config import parse_config
from serving.event_loop import run_loop
from serving.logs import configure_logging
from serving.parent_watch import SUPERVISOR_GONE, SUPERVISOR_PID_ENV, exit_with_supervisor
from serving.server import serve
from serving.supervisor import supervise


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    config = parse_config(argv)
    configure_logging(config.log_level, config.log_format)
    if config.processes > 1:
        return supervise(argv, config)
    if os.environ.get(SUPERVISOR_PID_ENV):  # a worker of --processes
        exit_with_supervisor(int(os.environ[SUPERVISOR_PID_ENV]))
    try:
        run_loop(serve(config), config.event_loop)
        # drained and stopped: a late second signal must not turn exit 0 into a kill
        for sig in (signal.SIGTERM, SUPERVISOR_GONE):
            signal.signal(sig, signal.SIG_IGN)
    except OSError as e:
        logging.getLogger("serving").error("%s", e)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
