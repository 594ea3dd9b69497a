"""The `pricing-lab` command line: one sub-command module per area, plus connector plug-ins.

Every command module exposes `register(subparsers)`; it adds its parser(s) and sets `handler` to a
function taking the parsed arguments and returning an exit status. Errors derived from
`PricingLabError` become one line on stderr and their exit status (2 for bad input); nothing else
prints a traceback unless `PRICING_LAB_DEBUG=1`.
"""

from __future__ import annotations

import argparse
import errno
import importlib
import json
import os
import re
import signal
import sys
import threading
from collections.abc import Sequence
from importlib.metadata import entry_points

from pricing_lab.errors import PricingLabError

# Modules inside pricing_lab.cli, each with `register(subparsers)`. Missing ones are skipped so the
# command line works while areas are still being built.
COMMAND_MODULES = (
    "pricing_lab.cli.catalog_cmd",
    "pricing_lab.cli.formula_cmd",
    "pricing_lab.cli.usage_cmd",
    "pricing_lab.cli.simulate_cmd",
    "pricing_lab.cli.compare_cmd",
    "pricing_lab.cli.demo_cmd",
    "pricing_lab.cli.forecast_cmd",
    "pricing_lab.cli.activity_cmd",
    "pricing_lab.cli.init_cmd",
    "pricing_lab.cli.events_cmd",
)
PLUGIN_GROUP = "pricing_lab.cli"


class _Parser(argparse.ArgumentParser):
    """argparse that exits with status 2 and a single readable line on bad arguments."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.print_usage(sys.stderr)
        sys.stderr.write(f"pricing-lab: error: {message}\n")
        raise SystemExit(2)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="pricing-lab",
        description="Credit pricing lab: catalog, formulas, ledger replay, scenarios, export.",
    )
    from pricing_lab import __version__

    parser.add_argument("--version", action="version", version=f"pricing-lab {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    subparsers.required = True
    for module_name in COMMAND_MODULES:
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name == module_name:
                continue
            raise
        module.register(subparsers)
    for entry in entry_points(group=PLUGIN_GROUP):
        try:
            register = entry.load()
        except ModuleNotFoundError:
            continue  # the connector package is not installed
        register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns (and, as a script, exits with) the exit status."""
    with _InterruptWatch() as watch:
        try:
            # Inside the handlers: Ctrl-C while the command modules load is an interrupt too.
            args = build_parser().parse_args(argv)
            with _compile_notice():
                status = args.handler(args)
        except KeyboardInterrupt:
            return _interrupted()
        except BrokenPipeError:
            # The reader of stdout went away (`… | head`): not an error of ours, nothing to say.
            # Point stdout at /dev/null so the interpreter's final flush does not fail again.
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
            return 141  # 128 + SIGPIPE, what a shell reports for a writer cut off by its pipe
        except Exception as exc:
            if watch.seen:  # Ctrl-C that a library raised as its own error (DuckDB: RuntimeError
                return _interrupted()  # "Query interrupted"), or that a read turned into bad input
            if os.environ.get("PRICING_LAB_DEBUG") == "1":
                raise
            return _failure(exc)
    return int(status or 0)


def _interrupted() -> int:
    sys.stderr.write("pricing-lab: interrupted\n")
    return 130  # 128 + SIGINT, what a shell reports for a command ended by Ctrl-C


def _failure(exc: Exception) -> int:
    """One line on stderr for an error that ended a command; returns the exit status."""
    if isinstance(exc, PricingLabError):
        sys.stderr.write(f"pricing-lab: {exc}\n")
        return exc.exit_code
    if isinstance(exc, OSError):  # a path the user gave cannot be made, read or written
        sys.stderr.write(f"pricing-lab: {_os_error_text(exc)}\n")
        return 2 if exc.errno in _BAD_PATH_ERRNOS else 1
    if _storage_failure(exc):
        text = _storage_text(str(exc))
        sys.stderr.write(f"pricing-lab: {text}\n")
        # DuckDB says why in the OS's words: a place the user named is bad input, as above.
        return 2 if any(os.strerror(code) in text for code in _BAD_PATH_ERRNOS) else 1
    # A bug: still one message, the traceback only on request.
    sys.stderr.write(
        f"pricing-lab: internal error: {type(exc).__name__}: {exc} "
        "(set PRICING_LAB_DEBUG=1 for the traceback)\n"
    )
    return 1


