"""stdout that a closed pipe or a full disk cannot turn into a crash.

``plasmactl run PLAN | head`` closes the pipe while the session runs. Unguarded, the next console line raised
inside the audit log's listener (rich even turns a broken pipe into ``SystemExit``) and ended the session in
the middle of a pulse, without its safe state. The guard takes the first write error, points the descriptor
at /dev/null (so the interpreter's own flush at exit does not fail again) and drops the rest of the output;
the command goes on and exits with its own code. A broken pipe is the reader's choice (``head`` had what it
wanted); any other write error (``> /dev/full``) is reported on stderr, and a command that would have
exited 0 exits 1, since its output was lost.
"""

from __future__ import annotations

import contextlib
import errno
import os
import sys
from typing import Any, TextIO

EXIT_OUTPUT_LOST = 1


class GuardedStream:
    """A text stream whose write and flush never raise ``OSError``; the first one is kept in ``error``."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream
        self.error: OSError | None = None

    def write(self, text: str) -> int:
        if self.error is None:
            try:
                return self._stream.write(text)
            except OSError as exc:
                self._lost(exc)
        return len(text)

    def flush(self) -> None:
        if self.error is None:
            try:
                self._stream.flush()
            except OSError as exc:
                self._lost(exc)

    def _lost(self, exc: OSError) -> None:
        self.error = exc
        with contextlib.suppress(OSError, ValueError):  # what is still buffered now goes nowhere, quietly
            devnull = os.open(os.devnull, os.O_WRONLY)
            try:
                os.dup2(devnull, self._stream.fileno())
            finally:
                os.close(devnull)

    def __getattr__(self, name: str) -> Any:  # isatty, fileno, encoding, ...: the stream's own
        return getattr(self._stream, name)

    def exit_code(self, code: int) -> int:
        """The command's exit code, given what became of its output (see the module's docstring)."""
        if self.error is None or self.error.errno == errno.EPIPE:
            return code
        sys.stderr.write(f"plasmactl: could not write to stdout: {self.error.strerror or self.error}\n")
        return EXIT_OUTPUT_LOST if code == 0 else code


def install() -> GuardedStream:
    """Guard ``sys.stdout`` (once); returns the guard."""
    current = sys.stdout
    if isinstance(current, GuardedStream):
        return current
    guard = GuardedStream(current)
    sys.stdout = guard
    return guard
