"""The ``plasmactl`` console entry point: signals are taken before anything heavy is imported.

Ctrl-C (SIGINT), SIGTERM, SIGHUP or SIGQUIT while the command line is still loading its libraries or
reading its inputs ends the process at once with 128 + the signal's number and one line on stderr, never a
traceback: nothing has been opened yet. From the moment a session starts, the session takes them itself (an
abort through the safe state). Only a signal in the interpreter's own start-up, before this module runs, is
Python's to handle.
"""

from __future__ import annotations

import os
import signal
import sys
from types import FrameType

from plasmactl.stop_signals import STOP_SIGNALS


def _before_any_session(signum: int, frame: FrameType | None) -> None:
    del frame
    name = signal.Signals(signum).name
    os.write(2, f"plasmactl: {name} before a session started; no device was opened\n".encode())
    os._exit(128 + signum)


for _sig in STOP_SIGNALS:
    signal.signal(_sig, _before_any_session)


def main() -> None:
    from plasmactl import stdout_guard

    # a console that cannot show a character (PYTHONIOENCODING=ascii, a C locale's terminal) gets it escaped:
    # a plan named in another script ended the command with a UnicodeEncodeError traceback before it started
    for stream in (sys.stdout, sys.stderr):
        reconfigure = getattr(stream, "reconfigure", None)
        if reconfigure is not None:
            reconfigure(errors="backslashreplace")
    guard = stdout_guard.install()  # before any output: a closed pipe must not end a session (see the module)
    from plasmactl.cli import main as cli_main

    code: int = 0
    try:
        cli_main()
    except KeyboardInterrupt:  # a Ctrl-C after a session, while the command prints its result
        sys.stderr.write("plasmactl: interrupted\n")
        code = 130
    except SystemExit as exc:
        if exc.code is not None and not isinstance(exc.code, int):
            raise  # a message for the interpreter to print (exit 1)
        code = exc.code or 0
    sys.exit(guard.exit_code(code))


if __name__ == "__main__":
    main()
