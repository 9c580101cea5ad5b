"""The signals that stop a session, and the exit code each gives.

Ctrl-C (SIGINT) and SIGTERM, and also SIGHUP (the terminal or the SSH connection went away: the everyday way a
bench session loses its operator) and SIGQUIT (Ctrl-\\): each ends a running session through the safe state
(output off, disarm, ``session_end aborted`` naming the signal), never by the signal's default action, which
left the generator armed until its own watchdog tripped and the log without its end. The exit code is the
shell's for that signal, 128 + its number: 130 SIGINT, 143 SIGTERM, 129 SIGHUP, 131 SIGQUIT. Imports nothing
heavy: the entry point takes these before anything else is loaded.
"""

from __future__ import annotations

import signal

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT)


def exit_code_of(name: str | None) -> int:
    """The exit code of a session stopped by the signal ``name`` (SIGINT's when no name is known)."""
    return 128 + int(signal.Signals.__members__.get(name or "", signal.SIGINT))
