"""The ``fpp-init`` command line. Each subcommand lives in its own module and registers here.

No command prints a Python traceback for a user or OS error: one line on stderr and exit
status 2. An unexpected internal error says so, asks for a report, and shows the traceback
only with ``--debug``. SIGTERM is handled like Ctrl-C (outputs are left whole or absent;
a pretraining checkpoint is written).
"""

from __future__ import annotations

import argparse
import difflib
import logging
import os
import signal
import sys
import threading
import traceback
import warnings
from collections.abc import Sequence
from typing import Any, NoReturn

from .._version import __version__
from ..errors import ConfigError, FPPError
from . import _artifacts, _pretrain, _sharpness, _zoo
from ._common import in_flags

__all__ = ["main", "build_parser"]


class _Parser(argparse.ArgumentParser):
    """argparse with one-line usage errors, and the closest flag for a misspelt one (``--clasnames``:
    did you mean ``--classnames``?) before any other complaint about the command line."""

    def parse_known_args(self, args: Any = None, namespace: Any = None) -> Any:
        if args is not None and self._subparsers is None:  # a command's parser: its flags are all known here
            self._check_flags(list(args))
        return super().parse_known_args(args, namespace)

    def _check_flags(self, args: list[str]) -> None:
        known = [s for s in self._option_string_actions if s.startswith("--")]
        for arg in args:
            if arg == "--":
                break
            flag = arg.split("=", 1)[0]
            if not flag.startswith("--") or len(flag) < 3 or any(k.startswith(flag) for k in known):
                continue  # not a long flag, a known one, or an abbreviation argparse resolves
            close = difflib.get_close_matches(flag, known, n=1, cutoff=0.6)
            self.error(f"unknown flag {flag}" + (f"; did you mean {close[0]}?" if close else ""))

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {_one_line(message)} (see '{self.prog} --help')\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="fpp-init",
        description="Flatness-aware prompt pretraining (FPP) for test-time prompt tuning.",
    )
    parser.add_argument("--version", action="version", version=f"fpp-init {__version__}")
    parser.add_argument(
        "-v", "--verbose", action="store_true", help="log progress details (and the Hub's own messages)"
    )
    parser.add_argument("--debug", action="store_true", help="show the traceback of an internal error")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for module in (_pretrain, _artifacts, _sharpness, _zoo):
        module.register(sub)
    return parser


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _terminate(signum: int, frame: Any) -> None:
    raise SystemExit(128 + signum)


def _warning_printer(prog: str) -> Any:
    """Warnings as one line each: ``fpp-init pretrain: warning: ...`` (no file name and line)."""

    def show(message: Any, category: Any, filename: str, lineno: int, file: Any = None, line: Any = None) -> None:
        print(f"{prog}: warning: {_one_line(str(message))}", file=sys.stderr)

    return show


def _string_options(parser: argparse.ArgumentParser) -> tuple[set[str], set[str]]:
    """(every option string of every subcommand, those that take one free-text value)."""
    every: set[str] = set()
    text: set[str] = set()
    for action in parser._actions:
        every.update(action.option_strings)
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                more_every, more_text = _string_options(sub)
                every |= more_every
                text |= more_text
        elif action.option_strings and action.nargs is None and action.type is None and action.choices is None:
            text.update(action.option_strings)
    return every, text


def _glue_dash_values(parser: argparse.ArgumentParser, argv: list[str]) -> list[str]:
    """``--repo-id -bad/name`` as ``--repo-id=-bad/name``: argparse reads a value that starts with ``-``
    as an option and stops with its usage; glued, the value reaches its validator and gets the same
    one-line error as any other bad value. (A known option after the flag is left alone.)"""
    every, text = _string_options(parser)
    out: list[str] = []
    i = 0
    while i < len(argv):
        token = argv[i]
        if token == "--":
            out += argv[i:]
            break
        if token in text and i + 1 < len(argv) and argv[i + 1].startswith("-") and argv[i + 1] not in every:
            out.append(f"{token}={argv[i + 1]}")
            i += 2
            continue
        out.append(token)
        i += 1
    return out


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(_glue_dash_values(parser, list(sys.argv[1:] if argv is None else argv)))
    if not (args.verbose or args.debug):
        # torch's C++ log lines (c10d's connection retries and stack frames of a lost rank) would follow
        # our one-line error; the level is read when torch is first imported, which the commands do later
        os.environ.setdefault("TORCH_CPP_LOG_LEVEL", "FATAL")
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(message)s")
    previous = signal.signal(signal.SIGTERM, _terminate) if _main_thread() else None
    prog = f"fpp-init {args.command}"
    shown = warnings.showwarning
    warnings.showwarning = _warning_printer(prog)
    try:
        return int(args.func(args) or 0)
    except ConfigError as exc:
        print(f"{prog}: error: {_one_line(in_flags(str(exc), exc.param))}", file=sys.stderr)
        return 2
    except FPPError as exc:
        print(f"{prog}: error: {_one_line(str(exc))}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # the reader went away (`fpp-init inspect F | head`): stop quietly, like other tools
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 128 + signal.SIGPIPE
    except OSError as exc:
        where = f" ({exc.filename})" if getattr(exc, "filename", None) else ""
        print(f"{prog}: error: {_one_line(exc.strerror or str(exc))}{where}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130
    except SystemExit:
        raise
    except Exception as exc:  # a bug: say so, briefly
        if args.debug:
            traceback.print_exc()
        print(
            f"{prog}: internal error: {type(exc).__name__}: {_one_line(str(exc))[:300]}. Please report it "
            "(rerun with --debug for the traceback)",
            file=sys.stderr,
        )
        return 1
    finally:
        warnings.showwarning = shown
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def _main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
