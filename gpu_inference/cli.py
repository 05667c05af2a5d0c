"""`python -m gpu_inference <command>`: size, estimate, plan, cost, preview, cost-diff, smoke.

Exit codes: 0 success, 1 a mandatory check failed (does not fit, over budget, policy failed),
2 invalid input (bad config value, unknown model or GPU, bad flag): one message, never a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from gpu_inference import __version__
from gpu_inference.constants import PROJECT_NAME
from gpu_inference.errors import ConfigError

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
    except (LookupError, ValueError) as exc:  # unknown model / GPU / offering: a user error, not a crash
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # `... | head` closed the pipe: not an error of ours
        return 0
