"""Subcommands of `python -m gpu_inference`; each module has add_parser(subparsers) and run(args) -> int."""

from __future__ import annotations

import argparse
import math
import os
from pathlib import Path

from gpu_inference.errors import OutputError


def finite_float(text: str) -> float:
    """argparse type for a float flag: `nan`, `inf` and `1e400` parse as floats but are no figure."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"{text!r} is not a finite number")
    return value


def path_arg(text: str) -> Path:
    """argparse type for a path flag: an empty value (`--out ""`, an unset shell variable) would be Path("."),
    the current directory, and files would land wherever the command ran."""
    if not text.strip():
        raise argparse.ArgumentTypeError("an empty path is not allowed")
    return Path(text)


def check_output_dir(path: Path, flag: str) -> None:
    """Refuse, before any work, an output directory that cannot be: a file, or under a file or a read-only dir."""
    if path.exists() and not path.is_dir():
        raise OutputError(f"{flag} {path} is a file, not a directory")
    _check_creatable(path, flag)


def check_output_file(path: Path, flag: str) -> None:
    """Refuse, before any work, an output file that cannot be written (a directory, or in a read-only place)."""
    if path.is_dir():
        raise OutputError(f"{flag} {path} is a directory, not a file")
    if path.exists() and not os.access(path, os.W_OK):
        raise OutputError(f"{flag} {path} is not writable")
    _check_creatable(path.parent, flag)


def _check_creatable(path: Path, flag: str) -> None:
    """``path`` exists as a writable directory, or its nearest existing ancestor is one (mkdir -p would work)."""
    ancestor = path
    while not ancestor.exists() and ancestor != ancestor.parent:
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise OutputError(f"{flag} {path}: {ancestor} is a file, not a directory")
    if not os.access(ancestor, os.W_OK | os.X_OK):
        raise OutputError(f"{flag} {path}: {ancestor} is not writable")


def write_output(path: Path, text: str, flag: str) -> None:
    """Write a command's output file; a failure (full disk, /proc, ...) is one line, not a traceback."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    except OSError as exc:
        raise OutputError(f"{flag} {path}: cannot write it ({exc.strerror or exc})") from None
