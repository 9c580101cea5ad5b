"""Where a command's output goes: ``--json`` (one JSON object on stdout, all human output on stderr),
``--quiet`` (only errors and the final line, on stderr), ``--log-level`` (which events the console stream
shows), and bad input reported as such in every mode (exit 2; with ``--json`` also as a JSON object)."""

from __future__ import annotations

import enum
import json
import logging
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import typer
from rich.console import Console
from rich.markup import escape

# typer carries its own click (typer._click): its usage errors are not the click package's
from typer._click.core import Context
from typer._click.exceptions import UsageError
from typer.core import TyperCommand

from plasmactl.events import LATCHED_STATES
from plasmactl.inputs import InputError

EXIT_BAD_INPUT = 2
DEBUG, INFO, WARNING, ERROR = logging.DEBUG, logging.INFO, logging.WARNING, logging.ERROR


class LogLevel(enum.StrEnum):
    """``--log-level``: debug every event, info the default stream, warning and error fewer."""

    debug = "debug"
    info = "info"
    warning = "warning"
    error = "error"

    @property
    def number(self) -> int:
        return {"debug": DEBUG, "info": INFO, "warning": WARNING, "error": ERROR}[self.value]


# Events shown in the default stream (everything is in the audit log; --verbose shows all of it).
NOTABLE = frozenset(
    {
        "self_test",
        "interlock_trip",
        "plasma_off",
        "plasma_disarm",
        "fault",
        "estop",
        "cooling_missed",
        "comm_error",
        "warning",
        "abort",
        "resume",
        "reset",
        "controller_error",
        "safety_input",
        "tissue_error",
        "session_end",
        "listener_error",
    }
)
# Each a subset of the one before: the default stream (info) is NOTABLE and the latched states, exactly.
WARNING_EVENTS = frozenset(
    {"interlock_trip", "fault", "estop", "cooling_missed", "comm_error", "warning", "abort", "listener_error"}
)
ERROR_EVENTS = frozenset({"interlock_trip", "fault", "estop", "cooling_missed", "controller_error", "tissue_error"})
RED_EVENTS = frozenset({"interlock_trip", "fault", "estop", "controller_error", "tissue_error"})


def event_level(e: Mapping[str, Any]) -> int:
    """How much an event matters to the person watching (``--log-level`` shows this level and above)."""
    name = e.get("event")
    if name in ERROR_EVENTS:
        return ERROR
    if name == "state" and e.get("dest") in LATCHED_STATES:
        return INFO if e.get("dest") == "complete" else WARNING
    if name in WARNING_EVENTS:
        return WARNING
    return INFO if name in NOTABLE else DEBUG


def console_level(verbose: bool, quiet: bool, log_level: LogLevel | None) -> int:
    """The level the stream shows: --log-level, else debug for --verbose, error for --quiet, else info."""
    if verbose and quiet:
        raise typer.BadParameter("--verbose and --quiet contradict each other", param_hint="'--quiet'")
    if log_level is not None:
        if verbose and log_level is not LogLevel.debug:
            raise typer.BadParameter(
                f"--verbose shows every event (debug), not {log_level.value}", param_hint="'--log-level'"
            )
        return log_level.number
    return DEBUG if verbose else ERROR if quiet else INFO


def write_json(obj: Mapping[str, Any]) -> None:
    """The one JSON object of a ``--json`` command, on stdout."""
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


def bad_input_json(source: str | None, problems: list[str]) -> dict[str, Any]:
    return {"ok": False, "exit_code": EXIT_BAD_INPUT, "source": source, "problems": problems}


@dataclass
class Output:
    """A command's streams. ``human`` takes what a person reads (stdout; stderr with --json or --quiet),
    ``err`` errors and progress; stdout is the JSON object's alone with --json."""

    json_mode: bool = False
    quiet: bool = False
    level: int = INFO
    err: Console = field(default_factory=lambda: Console(stderr=True, highlight=False, soft_wrap=True))
    human: Console = field(init=False)

    def __post_init__(self) -> None:
        self.human = self.err if (self.json_mode or self.quiet) else Console(highlight=False, soft_wrap=True)

    def info(self, text: str, **kwargs: Any) -> None:
        """A line a person reads unless --quiet (headers, notes)."""
        if not self.quiet:
            self.human.print(text, **kwargs)

    def final(self, text: str, **kwargs: Any) -> None:
        """The command's result line: in every mode."""
        self.human.print(text, **kwargs)

    def error(self, text: str, **kwargs: Any) -> None:
        """Something wrong a person must not miss: in every mode, where the human output goes."""
        self.human.print(text, **kwargs)

    def shows(self, e: Mapping[str, Any]) -> bool:
        return event_level(e) >= self.level

    def bad_input(self, exc: InputError) -> typer.Exit:
        """Report bad input (the file, then each problem) on stderr, and as a JSON object with --json."""
        self.err.print(f"[bold red]error:[/] {escape(exc.source)}:", markup=True, soft_wrap=True)
        for problem in exc.problems:
            self.err.print(f"  - {problem}", markup=False, soft_wrap=True)
        if self.json_mode:
            write_json(bad_input_json(exc.source, exc.problems))
        return typer.Exit(EXIT_BAD_INPUT)


class JsonCommand(TyperCommand):
    """A command with ``--json``: a usage error (an unknown option, a bad value) still prints one JSON
    object on stdout (``ok`` false, ``problems``) beside click's report on stderr, and exits 2."""

    def parse_args(self, ctx: Context, args: list[str]) -> list[str]:
        wants_json = "--json" in args  # before parsing: the parser consumes the list
        try:
            return super().parse_args(ctx, args)
        except UsageError as exc:
            if wants_json:
                write_json(bad_input_json("command line", [exc.format_message()]))
            raise

    def invoke(self, ctx: Context) -> Any:
        try:
            return super().invoke(ctx)
        except UsageError as exc:  # raised by the command itself (options that contradict each other)
            if ctx.params.get("json_output"):
                write_json(bad_input_json("command line", [exc.format_message()]))
            raise
