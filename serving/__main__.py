"""python -m serving --repository DIR --port P [--host H]"""

from __future__ import annotations

import asyncio
import logging
import signal
import sys

from serving.config import parse_config
from serving.logs import configure_logging
from serving.server import serve
from serving.supervisor import supervise


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    config = parse_config(argv)
    configure_logging(config.log_level, config.log_format)
    if config.processes > 1:
        return supervise(argv, config)
    try:
        asyncio.run(serve(config))
        # drained and stopped: a late second signal must not turn exit 0 into a kill
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    except OSError as e:
        logging.getLogger("serving").error("%s", e)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