class _InterruptWatch:
    """While a command runs, notes whether SIGINT arrived (then raises KeyboardInterrupt, as
    Python's own handler does), so an error a library made of the interrupt still ends the
    command as interrupted. Only where Python's default handler is in place (not in a thread,
    not when the shell made the process ignore SIGINT)."""

    def __init__(self) -> None:
        self.seen = False
        self._installed = False

    def _handle(self, signum: int, frame: object) -> None:
        self.seen = True
        raise KeyboardInterrupt

    def __enter__(self) -> _InterruptWatch:
        if (
            threading.current_thread() is threading.main_thread()
            and signal.getsignal(signal.SIGINT) is signal.default_int_handler
        ):
            signal.signal(signal.SIGINT, self._handle)
            self._installed = True
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self._installed:
            signal.signal(signal.SIGINT, signal.default_int_handler)


# A place the user named that cannot be used: bad input (exit 2). Other OS errors (a full disk)
# are failures of the run (exit 1).
_BAD_PATH_ERRNOS = frozenset(
    {
        errno.ENOENT,
        errno.EEXIST,
        errno.ENOTDIR,
        errno.EISDIR,
        errno.EACCES,
        errno.EPERM,
        errno.EROFS,
        errno.ENAMETOOLONG,
    }
)


def _storage_failure(exc: Exception) -> bool:
    """DuckDB or Polars could not read or write a file (its scratch file on a full disk, an
    output on a read-only place): not a bug of the code. DuckDB's message names the file;
    Polars' carries the OS's error (`… underlying IO error: File too large (os error 27)`)."""
    duckdb = sys.modules.get("duckdb")
    if duckdb is not None and isinstance(exc, duckdb.IOException):
        return True
    polars = sys.modules.get("polars")
    return (
        polars is not None
        and isinstance(exc, polars.exceptions.PolarsError)
        and _OS_ERROR.search(str(exc)) is not None
    )


# The OS's error inside a Polars message: `No space left on device (os error 28)`.
_OS_ERROR = re.compile(r"\(os error (\d+)\)")


def _storage_text(text: str) -> str:
    """DuckDB's or Polars' IO error as one line: an asynchronous DuckDB write's error carries the
    OS's message inside JSON (`Async write failed …: {"exception_message":"Could not write file
    …"}`); Polars' is the OS's message at the end of its own."""
    inner = re.search(r'"exception_message":\s*("(?:[^"\\]|\\.)*")', text)
    if inner is not None:
        return f"IO Error: {json.loads(inner.group(1))}"
    os_error = _OS_ERROR.search(text)
    if os_error is not None:
        return f"IO Error: writing or reading a file failed: {os.strerror(int(os_error.group(1)))}"
    return text.strip().splitlines()[0]


def _os_error_text(exc: OSError) -> str:
    """One line naming the path: `out: exists and is not a folder`, `/x/y: Permission denied`."""
    where = exc.filename if exc.filename is not None else ""
    if isinstance(exc, FileExistsError):
        what = "exists and is not a folder"
    else:
        what = exc.strerror or str(exc)
    return f"{where}: {what}" if where != "" else what


def _compile_notice():  # type: ignore[no-untyped-def]
    """Any command that compiles the ledger engine (its cache missing) says so on stderr."""
    from pricing_lab.ledger.compile import compile_notice

    return compile_notice(lambda line: print(line, file=sys.stderr, flush=True))


if __name__ == "__main__":
    raise SystemExit(main())
