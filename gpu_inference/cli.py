"""`python -m gpu_inference <command>`: size, estimate, plan, cost, preview, cost-diff, smoke.

Exit codes: 0 success, 1 a mandatory check failed (does not fit, over budget, policy failed),
2 invalid input (bad config value, unknown model or GPU, bad flag, unreadable input, unwritable output):
one message, never a traceback. 70 (EX_SOFTWARE, sysexits.h) is a bug of ours: one line saying so; set
GPU_INFERENCE_TRACEBACK=1 to see the traceback.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence
from typing import Any

from pydantic import ValidationError

from gpu_inference import __version__
from gpu_inference.constants import PROJECT_NAME
from gpu_inference.errors import ConfigError, validation_messages

EXIT_INTERNAL_ERROR = 70

# Subcommand name → module in gpu_inference.commands. Imported lazily so `size` does not pay for
# importing Pulumi, which only the preview needs.
COMMANDS: dict[str, str] = {
    "size": "size",
    "estimate": "estimate",
    "plan": "plan",
    "cost": "cost",
    "preview": "preview",
    "cost-diff": "cost_diff",
    "smoke": "smoke",
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m gpu_inference",
        description="Size, estimate, plan, price, preview and diff GPU inference stacks offline (no cloud account needed).",
    )
    parser.add_argument("--version", action="version", version=f"{PROJECT_NAME} {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for module_name in COMMANDS.values():
        importlib.import_module(f"gpu_inference.commands.{module_name}").add_parser(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        module = importlib.import_module(f"gpu_inference.commands.{COMMANDS[args.command]}")
        return int(module.run(args))
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except ValidationError as exc:  # a flag out of range (pydantic checks the request models): word it as a flag
        print(f"error: {'; '.join(validation_messages(exc.errors(include_url=False), _flag_for(args)))}",
              file=sys.stderr)
        return 2
    except BrokenPipeError:  # `... | head` closed the pipe: not an error of ours
        return 0
    except (LookupError, ValueError) as exc:  # unknown model / GPU / offering: a user error, not a crash
        print(f"error: {_one_line(exc)}", file=sys.stderr)
        return 2
    except OSError as exc:  # a file we were pointed at cannot be read or written
        where = f" {exc.filename}" if exc.filename else ""
        print(f"error: cannot use{where}: {exc.strerror or exc}", file=sys.stderr)
        return 2
    except Exception as exc:  # a bug: still one line, not a traceback (unless asked for)
        if os.environ.get("GPU_INFERENCE_TRACEBACK"):
            raise
        print(f"error: internal error ({type(exc).__name__}: {_one_line(exc)}); this is a bug: rerun with "
              "GPU_INFERENCE_TRACEBACK=1 and report the traceback", file=sys.stderr)
        return EXIT_INTERNAL_ERROR


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text if len(text) <= 600 else text[:597] + "..."


def _flag_for(args: argparse.Namespace) -> Any:
    """A request-model field → the command's flag of the same name (``tensor_parallel_size`` →
    ``--tensor-parallel-size``), else the field's name."""

    def key(loc: tuple[Any, ...]) -> str:
        field = str(loc[0]) if loc else "value"
        if field in vars(args) and field not in ("model", "stack"):
            return "--" + field.replace("_", "-")
        return ".".join(str(p) for p in loc)

    return key
