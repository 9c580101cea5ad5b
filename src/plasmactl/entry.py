"""The ``plasmactl`` console entry point: signals are taken before anything heavy is imported.

Ctrl-C (SIGINT) or SIGTERM while the command line is still loading its libraries ends the process with
130 or 143 and one line on stderr, never a traceback; from the moment a session starts, the session
itself takes them (an abort through the safe state).
"""

from __future__ import annotations

import signal
import sys
from types import FrameType


def _terminated(signum: int, frame: FrameType | None) -> None:
    del frame
    raise SystemExit(128 + signum)


def main() -> None:
    signal.signal(signal.SIGTERM, _terminated)
    try:
        from plasmactl.cli import main as cli_main

        cli_main()
    except KeyboardInterrupt:
        sys.stderr.write("plasmactl: interrupted before a session started; no device was opened\n")
        sys.exit(130)


if __name__ == "__main__":
    main()
